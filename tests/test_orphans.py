"""Calls left open by a dead worker are ended by a live one, once, after a grace period (real Redis)."""

from __future__ import annotations

import pytest

from callbot import events as ev
from callbot.orphans import DETAIL, OrphanSweeper
from callbot.store import EventStore
from callbot.workers import Worker, WorkerRegistry


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(redis_url):
    s = EventStore(redis_url)
    await s.start()
    yield s
    await s.close()


async def test_a_dead_workers_calls_are_ended_after_the_grace_period(store) -> None:
    clock = Clock(1_800_000_000.0)
    alive = WorkerRegistry(store.redis, Worker("w-alive"))
    await alive.publish()
    for cid, worker in (("c-dead", "w-dead"), ("c-alive", "w-alive"), ("c-old-format", None)):
        store.emit(ev.CallStarted(call_id=cid, ts=clock.t - 30, channel="sip", worker=worker))
    store.emit(ev.CallStarted(call_id="c-done", ts=clock.t - 30, channel="sip", worker="w-dead"))
    store.emit(ev.CallEnded(call_id="c-done", ts=clock.t - 5, reason="caller_hangup", duration_s=25))
    assert await store.flush()

    a = OrphanSweeper(store, "w-alive", every_s=1, grace_s=60, clock=clock)
    assert await a.sweep() == []  # first seen missing: not yet
    await store.redis.delete("callbot:orphans:lock")
    clock.t += 61
    assert await a.sweep() == ["c-dead"]
    assert await store.flush()
    ended = [e for e in await store.call_events("c-dead") if isinstance(e, ev.CallEnded)]
    assert len(ended) == 1 and ended[0].reason == "error" and DETAIL in ended[0].detail
    assert ended[0].duration_s == pytest.approx(91, abs=0.01)
    assert (await store.get_call("c-dead"))["status"] == "ended"
    for cid in ("c-alive", "c-old-format"):  # a live worker's call, and a call with no worker recorded
        assert (await store.get_call(cid))["status"] == "in_progress"

    await store.redis.delete("callbot:orphans:lock")
    clock.t += 61
    assert await a.sweep() == []  # ended once


async def test_one_sweeper_at_a_time(store) -> None:
    clock = Clock(1_800_000_000.0)
    store.emit(ev.CallStarted(call_id="c1", ts=clock.t, channel="sip", worker="w-dead"))
    assert await store.flush()
    a = OrphanSweeper(store, "a", every_s=30, grace_s=0, clock=clock)
    b = OrphanSweeper(store, "b", every_s=30, grace_s=0, clock=clock)
    assert await a.sweep() == ["c1"]
    assert await b.sweep() == []  # a holds the lock for this round
