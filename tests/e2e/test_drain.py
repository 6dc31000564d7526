"""SIGTERM drains a real ``callbot serve``: a SIP call in progress goes on to its end, new calls and the
proxy's OPTIONS probe get 503, /healthz says draining, and the process exits 0 once the call is over."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import urllib.error
import urllib.request

import pytest
import redis.asyncio as aioredis

import callbot_testing.sip_caller as C
from tests.e2e.conftest import start_bot, stop_bot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]

WORKER_ID = "drain-test-1"
CALL_S = 8.0  # the caller hangs up (BYE) this long after the answer


def _health(bot) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(bot.url + "/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_sigterm_drains_the_worker_then_it_exits_0(redis_url, tmp_path):
    (tmp_path / "bot").mkdir()
    bot = await asyncio.to_thread(start_bot, tmp_path / "bot", redis_url, CALLBOT_WORKER_ID=WORKER_ID)
    redis = aioredis.from_url(redis_url, decode_responses=True)
    target = f"127.0.0.1:{bot.sip_port}"
    try:
        status, body = _health(bot)
        assert status == 200 and body["worker"] == WORKER_ID and body["state"] == "serving", body
        call = asyncio.create_task(C.scripted_call(target, [C.Step("wait", str(CALL_S))], duration=CALL_S,
                                                   codec="PCMU", workdir=tmp_path, log=lambda *_: None))
        await _until(lambda: _health(bot)[1].get("active_calls") == 1, 10, "the call to be up")

        bot.proc.send_signal(signal.SIGTERM)
        status, body = await _until(lambda: (h := _health(bot))[0] == 503 and h, 5, "/healthz to say draining")
        assert body["state"] == "draining" and body["worker"] == WORKER_ID and body["active_calls"] == 1, body
        workers = bot.get_json("/api/workers")["workers"]
        assert [(w["id"], w["state"]) for w in workers] == [(WORKER_ID, "draining")], workers

        invite = await C.run_sipp("uac_refused.xml", target, timeout=8)
        assert invite.returncode == 0, invite.errors[-1500:]
        assert "SIP/2.0 503 Service Unavailable" in invite.messages and "Retry-After:" in invite.messages
        scenario = tmp_path / "options_503.xml"
        scenario.write_text((C.SCENARIOS / "options.xml").read_text()
                            .replace('<recv response="200"/>', '<recv response="503"/>'))
        options = await C.run_sipp(scenario, target, timeout=8)
        assert options.returncode == 0, options.errors[-1500:] + options.messages[-1500:]
        assert bot.proc.poll() is None, "the worker left while its call was up"

        out = await call  # the call in progress went on to the caller's BYE
        call_over = time.monotonic()
        assert out["sipp_rc"] == 0, out["sipp_errors"]
        assert out["first_greeting_audio_s"] is not None and out["bot_audio"]["rms"] > 300
        code = await asyncio.to_thread(bot.proc.wait, 15)
        exited_after = time.monotonic() - call_over
        assert code == 0, bot.log()
        assert exited_after < 5, f"exited {exited_after:.1f} s after the call ended"

        call_ids = await redis.zrange("callbot:calls", 0, -1)
        assert len(call_ids) == 1, call_ids  # the refused INVITE went to another worker: not a call here
        summary = await redis.hgetall(f"callbot:call:{call_ids[0]}")
        assert summary["worker"] == WORKER_ID and summary["end_reason"] == "caller_hangup", summary
        events = [json.loads(e) for e in await redis.lrange(f"callbot:call:{call_ids[0]}:events", 0, -1)]
        assert events[0]["type"] == "call_started" and events[0]["worker"] == WORKER_ID
        assert events[-1]["type"] == "call_ended" and events[-1]["reason"] == "caller_hangup", events[-1]
        assert not await redis.exists(f"callbot:workers:{WORKER_ID}")  # a clean stop leaves the registry
        log = bot.log(20000)
        assert f"worker {WORKER_ID}: serving -> draining" in log and "drained: no call in progress" in log
    finally:
        await redis.aclose()
        if bot.proc.poll() is None:
            stop_bot(bot)


async def test_a_second_sigterm_ends_the_calls_at_once_with_a_reason(redis_url, tmp_path):
    (tmp_path / "bot").mkdir()
    bot = await asyncio.to_thread(start_bot, tmp_path / "bot", redis_url, CALLBOT_WORKER_ID="drain-test-2")
    redis = aioredis.from_url(redis_url, decode_responses=True)
    sink = await C.RtpSink.open()
    try:
        call = asyncio.create_task(C.run_sipp("uac_wait_bye.xml", f"127.0.0.1:{bot.sip_port}",
                                              keys=C.sipp_keys(sink.port), timeout=30))
        await _until(lambda: _health(bot)[1].get("active_calls") == 1, 10, "the call to be up")
        await asyncio.sleep(2.5)  # past the re-INVITE the scenario waits up to 2 s for: then it expects a BYE
        bot.proc.send_signal(signal.SIGTERM)
        await _until(lambda: _health(bot)[0] == 503, 5, "/healthz to say draining")
        bot.proc.send_signal(signal.SIGTERM)
        forced = time.monotonic()
        code = await asyncio.to_thread(bot.proc.wait, 15)
        assert code == 0, bot.log()
        assert time.monotonic() - forced < 6, "a second SIGTERM must not wait for the calls"
        res = await call
        assert res.returncode == 0, res.errors[-1500:]  # the bot hung up: the caller got a BYE
        (call_id,) = await redis.zrange("callbot:calls", 0, -1)
        events = [json.loads(e) for e in await redis.lrange(f"callbot:call:{call_id}:events", 0, -1)]
        ended = events[-1]
        assert ended["type"] == "call_ended" and ended["reason"] == "error", ended
        assert ended["detail"] == "worker_shutdown: SIGTERM while draining", ended
        assert any(e["type"] == "error" and e["code"] == "worker_shutdown" for e in events), events
        assert "ending 1 call(s) now" in bot.log(20000)
    finally:
        sink.close()
        await redis.aclose()
        if bot.proc.poll() is None:
            stop_bot(bot)
