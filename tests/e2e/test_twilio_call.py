"""End to end over Twilio Media Streams: the real server, real Whisper, real Redis, the project's caller."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.twilio_caller import Hangup, Press, Say, WaitForBot, place_call
from tests.e2e.conftest import ACCOUNT_SID, AUDIO, TOKEN

pytestmark = pytest.mark.e2e


def _get(bot, path: str) -> dict:
    return bot.get_json(path)  # with the bot's API token


async def _call_record(bot, call_sid: str) -> dict:
    """The call's record in the store, once its ``call_ended`` event is there."""
    for _ in range(100):
        for row in _get(bot, "/api/calls?limit=50")["calls"]:
            if row.get("provider_call_id") == call_sid and row.get("status") == "ended":
                return _get(bot, f"/api/calls/{row['id']}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ended call {call_sid} in /api/calls\n{bot.log()}")


def _types(record: dict, kind: str) -> list[dict]:
    return [e for e in record["events"] if e["type"] == kind]


async def _call(bot, steps, **kw):
    async with FakeTwilioRest(ACCOUNT_SID, TOKEN, port=bot.rest_port) as rest:
        report = await place_call(bot.url, audio=steps, token=TOKEN, account_sid=ACCOUNT_SID, rest=rest,
                                  timeout=kw.pop("timeout", 60), **kw)
        return report, rest


async def test_spoken_request_for_opening_hours(bot, tmp_path):
    report, _ = await _call(bot, [WaitForBot(), Say(AUDIO / "horaires.wav"), WaitForBot(), Hangup()],
                            record_path=tmp_path / "bot.wav")
    print(report.timeline())
    assert report.greeting_latency is not None, "no greeting heard"
    assert report.turns[0].bot_onset is not None, "no bot audio after the request"
    record = await _call_record(bot, report.call_sid)
    transcripts = " ".join(e["text"].lower() for e in _types(record, "transcript"))
    assert "horaire" in transcripts
    assert any(e["intent"] == "horaires" for e in _types(record, "intent"))
    assert "horaires" in [e["node"] for e in _types(record, "node")]
    assert record["caller"] == "+33612345678" and record["channel"] == "twilio"
    assert record["end_reason"] == "caller_hangup"
    latency = _types(record, "latency")
    assert latency and latency[0]["trigger"] == "speech" and latency[0]["asr_ms"] > 0


async def test_keypad_digit_selects_a_menu_option(bot):
    report, _ = await _call(bot, [WaitForBot(), Press("1"), WaitForBot(), Hangup()])
    assert report.turns and report.turns[0].bot_onset is not None, report.timeline()
    record = await _call_record(bot, report.call_sid)
    assert [e["digits"] for e in _types(record, "digits")] == ["1"]
    nodes = [e["node"] for e in _types(record, "node")]
    assert nodes[0] == "accueil" and "horaires" in nodes, nodes


async def test_goodbye_ends_the_call_through_the_rest_api(bot):
    report, rest = await _call(bot, [WaitForBot(), Say(AUDIO / "au_revoir.wav")], timeout=40)
    print(report.timeline())
    assert await rest.wait_hangup(report.call_sid, timeout=5), "the bot never hung up through REST"
    assert report.ended_by in ("server-rest", "server-ws"), report.ended_by
    assert report.audio_cut_s < 0.3, "the goodbye was cut off"
    record = await _call_record(bot, report.call_sid)
    assert record["end_reason"] == "bot_hangup"


async def test_unsigned_webhook_is_forbidden(bot):
    form = {"CallSid": "CA0", "AccountSid": ACCOUNT_SID, "From": "+33600000000"}
    async with aiohttp.ClientSession() as http:
        async with http.post(bot.url + "/twilio/voice", data=form) as resp:
            assert resp.status == 403
        async with http.post(bot.url + "/twilio/voice", data=form,
                             headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}) as resp:
            assert resp.status == 403


async def test_malformed_websocket_messages_do_not_end_the_call(bot):
    """Garbage on the media socket is logged and skipped; the call goes on and answers a keypad digit."""
    call_sid = "CA" + "bad0" * 8
    stream_sid = "MZ" + "bad0" * 8
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(bot.url.replace("http", "ws") + "/twilio/media")
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send_str("{not json")  # before start, too
        await ws.send_str(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                                      "start": {"streamSid": stream_sid, "callSid": call_sid,
                                                "accountSid": ACCOUNT_SID, "tracks": ["inbound"],
                                                "customParameters": {"caller": "+33611111111"},
                                                "mediaFormat": {"encoding": "audio/x-mulaw",
                                                                "sampleRate": 8000, "channels": 1}}}))
        garbage = ["not json at all", "[1, 2, 3]", '"a string"', "null", "{}",
                   '{"event": "media", "media": {"payload": "!!! not base64 !!!"}}',
                   '{"event": "media", "media": "wrong type"}',
                   '{"event": "dtmf", "dtmf": {"digit": "Z"}}', '{"event": "dtmf"}',
                   '{"event": "mark", "mark": 5}', '{"event": 42}']
        for message in garbage:
            await ws.send_str(message)
        await ws.send_bytes(b"\x00\xff binary junk")
        silence = "/////////////////////////////////////////////////////////////////" * 3  # µ-law 0xFF
        for i in range(25):  # half a second of line silence
            await ws.send_str(json.dumps({"event": "media", "streamSid": stream_sid,
                                          "media": {"track": "inbound", "chunk": str(i), "timestamp": str(20 * i),
                                                    "payload": silence[:212]}}))
            await asyncio.sleep(0.02)
        await ws.send_str(json.dumps({"event": "dtmf", "streamSid": stream_sid,
                                      "dtmf": {"track": "inbound_track", "digit": "1"}}))
        media_after = 0
        async with asyncio.timeout(20):
            while media_after < 50:
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg}"
                if json.loads(msg.data).get("event") == "media":
                    media_after += 1
        await ws.send_str(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}))
        await ws.close()
    record = await _call_record(bot, call_sid)
    assert [e["digits"] for e in _types(record, "digits")] == ["1"]
    assert "horaires" in [e["node"] for e in _types(record, "node")]
    assert record["caller"] == "+33611111111"


async def test_caller_speech_interrupts_the_bot(bot):
    """Barge-in: speaking over the greeting makes the bot send Twilio ``clear`` and answer the request."""
    from callbot_testing.twilio_caller import Wait

    report, _ = await _call(bot, [Wait(1.0), Say(AUDIO / "horaires.wav"), WaitForBot(), Hangup()])
    print(report.timeline())
    assert report.clears, "no clear: the bot talked over the caller"
    first_clear = report.clears[0] - report.answered_at
    assert first_clear < 1.0 + 3.0, f"clear came {first_clear:.2f} s into the call"
    record = await _call_record(bot, report.call_sid)
    assert any(e["intent"] == "horaires" for e in _types(record, "intent"))
