"""Redis killed (SIGKILL) and restarted during calls: the calls go on and no call event is lost.

One real ``callbot serve`` worker on its own Redis (append-only file in its data dir), four French
SIP calls at once (sipp + an RTP peer playing ``horaires.wav``). A few seconds into the calls Redis
is SIGKILLed, stays down a few seconds, and comes back on the same port from its data dir. The
worker buffers the events meanwhile and replays them: afterwards every call has its whole event
list exactly once (one ``call_started`` first, one ``call_ended``, the intent, no duplicate), the
event stream holds the same events, and the stats count each call once.

The line can also break *between* a request reaching Redis and its reply (Redis killed right after
applying a transaction, a reply slower than the socket timeout): ``LineCutter`` (a TCP proxy) cuts it
exactly there, so the store and the stats rollup are checked to write each batch / count each call
exactly once whatever is retried.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

import callbot_testing.sip_caller as C
from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.redis_server import RedisServer
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups
from callbot.store import EventStore
from tests.e2e.conftest import AUDIO, start_bot, stop_bot

pytestmark = [pytest.mark.timeout(240)]

CALLS = 4
CALL_S = 22.0  # the caller hangs up after this (sipp BYE)
KILL_AFTER_S = 7.0  # after the first INVITE: greetings over (~6 s), the callers speak, Whisper decodes
DOWN_S = 7.0  # the intents, replies and latencies of all four calls happen meanwhile


async def until(predicate, timeout: float, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


def kill_redis(server: RedisServer) -> None:
    """SIGKILL: no shutdown save, no goodbye to the clients (the append-only file is what survives)."""
    server.proc.kill()
    server.proc.wait(5)
    server.stop()  # closes its log; the process is gone already


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
async def test_calls_survive_a_redis_restart_and_no_event_is_lost(tmp_path):
    redis = RedisServer(tmp_path / "redis", persist=True).start()
    bot = None
    (tmp_path / "bot").mkdir()
    try:
        bot = await asyncio.to_thread(start_bot, tmp_path / "bot", redis.url)
        kill = {}

        async def chaos() -> None:
            await asyncio.sleep(KILL_AFTER_S)
            kill["at"] = time.time()
            kill_redis(redis)
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(redis.start)  # same port, same data dir
            kill["back"] = time.time()

        async def call(i: int) -> dict:
            await asyncio.sleep(0.5 * i)  # not four Whisper decodes on the same instant
            return await C.scripted_call(f"127.0.0.1:{bot.sip_port}", [C.Step("wav", str(AUDIO / "horaires.wav"))],
                                         duration=CALL_S, workdir=tmp_path / f"call{i}")

        *outs, _ = await asyncio.gather(*[call(i) for i in range(CALLS)], chaos())
        for out in outs:
            print(json.dumps({k: v for k, v in out.items() if k not in ("sipp_errors", "bot_segments")},
                             default=str)[:800])
        for out in outs:  # every call went on to the caller's BYE (200 OK), bot audio all along
            assert out["sipp_rc"] == 0, (out["sipp_errors"], bot.log())
            assert out["first_greeting_audio_s"] is not None and out["bot_audio"]["rms"] > 300, out
        assert bot.proc.poll() is None, bot.log()

        client = aioredis.from_url(redis.url, decode_responses=True)
        try:
            ids = await client.zrange("callbot:calls", 0, -1)

            async def all_ended() -> bool:
                statuses = [await client.hget(f"callbot:call:{cid}", "status") for cid in ids]
                return len(ids) == CALLS and statuses == ["ended"] * CALLS

            assert await until(all_ended, 30), (ids, bot.log())
            stream: dict[str, list[str]] = {}
            for _, fields in await client.xrange("callbot:events"):
                stream.setdefault(fields["call_id"], []).append(fields["json"])
            in_outage = 0
            for cid in ids:
                raw = await client.lrange(f"callbot:call:{cid}:events", 0, -1)
                events = [json.loads(r) for r in raw]
                types = [e["type"] for e in events]
                print(cid, types)
                assert len(set(raw)) == len(raw), f"duplicated events in {cid}: {Counter(raw).most_common(2)}"
                assert types[0] == "call_started" and types.count("call_started") == 1, types
                assert types.count("call_ended") == 1, types
                ended = events[types.index("call_ended")]
                assert ended["reason"] == "caller_hangup", ended
                assert events[0]["ts"] < kill["at"] < ended["ts"], "Redis was not killed during this call"
                assert any(e.get("intent") == "horaires" for e in events if e["type"] == "intent"), types
                assert [e["ts"] for e in events] == sorted(e["ts"] for e in events), "events out of order"
                assert stream.get(cid) == raw, f"stream and call list differ for {cid}"
                in_outage += sum(kill["at"] <= e["ts"] < kill["back"] for e in events)
            print(f"events stamped while Redis was down: {in_outage}")
            assert in_outage > 0, "no event was emitted while Redis was down: the test did not test buffering"

            # the stats count each call once (rollups' done markers, /api/stats)
            async def counted() -> dict | None:
                body = await asyncio.to_thread(bot.get_json, "/api/stats")
                return body if body["kpis"]["calls_offered"]["value"] >= CALLS else None

            body = await until(counted, 60)
            assert body, bot.log()
            assert body["kpis"]["calls_offered"]["value"] == CALLS, body["kpis"]["calls_offered"]
            assert [await client.exists(f"callbot:stats:done:{cid}") for cid in ids] == [1] * CALLS
            rows = await asyncio.to_thread(bot.get_json, "/api/calls?limit=50")
            assert sorted(r["id"] for r in rows["calls"]) == sorted(ids)
        finally:
            await client.aclose()
        log = bot.log(200_000)
        assert "Redis unavailable" in log and "Redis is back" in log, log[-3000:]
        assert "Traceback" not in log, log[-6000:]
    finally:
        if bot:
            stop_bot(bot)
        redis.stop()


# ----------------------------------------------------------------------------- a line cut at the worst moment

EXEC = b"*1\r\n$4\r\nEXEC\r\n"  # how redis-py sends EXEC (RESP)


class LineCutter:
    """A TCP proxy in front of Redis that cuts the line once, when a client sends ``trigger``:
    ``after``: the request reaches Redis (and is applied) but its reply never comes back;
    ``before``: the request never reaches Redis. ``refuse``: new connections are closed at once
    (Redis still down for the client's own reconnect-and-retry)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed: tuple[bytes, str] | None = None
        self.refuse = False
        self._refuse_after = False
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> "LineCutter":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def arm(self, trigger: bytes, when: str, refuse_after: bool = False) -> None:
        self.armed = (trigger, when)
        self._refuse_after = refuse_after

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        mute = False

        async def down() -> None:  # Redis -> client
            while data := await up_reader.read(65536):
                if not mute:
                    writer.write(data)
                    await writer.drain()

        replies = asyncio.create_task(down())
        try:
            while data := await reader.read(65536):
                if self.armed and self.armed[0] in data:
                    when, self.armed = self.armed[1], None
                    self.cuts += 1
                    self.refuse = self._refuse_after
                    if when == "after":
                        mute = True
                        up_writer.write(data)
                        await up_writer.drain()
                        await asyncio.sleep(0.3)  # Redis applies it; the reply is swallowed
                    break
                up_writer.write(data)
                await up_writer.drain()
        finally:
            replies.cancel()
            await asyncio.gather(replies, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()

    async def stop(self) -> None:
        self._server.close()


@pytest.fixture
async def cut_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", persist=False).start()
    cutter = await LineCutter(server.port).start()
    try:
        yield server, cutter
    finally:
        await cutter.stop()
        server.stop()


async def test_store_writes_a_batch_once_when_its_reply_is_lost(cut_redis):
    """The transaction reached Redis, the reply did not: the store's writer retries the batch, and must
    not write its events twice."""
    server, cutter = cut_redis
    store = EventStore(cutter.url)
    await store.start()
    try:
        rec = CallRecorder(store, "call-cut")
        rec.emit(ev.CallStarted(channel="sip", caller="100"))
        assert await store.flush(5)
        cutter.arm(EXEC, "after")
        for i in range(5):
            rec.emit(ev.Transcript(text=f"phrase {i}"))
        rec.emit(ev.CallEnded(reason="caller_hangup"))
        assert await store.flush(30), f"{store.pending} events still pending"
        assert cutter.cuts == 1
    finally:
        await store.close()
    client = aioredis.from_url(server.url, decode_responses=True)
    try:
        types = [json.loads(r)["type"] for r in await client.lrange("callbot:call:call-cut:events", 0, -1)]
        assert types == ["call_started"] + ["transcript"] * 5 + ["call_ended"], types
        assert await client.xlen("callbot:events") == 7
    finally:
        await client.aclose()


@pytest.mark.parametrize("when", ["before", "after"])
async def test_stats_count_a_call_once_when_the_line_is_cut_while_counting(cut_redis, when):
    """``before``: Redis goes away in the middle of counting a call (the counters' transaction never
    arrives, new connections are refused): once it is back, the call must be counted, at once (not
    after the consumer group's 60 s claim delay) and not be taken for counted already. ``after``: the
    counters were applied but the reply is lost: counting again must not count it twice."""
    server, cutter = cut_redis
    store = EventStore(server.url)
    await store.start()
    rec = CallRecorder(store, "call-stats")
    rec.emit(ev.CallStarted(channel="sip", caller="+33611111111"))
    rec.emit(ev.IntentMatched(intent="horaires", confidence=0.9))
    rec.emit(ev.CallEnded(reason="caller_hangup", duration_s=20))
    assert await store.flush(5)
    await store.close()
    redis = aioredis.from_url(cutter.url, decode_responses=True)
    rollups = Rollups(redis)
    consumer = StatsConsumer(redis, rollups, consumer="test")
    try:
        cutter.arm(EXEC, when, refuse_after=(when == "before"))
        try:
            await consumer.run_once()
        except (RedisError, OSError):
            pass  # the worker's loop logs it and tries again
        assert cutter.cuts == 1
        cutter.refuse = False
        await consumer.run_once()
        now = datetime.now().astimezone()
        totals = await rollups.totals(now - timedelta(days=1), now + timedelta(hours=1))
        assert totals.get("offered") == 1, totals
    finally:
        await redis.aclose()
