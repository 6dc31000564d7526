"""End to end over SIP against the real server process: sipp signalling, RTP speech and digits."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

import callbot_testing.sip_caller as C
from tests.e2e.conftest import AUDIO

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]


def _get(bot, path: str) -> dict:
    return bot.get_json(path)  # with the bot's API token


async def _last_sip_call(bot, known: set[str]) -> dict:
    for _ in range(100):
        for row in _get(bot, "/api/calls?limit=20")["calls"]:
            if row["channel"] == "sip" and row.get("status") == "ended" and row["id"] not in known:
                return _get(bot, f"/api/calls/{row['id']}")
        await asyncio.sleep(0.1)
    raise AssertionError("no new ended SIP call in /api/calls")


async def test_sip_speech_and_rfc4733_digit(bot, tmp_path):
    known = {c["id"] for c in _get(bot, "/api/calls?limit=100")["calls"]}
    out = await C.scripted_call(f"127.0.0.1:{bot.sip_port}",
                                [C.Step("wav", str(AUDIO / "horaires.wav")), C.Step("press", "1")],
                                codec="PCMU", duration=32, workdir=tmp_path)
    print(json.dumps({k: v for k, v in out.items() if k != "sipp_errors"}, indent=1, default=str)[:3000])
    assert out["sipp_rc"] == 0, out["sipp_errors"]
    assert out["first_greeting_audio_s"] is not None
    assert out["bot_audio"]["rms"] > 300, "bot audio is silence"
    record = await _last_sip_call(bot, known)
    assert any(e.get("intent") == "horaires" for e in record["events"] if e["type"] == "intent"), record
    assert [e["digits"] for e in record["events"] if e["type"] == "digits"] == ["1"]
