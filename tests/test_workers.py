"""Several workers on one Redis: the worker registry (real Redis), /healthz and /api/workers, the drain
state machine, Twilio's 503 while draining, and the worker on each call's record."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from callbot import events as ev
from callbot.config import Settings
from callbot.drain import Drain
from callbot.errors import ConfigError
from callbot.recorder import CallRecorder
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.telephony import twilio
from callbot.web import api
from callbot.web.auth import accounts_on, setup_auth
from callbot.workers import (DRAINING, INDEX, KEY, SERVING, WORKER, Worker, WorkerRegistry, default_worker_id,
                             live_workers, setup_routes)


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def test_default_id_is_host_and_pid_and_settings_check_ids():
    wid = default_worker_id()
    assert wid.endswith(f"-{os.getpid()}") and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", wid)
    assert Settings(worker_id=wid).worker_id == wid  # a valid id: it goes into Redis keys
    assert Settings.load(None, worker_id="bot-1").worker_id == "bot-1"
    assert Settings().worker_id is None and Settings().drain_timeout_secs == 3600
    assert Settings.load(None, worker_id=" ").worker_id is None  # blank = automatic
    for bad in ("bot 1", "a/b", "x" * 65, "-bot"):
        with pytest.raises(ConfigError):
            Settings.load(None, worker_id=bad)


async def test_registry_lists_live_workers_with_their_state(redis):
    a, b = Worker("bot-a", http_port=8081, sip_port=5081), Worker("bot-b", http_port=8082)
    a.active_calls = lambda: 2
    ra, rb = WorkerRegistry(redis, a), WorkerRegistry(redis, b)
    await ra.start()
    await rb.start()
    try:
        workers = await live_workers(redis)
        assert [w["id"] for w in workers] == ["bot-a", "bot-b"]
        first = workers[0]
        assert first["state"] == SERVING and first["active_calls"] == 2 and first["pid"] == os.getpid()
        assert first["http_port"] == 8081 and first["sip_port"] == 5081 and first["host"] == socket.gethostname()
        assert 0 < await redis.ttl(KEY + "bot-a") <= 15
        await a.set_state(DRAINING)  # published at once, not at the next refresh
        assert [w["state"] for w in await live_workers(redis)] == [DRAINING, SERVING]
    finally:
        await ra.stop()
    assert [w["id"] for w in await live_workers(redis)] == ["bot-b"]  # a clean stop removes the record
    assert await redis.smembers(INDEX) == {"bot-b"}
    await rb.stop()
    assert await live_workers(redis) == []


async def test_a_dead_worker_drops_out_after_its_ttl_and_a_live_one_stays(redis):
    live, dead = Worker("live"), Worker("dead")
    r_live = WorkerRegistry(redis, live, ttl_s=1, refresh_s=0.3)
    r_dead = WorkerRegistry(redis, dead, ttl_s=1, refresh_s=0.3)
    await r_live.start()
    await r_dead.start()
    r_dead._task.cancel()  # killed: no more refreshes, no goodbye
    await asyncio.sleep(1.6)
    try:
        assert [w["id"] for w in await live_workers(redis)] == ["live"]
        assert await redis.smembers(INDEX) == {"live"}  # the dead id was pruned from the index
    finally:
        await r_live.stop()
    with pytest.raises(ValueError):
        WorkerRegistry(redis, live, ttl_s=5, refresh_s=5)


async def _client(store: EventStore, worker: Worker) -> tuple[TestClient, Accounts]:
    app = web.Application()
    flow = SimpleNamespace(name="mairie", version="abc")
    app[api.RUNTIME] = SimpleNamespace(store=store, ready=True, active_calls={},
                                       voice=SimpleNamespace(engine="pico", name="fr"),
                                       flows=SimpleNamespace(current=flow))
    app[WORKER] = worker
    api.setup_routes(app)
    setup_routes(app)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis), secret_getter=lambda a: b"test secret")
    accounts = Accounts(store.redis, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    await accounts.add("ops", "ops", "ops password", replace=True)
    await accounts.add("agent", "agent", "agent password", services=["etat_civil"], replace=True)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, accounts


async def test_healthz_and_api_workers(redis_url):
    store = EventStore(redis_url)
    worker = Worker("bot-a", http_port=8081)
    worker.active_calls = lambda: 1
    registry = WorkerRegistry(store.redis, worker)
    await registry.start()
    client, accounts = await _client(store, worker)
    ops = {"Authorization": f"Bearer {await accounts.new_token('ops')}"}
    agent = {"Authorization": f"Bearer {await accounts.new_token('agent')}"}
    try:
        health = await client.get("/healthz")  # open: no token
        body = await health.json()
        assert health.status == 200 and body["worker"] == "bot-a" and body["state"] == SERVING
        assert (await client.get("/api/workers")).status == 401
        assert (await client.get("/api/workers", headers=agent)).status == 403
        listed = await (await client.get("/api/workers", headers=ops)).json()
        assert listed["self"] == "bot-a" and [w["id"] for w in listed["workers"]] == ["bot-a"]

        await worker.set_state(DRAINING)
        health = await client.get("/healthz")
        body = await health.json()
        assert health.status == 503
        assert body == {"status": "draining", "worker": "bot-a", "state": DRAINING, "active_calls": 1}
        listed = await (await client.get("/api/workers", headers=ops)).json()
        assert listed["workers"][0]["state"] == DRAINING
    finally:
        await registry.stop()
        await client.close()
        await store.redis.aclose()


async def test_twilio_voice_is_503_while_draining_without_spending_the_signature(redis):
    app = web.Application()
    app[api.RUNTIME] = SimpleNamespace(store=SimpleNamespace(redis=redis))
    worker = app[WORKER] = Worker("bot-a")

    async def on_call(transport, info, control):
        raise AssertionError("no media expected")

    twilio.setup_routes(app, Settings(public_url="https://bot.mairie.example"), on_call)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    form = {"CallSid": "CA1", "From": "+33612345678", "To": "+33100000000"}
    try:
        resp = await client.post("/twilio/voice", data=form)
        assert resp.status == 200 and "<Stream" in await resp.text()
        assert not worker.idle()  # its media stream is expected: a drain now would wait for it
        await worker.set_state(DRAINING)
        resp = await client.post("/twilio/voice", data=form)
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"] == "draining"
    finally:
        await client.close()


class _FakeWorker(Worker):
    def __init__(self) -> None:
        super().__init__("w")
        self.calls = 0
        self.active_calls = lambda: self.calls


async def test_drain_waits_for_the_calls_then_finishes():
    worker = _FakeWorker()
    states: list[str] = []
    worker.on_state(states.append)
    drain = Drain(worker, timeout_s=30)
    worker.calls = 1
    drain.request("SIGTERM")
    await asyncio.sleep(0.5)
    assert states == [DRAINING] and not drain._done.is_set()
    worker.calls = 0
    await asyncio.wait_for(drain.wait(), 2)
    assert drain.reason == ""  # nobody was cut off


async def test_drain_timeout_and_second_signal_end_the_calls_with_a_reason():
    for trigger in ("timeout", "signal"):
        worker = _FakeWorker()
        drain = Drain(worker, timeout_s=0.3 if trigger == "timeout" else 30)
        ended: list[str] = []

        async def call() -> None:
            with drain.call():
                worker.calls += 1
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError as e:
                    ended.append(str(e.args[0]) if e.args else "")
                    raise
                finally:
                    worker.calls -= 1

        task = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        drain.request("SIGTERM")
        if trigger == "signal":
            await asyncio.sleep(0.3)
            drain.request("SIGTERM")
        await asyncio.wait_for(drain.wait(), 3)
        assert task.cancelled()
        expected = "drain timeout (0 s)" if trigger == "timeout" else "SIGTERM while draining"
        assert drain.reason == expected and ended == [f"worker_shutdown: {expected}"]


async def test_the_worker_is_on_the_call_record(redis_url):
    store = EventStore(redis_url)
    await store.start()
    try:
        CallRecorder(store, "c1").emit(ev.CallStarted(channel="sip", caller="0612345678", worker="bot-a"))
        CallRecorder(store, "c2").emit(ev.CallStarted(channel="sip", caller="0612345678"))
        await store.flush()
        assert (await store.get_call("c1"))["worker"] == "bot-a"
        assert "worker" not in await store.get_call("c2")
        old = {"type": "call_started", "call_id": "c0", "ts": 1.0, "channel": "sip"}  # stored before the field
        assert ev.from_json(json.dumps(old)).worker is None
        assert [e.worker for e in await store.call_events("c1")] == ["bot-a"]
    finally:
        await store.close()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed")
async def test_a_draining_sip_listener_answers_invite_and_options_503_then_serves_again(tmp_path):
    import callbot_testing.sip_caller as C
    from callbot_testing.sip_testbot import ToneBotServer

    options_503 = tmp_path / "options_503.xml"
    options_503.write_text((C.SCENARIOS / "options.xml").read_text()
                           .replace('<recv response="200"/>', '<recv response="503"/>'))
    async with ToneBotServer() as b:
        await b.server.set_draining(True)
        for transport in ("u1", "t1"):  # Kamailio may probe over either
            res = await C.run_sipp(options_503, b.target, transport=transport, timeout=8)
            assert res.returncode == 0, res.errors[-1500:]
            assert "Retry-After: 5" in res.messages
        res = await C.run_sipp("uac_refused.xml", b.target, timeout=8)
        assert res.returncode == 0 and "SIP/2.0 503 Service Unavailable" in res.messages, res.errors[-1500:]
        assert b.server.stats.rejected_draining == 1 and b.server.stats.accepted == 0 and not b.records
        await b.server.set_draining(False)
        assert (await C.run_sipp("options.xml", b.target, timeout=8)).returncode == 0
