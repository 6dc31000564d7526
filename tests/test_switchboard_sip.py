"""The switchboard on a real SIP line: hold audio, keypad, and the agent's phone bridged by the bot.

Peers are Debian's ``baresip`` (caller playing 1 kHz; agent auto-answering with 600 Hz),
the bot is the project's SIP server, Redis is real. The pipeline (Whisper, flow) is not
needed here: ``on_call`` goes straight to the queue, as a flow ``transfer`` step would.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
import redis.asyncio as aioredis

from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.policy import QueueRules
from callbot.switchboard.queue import WaitingCall
from callbot.switchboard.service import Switchboard
from callbot.switchboard.waiting import Waiting
import callbot_testing.sip_caller as C
from callbot.telephony.sip.server import SipServer
from tests.test_switchboard import HOURS, _cheap_hasher, answer_when_offered
from tests.test_sip_transfer import tone_at

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.timeout(90),
]


def beep(text: str, rate: int = 8000) -> bytes:
    """Stands in for speech: 0.4 s of 440 Hz per prompt (the audio path is what is tested)."""
    t = np.arange(int(0.4 * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()


@pytest.fixture
async def board(redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    flows = SimpleNamespace(current=SimpleNamespace(spec=SimpleNamespace(hours={"mairie": HOURS}, closed_dates=[]),
                                                    settings=SimpleNamespace(holidays_subdiv=None)))
    sb = Switchboard(redis, QueueRules(announce_every_s=30, max_wait_s=60, ring_s=8), render=beep, flows=flows,
                     wrapup_s=0, clock=lambda: datetime(2026, 12, 7, 10, 0).astimezone())
    sb.accounts = Accounts(redis, hasher=_cheap_hasher())
    yield sb
    await redis.aclose()


async def serve(sb: Switchboard, outcomes: list, recorders: list):
    async def on_call(transport, info, control) -> None:
        rec = CallRecorder(None, info.call_id)
        recorders.append(rec)
        waiting = Waiting(sb, control, rec, WaitingCall(call_id=info.call_id, service="etat_civil",
                                                        caller=info.caller, intent="acte_naissance",
                                                        summary="acte de naissance"))
        waiting.key_wait_s = 4.0
        outcome = await waiting.run()
        outcomes.append(outcome)
        if outcome.result in ("callback", "ended"):
            await control.hangup(outcome.result)

    server = SipServer(on_call, port=0, max_calls=4)
    await server.start()
    return server


async def test_agent_phone_is_bridged_to_the_waiting_caller(board, tmp_path):
    agent = await C.BaresipPeer(tmp_path / "agent", user="alice", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 30)).start()
    await board.accounts.add("alice", "agent", "motdepasse-long", services=["etat_civil"], phone=agent.uri)
    await board.presence.set("alice", "available")
    outcomes, recorders = [], []
    server = await serve(board, outcomes, recorders)
    try:
        caller = await C.BaresipPeer(tmp_path / "caller", source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 30)).start()
        try:
            await caller.dial(f"sip:mairie@127.0.0.1:{server.port}")
            assert await caller.wait_event("CALL_ESTABLISHED", 5)
            await asyncio.sleep(1.5)  # hold music and the first announcement
            assert await answer_when_offered(board, "alice", timeout=5)
            assert await agent.wait_event("CALL_ESTABLISHED", 10), agent.events
            assert (await board.presence.get("alice")).state == "on_call"
            await asyncio.sleep(2.0)  # they talk through the bot
            await caller.hangup()
            assert await agent.wait_event("CALL_CLOSED", 5), agent.events
            for _ in range(50):
                if outcomes:
                    break
                await asyncio.sleep(0.1)
        finally:
            await caller.stop()
    finally:
        await server.stop()
        await agent.stop()
    assert outcomes and outcomes[0].result == "agent", outcomes
    names = [e.type for e in recorders[0].history]
    assert names == ["queued", "agent_offered", "agent_answered", "agent_connected"], names
    assert recorders[0].history[-1].talk_s > 1.5
    assert (await board.presence.get("alice")).state == "available"  # wrap-up 0 s
    _, heard_by_caller = caller.recordings()
    _, heard_by_agent = agent.recordings()
    pcm, rate = C.read_wav(heard_by_caller)
    assert C.pcm_stats(pcm[: rate * 2], rate)["rms"] > 300  # the bot's prompts and music first
    assert tone_at(pcm, 600, rate)  # then the agent, relayed
    pcm, rate = C.read_wav(heard_by_agent)
    assert tone_at(pcm, 1000, rate)  # the caller, relayed


async def test_keypad_callback_request_over_sip(board, tmp_path):
    await board.accounts.add("alice", "agent", "motdepasse-long", services=["etat_civil"], phone="sip:alice@127.0.0.1:9")
    await board.presence.set("alice", "away")  # logged in, busy elsewhere: the caller waits
    outcomes, recorders = [], []
    server = await serve(board, outcomes, recorders)
    try:
        # (baresip sends no RTP digits without an audio source)
        caller = await C.BaresipPeer(tmp_path / "caller", source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 30)).start()
        try:
            await caller.dial(f"sip:mairie@127.0.0.1:{server.port}")
            assert await caller.wait_event("CALL_ESTABLISHED", 5)
            await asyncio.sleep(2.5)  # announcement, then music
            assert [c["call_id"] for c in await board.queue.waiting()]
            for keys, pause in (("1", 1.5), ("0612345678#", 1.5), ("1", 1.5), ("2", 0.0)):
                for k in keys:  # 1 = callback; the SIP user "caller" is no number: type it; confirm; afternoon
                    await caller.digit(k)
                    await asyncio.sleep(0.25)
                await asyncio.sleep(pause)
            for _ in range(80):
                if outcomes:
                    break
                await asyncio.sleep(0.1)
            assert await caller.wait_event("CALL_CLOSED", 8)  # the bot says goodbye and hangs up
        finally:
            await caller.stop()
    finally:
        await server.stop()
    assert outcomes and outcomes[0].result == "callback", (outcomes, [e.type for e in recorders[0].history])
    req = [e for e in recorders[0].history if isinstance(e, ev.CallbackRequested)]
    assert req and (req[0].number, req[0].slot) == ("0612345678", "apres_midi")
    [cb] = await board.callbacks.list({"etat_civil"})
    assert cb.number == "0612345678"
    assert await board.queue.waiting() == []
