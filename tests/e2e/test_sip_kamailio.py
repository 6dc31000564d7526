"""Two real ``callbot serve`` workers behind Kamailio (dispatcher, Record-Route): two French
calls at once through the proxy, one per worker, each understood (intent in the call log)."""

from __future__ import annotations

import asyncio
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

import callbot_testing.sip_caller as C
from tests.e2e.conftest import AUDIO, start_bot, stop_bot
from tests.sip.kamailio.harness import Kamailio, available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed"),
    pytest.mark.skipif(not available(), reason="kamailio (Debian package) not installed"),
    pytest.mark.timeout(240),
]


def _get(bot, path: str) -> dict:
    return bot.get_json(path)  # with the bot's API token


async def _ended_sip_calls(bot, n: int, known: set[str]) -> list[dict]:
    for _ in range(100):
        rows = [r for r in _get(bot, "/api/calls?limit=50")["calls"]
                if r["channel"] == "sip" and r.get("status") == "ended" and r["id"] not in known]
        if len(rows) >= n:
            return [_get(bot, f"/api/calls/{r['id']}") for r in rows]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ended SIP call on {bot.url}\n{bot.log()}")


async def test_two_serve_workers_behind_kamailio(redis_server, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # both load Whisper at the same time
        for i in (1, 2):
            (tmp_path / f"w{i}").mkdir()
        futures = [pool.submit(start_bot, tmp_path / f"w{i}", redis_server.url) for i in (1, 2)]
        bots = [f.result() for f in futures]
    kam = None
    try:
        kam = Kamailio(tmp_path / "kamailio", [f"sip:callbot@127.0.0.1:{b.sip_port}" for b in bots],
                       port=C.free_port(), ping_interval=1).start()
        assert all(kam.wait_flags(f"sip:callbot@127.0.0.1:{b.sip_port}", "AP", 5) for b in bots), \
            kam.destinations()
        known = {r["id"] for r in _get(bots[0], "/api/calls?limit=100")["calls"]}
        outs = await asyncio.gather(*[
            C.scripted_call(kam.target, [C.Step("wav", str(AUDIO / "horaires.wav"))], duration=16,
                            workdir=tmp_path / f"call{i}", proxy=True)
            for i in (1, 2)])
        for out in outs:
            print(json.dumps({k: v for k, v in out.items() if k != "sipp_errors"}, default=str)[:1500])
            assert out["sipp_rc"] == 0, (out["sipp_errors"], kam.log())
            assert out["first_greeting_audio_s"] is not None and out["bot_audio"]["rms"] > 300
        # the workers share one Redis: either one lists both calls (shared state is the point)
        records = await _ended_sip_calls(bots[0], 2, known)
        assert len(records) == 2
        for record in records:
            assert any(e.get("intent") == "horaires" for e in record["events"] if e["type"] == "intent"), record
            assert record["end_reason"] == "caller_hangup"
        for bot in bots:  # round robin: each worker answered one of them
            assert bot.log().count("SIP call ") == 1, bot.log()
    finally:
        if kam:
            kam.stop()
        for b in bots:
            stop_bot(b)
