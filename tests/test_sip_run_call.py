"""One SIP call through the real call pipeline (``callbot.call.run_call``: VAD, Whisper,
flow, TTS) in process: sipp signalling + RTP peer saying "les horaires" in French."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

import callbot_testing.sip_caller as C
from callbot.telephony.sip.server import SipServer

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"

pytestmark = [
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.timeout(120),
]


async def test_sip_call_through_run_call(redis_url, tmp_path):
    from callbot.call import run_call
    from callbot.config import Settings
    from callbot.server import build_runtime
    from callbot.store import EventStore

    settings = Settings.load(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", redis_url=redis_url)
    store = EventStore(redis_url)
    await store.start()
    try:
        rt = await build_runtime(settings, store)
        server = SipServer(lambda t, i, c: run_call(rt, t, i, c), port=0, max_calls=2)
        await server.start()
        try:
            out = await C.scripted_call(f"127.0.0.1:{server.port}", [C.Step("wav", str(AUDIO / "horaires.wav"))],
                                        duration=16, workdir=tmp_path)
        finally:
            await server.stop()
        print(out)
        assert out["sipp_rc"] == 0, out["sipp_errors"]
        assert out["first_greeting_audio_s"] is not None and out["first_greeting_audio_s"] < 1.0
        assert out["bot_audio"]["rms"] > 300  # speech, not silence
        assert out["turns"][0]["voice_to_voice_s"] is not None
        await store.flush()
        for _ in range(50):
            calls = [c for c in await store.list_calls() if c.get("channel") == "sip" and c.get("status") == "ended"]
            if calls:
                break
            await asyncio.sleep(0.1)
        assert calls, await store.list_calls()
        record = await store.get_call(calls[0]["id"])
        assert record["caller"] == "+33612345678"
        assert record["end_reason"] == "caller_hangup"
        text = " ".join(e.get("text", "").lower() for e in record.get("events", []) if e.get("type") == "transcript")
        assert "horaire" in text, record
    finally:
        await store.close()
