"""Faults inside a real call: the real server (``callbot serve``), real Whisper thread pool, real pipeline,
the project's Twilio Media Streams caller on loopback.

``CALLBOT_FAULT_INJECT`` (test-only setting) makes the real recogniser / synthesis threads raise or
hang; short deadlines keep each call brief. What must hold: the caller hears the apology within a
few seconds, the call's events show the fault and the keypad fallback, and a digit then works. A
line that goes silent (no more media) while the flow waits is ended by the watchdog with a goodbye.

Two servers, one per class: ``asr_hang,tts_error`` and ``asr_error,tts_hang`` (+ a 3 s stuck limit).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from callbot_testing import audio as A
from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.twiml import local_url, new_sid, parse_twiml
from callbot_testing.twilio_caller import Hangup, Press, Say, Wait, WaitForBot, place_call
from tests.e2e.conftest import ACCOUNT_SID, AUDIO, TOKEN, start_bot, stop_bot

pytestmark = pytest.mark.e2e

APOLOGY_WITHIN_S = 8.0  # caller's end of speech -> first audio of the apology (the deadlines below + margin)
ASR_APOLOGY = "Excusez-moi, je n'ai pas pu vous entendre."
TTS_APOLOGY = "Excusez-moi, je ne peux pas vous répondre de vive voix pour le moment."


@pytest.fixture(scope="class")
def asr_hang_tts_error(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("faults1"), redis_server.url, CALLBOT_SIP_ENABLED="false",
                       CALLBOT_FAULT_INJECT="asr_hang,tts_error", CALLBOT_ASR_TIMEOUT_SECS="1.5")
    yield server
    stop_bot(server)


@pytest.fixture(scope="class")
def asr_error_tts_hang(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("faults2"), redis_server.url, CALLBOT_SIP_ENABLED="false",
                       CALLBOT_FAULT_INJECT="asr_error,tts_hang", CALLBOT_TTS_TIMEOUT_SECS="0.5",
                       CALLBOT_STUCK_CALL_SECS="3")
    yield server
    stop_bot(server)


async def _record(bot, call_sid: str) -> dict:
    """The call's record in the store, once its ``call_ended`` event is there."""
    for _ in range(150):
        for row in bot.get_json("/api/calls?limit=50")["calls"]:
            if row.get("provider_call_id") == call_sid and row.get("status") == "ended":
                return bot.get_json(f"/api/calls/{row['id']}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ended call {call_sid} in /api/calls\n{bot.log()}")


def _of(record: dict, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["type"] == kind]


async def _call(bot, steps, timeout: float = 40):
    async with FakeTwilioRest(ACCOUNT_SID, TOKEN, port=bot.rest_port) as rest:
        report = await place_call(bot.url, audio=steps, token=TOKEN, account_sid=ACCOUNT_SID, rest=rest,
                                  timeout=timeout)
    print(report.timeline())
    return report


def _check_fallback(record: dict, stage: str, kind: str) -> list[str]:
    """The fault, the keypad fallback, and the digit pressed after it served (key 1: opening hours)."""
    faults = _of(record, "fault")
    assert [(f["stage"], f["kind"], f["action"]) for f in faults][:1] == [(stage, kind, "keypad")], faults
    assert [k["reason"] for k in _of(record, "keypad_fallback")] == [f"{stage}_fault"]
    nodes = [e["node"] for e in _of(record, "node")]
    assert nodes[-2:] == ["menu", "horaires"], nodes
    assert _of(record, "digits")[-1]["digits"] == "1"
    said = [e["text"] for e in _of(record, "bot_said")]
    assert any(t.startswith("La mairie est ouverte") for t in said), said
    return said


class TestAsrHangTtsError:
    async def test_asr_hang_apology_then_keypad(self, asr_hang_tts_error):
        bot = asr_hang_tts_error
        report = await _call(bot, [WaitForBot(), Say(AUDIO / "horaires.wav"), Wait(9), Press("1"), Wait(2),
                                   Hangup()])
        say = report.turns[0]
        assert say.delay is not None and say.delay < APOLOGY_WITHIN_S, f"dead air after the caller spoke: {say}"
        record = await _record(bot, report.call_sid)
        said = _check_fallback(record, "asr", "timeout")
        assert said[said.index(ASR_APOLOGY) + 1].startswith("Je vous propose plutôt de choisir avec le clavier")
        assert not _of(record, "transcript"), "the hung recogniser cannot have produced a transcript"
        assert record["end_reason"] == "caller_hangup"

    async def test_tts_error_apology_then_keypad(self, asr_hang_tts_error):
        """Key 9: the emergency message names the number, so it is synthesised — and synthesis fails."""
        bot = asr_hang_tts_error
        report = await _call(bot, [WaitForBot(), Press("9"), Wait(7), Press("1"), Wait(2), Hangup()])
        press = report.turns[0]
        assert press.delay is not None and press.delay < 2.0, f"dead air after the key: {press}"
        record = await _record(bot, report.call_sid)
        _check_fallback(record, "tts", "error")
        nodes = [e["node"] for e in _of(record, "node")]
        assert nodes[nodes.index("urgence_message") + 1] == "menu", nodes
        assert record["end_reason"] == "caller_hangup"


class TestAsrErrorTtsHangWatchdog:
    async def test_asr_error_apology_then_keypad(self, asr_error_tts_hang):
        bot = asr_error_tts_hang
        report = await _call(bot, [WaitForBot(), Say(AUDIO / "horaires.wav"), Wait(6), Press("1"), Wait(2),
                                   Hangup()])
        say = report.turns[0]
        assert say.delay is not None and say.delay < 3.0, f"dead air after the caller spoke: {say}"
        record = await _record(bot, report.call_sid)
        said = _check_fallback(record, "asr", "error")
        assert ASR_APOLOGY in said and "injected asr failure" in _of(record, "fault")[0]["detail"]

    async def test_tts_hang_apology_then_keypad(self, asr_error_tts_hang):
        bot = asr_error_tts_hang
        report = await _call(bot, [WaitForBot(), Press("9"), Wait(7), Press("1"), Wait(2), Hangup()])
        press = report.turns[0]
        # the first sentence's deadline: 0.5 s + 0.02 s per character (~105)
        assert press.delay is not None and press.delay < 5.0, f"dead air after the key: {press}"
        record = await _record(bot, report.call_sid)
        _check_fallback(record, "tts", "timeout")

    async def test_watchdog_ends_a_call_whose_line_went_silent(self, asr_error_tts_hang):
        """Twilio's side stops sending media after ``start`` (a dead phone, one-way audio) but keeps the
        socket open and echoes marks: once the greeting is over nothing happens, and after
        ``stuck_call_secs`` (3 s) the watchdog says goodbye, hangs up through REST and frees the call."""
        bot = asr_error_tts_hang
        async with FakeTwilioRest(ACCOUNT_SID, TOKEN, port=bot.rest_port) as rest:
            call_sid, heard, closed_after = await asyncio.wait_for(_silent_line_call(bot), 35)
            assert await rest.wait_hangup(call_sid, timeout=5), "the watchdog did not hang up through REST"
        bursts = A.segments(A.active_frames(heard))
        print("bot audio bursts:", bursts, "stream closed after", closed_after)
        gaps = [(bursts[i + 1][0] - bursts[i][1], i + 1) for i in range(len(bursts) - 1)]
        gap, goodbye = max(gaps, default=(0.0, len(bursts)))
        assert 2.5 <= gap < 8, f"the goodbye should come ~3 s after the greeting, in silence: {bursts}"
        assert bursts[-1][1] - bursts[goodbye][0] > 1.5, f"no goodbye after the silence: {bursts}"
        record = await _record(bot, call_sid)
        assert record["end_reason"] == "watchdog", record["end_reason"]
        ended = _of(record, "call_ended")[0]
        assert "no audio from the line" in ended["detail"], ended
        said = [e["text"] for e in _of(record, "bot_said")]
        assert said[-1] == "Excusez-moi, je dois mettre fin à cet appel. Au revoir."
        health = bot.get_json("/healthz")
        assert health["active_calls"] == 0, health


async def _silent_line_call(bot) -> tuple[str, np.ndarray, float]:
    """Answer like Twilio, then send no media at all; echo marks. Returns (CallSid, the bot audio heard as
    8 kHz PCM on the stream's clock, seconds until the server closed the stream)."""
    call_sid = new_sid("CA")
    form = {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "From": "+33612345678", "To": "+33100000000",
            "CallStatus": "ringing", "Direction": "inbound"}
    url = bot.url + "/twilio/voice"
    validator = RequestValidator(TOKEN)
    async with aiohttp.ClientSession() as http:
        signed = {"X-Twilio-Signature": validator.compute_signature(url, form)}
        async with http.post(url, data=form, headers=signed) as r:
            assert r.status == 200, await r.text()
            twiml = parse_twiml(await r.text())
        ws_url, _ = local_url(twiml.url, bot.url)
        sig = validator.compute_signature(twiml.url, {})
        stream_sid = new_sid("MZ")
        pcm = np.zeros(0, dtype=np.int16)
        async with http.ws_connect(ws_url, headers={"X-Twilio-Signature": sig}, max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send_str(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
                "streamSid": stream_sid, "accountSid": ACCOUNT_SID, "callSid": call_sid, "tracks": ["inbound"],
                "customParameters": twiml.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
            t0 = time.monotonic()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("event") == "media":
                    # place each chunk where it would play: Twilio plays on arrival, or after what is queued
                    at = int((time.monotonic() - t0) * A.RATE)
                    chunk = A.ulaw_decode(base64.b64decode(data["media"]["payload"]))
                    start = max(at, len(pcm))
                    pcm = np.concatenate([pcm, np.zeros(start - len(pcm), dtype=np.int16), chunk])
                elif data.get("event") == "mark":
                    await ws.send_str(json.dumps({"event": "mark", "streamSid": stream_sid,
                                                  "mark": {"name": data["mark"]["name"]}}))
            return call_sid, pcm, time.monotonic() - t0
