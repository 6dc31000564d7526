"""The Debian baresip binary as caller (and as a transfer target agent) against the bot."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import callbot_testing.sip_caller as C
from callbot_testing.sip_testbot import ToneBotServer as bot

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.timeout(60),
]


def tone_at(pcm: bytes, hz: float, rate: int = 8000) -> bool:
    for s, e in C.segments(pcm, rate):
        if abs(C.pcm_stats(pcm[int(s * rate) * 2: int(e * rate) * 2], rate)["peak_hz"] - hz) < 15:
            return True
    return False


async def test_baresip_caller_hears_greeting_and_sends_digit(tmp_path):
    async with bot() as b:
        caller = await C.BaresipPeer(tmp_path / "caller", source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 20)).start()
        try:
            t0 = await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
            est = await caller.wait_event("CALL_ESTABLISHED", 5)
            assert est, caller.events
            assert est["_t"] - t0 < 0.5
            await asyncio.sleep(1.5)
            await caller.digit("3")
            await asyncio.sleep(1.0)
            await caller.hangup()
            await b.wait_calls_done()
            rec = b.records[0]
            assert rec.digits == ["3"] and rec.disconnected
            assert rec.rx_rms_max > 1000  # the caller's 1 kHz tone reached the pipeline
        finally:
            await caller.stop()
        _, dec = caller.recordings()
        pcm, rate = C.read_wav(dec)
        assert tone_at(pcm, 440, rate), C.segments(pcm, rate)  # greeting heard by the caller
        assert tone_at(pcm, 880, rate)  # digit acknowledged


async def test_blind_transfer_refer_to_agent(tmp_path):
    agent = await C.BaresipPeer(tmp_path / "agent", user="agent", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 20)).start()
    try:
        async with bot(bot={"transfer_to": agent.uri}) as b:
            caller = await C.BaresipPeer(tmp_path / "caller",
                                         source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 20)).start()
            try:
                await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
                assert await caller.wait_event("CALL_ESTABLISHED", 5)
                # the caller follows the REFER and reaches the agent
                assert await agent.wait_event("CALL_ESTABLISHED", 10), agent.events
                assert await caller.wait_event("TRANSFER", 2)
                await b.wait_calls_done()
                rec = b.records[0]
                assert rec.transfer_result is True  # NOTIFY sipfrag 200 reported back
                assert rec.disconnected  # the bot's leg ended; the pipeline was told
                await caller.hangup()
            finally:
                await caller.stop()
    finally:
        await agent.stop()



async def test_baresip_caller_answers_digest_challenge(tmp_path):
    """Inbound digest auth with a real UA (Debian baresip, like a PBX with trunk credentials)."""
    async with bot(auth_user="pbx", auth_password="Tr0mbone!", bot={"end_after_greeting": True}) as b:
        caller = await C.BaresipPeer(tmp_path / "caller", account_params=";auth_user=pbx;auth_pass=Tr0mbone!").start()
        try:
            await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
            assert await caller.wait_event("CALL_ESTABLISHED", 5), caller.events
            await b.wait_calls_done()
            assert b.server.stats.auth_challenges == 1 and b.server.stats.accepted == 1
        finally:
            await caller.stop()
