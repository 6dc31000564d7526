"""The Twilio line after the pipeline stops: hold audio, keypad, agent ``<Dial>``, resume, shared state.

A real aiohttp server with the Twilio routes, the project's test caller (``place_call``) in
Twilio's place on the websocket, ``FakeTwilioRest`` for the REST API and a real Redis. No
pipecat pipeline: each test's ``on_call`` drives ``TwilioCallControl`` directly, like the
switchboard's queue loop does once the flow has handed the call over.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from twilio.request_validator import RequestValidator

from callbot.config import Settings
from callbot.telephony import twilio
from callbot.telephony.base import AgentLeg
from callbot.telephony.twilio_line import TwilioCallControl, after_key, dial_twiml
from callbot_testing import audio as A
from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.twilio_caller import Hangup, Press, Wait, place_call
from callbot.web import api

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "AC" + "cd" * 16
TOKEN = "line-token"
PUBLIC = "https://bot.mairie.example"
AGENT = "+33612345678"


def pcm(seconds: float, rate: int = 8000, freq: float = 440.0) -> bytes:
    return A.tone(freq, seconds, rate=rate).astype(np.int16).tobytes()


@pytest.fixture
async def make_bot(redis_url):
    """``await make_bot(on_call, settings=…, on_resume=…, on_dial_result=…)`` -> the server's base URL.

    Each bot is its own app ("worker") with its own Redis client on the shared test Redis.
    """
    runners: list[web.AppRunner] = []
    clients: list[aioredis.Redis] = []

    async def make(on_call, *, settings: Settings | None = None, on_resume=None, on_dial_result=None) -> str:
        app = web.Application()
        redis = aioredis.from_url(redis_url, decode_responses=True)
        clients.append(redis)
        app[api.RUNTIME] = SimpleNamespace(store=SimpleNamespace(redis=redis))  # what server.py's runtime offers
        twilio.setup_routes(app, settings or Settings(), on_call, on_resume, on_dial_result)
        # like web.run_app (not TestServer): a caller hanging up must not cancel the handler
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    yield make
    for runner in runners:
        await runner.cleanup()
    for client in clients:
        await client.aclose()


def rest_settings(rest: FakeTwilioRest) -> Settings:
    return Settings(public_url=PUBLIC, twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN,
                    twilio_api_base_url=rest.base_url)


async def settled(got: dict, key: str, timeout: float = 3.0) -> None:
    """Wait for the server side to record ``key``: the caller may finish before ``on_call`` returns."""
    deadline = time.monotonic() + timeout
    while key not in got and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def signed_post(url: str, path_qs: str, form: dict[str, str]) -> tuple[int, str]:
    """POST a webhook like Twilio: signed over the public URL (``PUBLIC`` + path), sent to the local server."""
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path_qs, form)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + path_qs, data=form, headers={"X-Twilio-Signature": signature}) as resp:
            return resp.status, await resp.text()


# ---------------------------------------------------------------- hold audio and keypad
async def test_hold_audio_is_paced_in_real_time(make_bot):
    got: dict = {}

    async def on_call(transport, info, control):
        t0 = time.monotonic()
        got["played"] = await control.play(pcm(1.0, rate=16000), 16000)  # resampled to 8 kHz
        got["play_s"] = time.monotonic() - t0
        await control.hangup("test over")

    url = await make_bot(on_call)
    media_at: list[float] = []
    report = await place_call(url, audio=[], timeout=10,
                              on_message=lambda t, m: media_at.append(t) if m.get("event") == "media" else None)
    assert got["played"] is True and 1.0 <= got["play_s"] < 1.4
    assert len(media_at) == 50  # 1 s in 20 ms frames
    # sent over ~0.85 s (1 s minus the 0.15 s lead), not in one burst
    assert 0.7 <= media_at[-1] - media_at[0] <= 1.0
    assert sum(b - a for a, b in report.bot_speech) == pytest.approx(1.0, abs=0.1)
    assert report.ended_by == "server-ws" and not report.protocol_errors and not report.errors


async def test_key_pressed_during_hold_audio_stops_it_at_once(make_bot):
    got: dict = {}

    async def on_call(transport, info, control):
        t0 = time.monotonic()
        got["played"] = await control.play(pcm(4.0), 8000)
        got["play_s"] = time.monotonic() - t0
        got["digit"] = await asyncio.wait_for(control.digits().get(), 2)
        await control.hangup("test over")

    url = await make_bot(on_call)
    report = await place_call(url, audio=[Wait(0.6), Press("5")], timeout=10)
    assert got["played"] is False and got["play_s"] < 1.2 and got["digit"] == "5"
    assert len(report.clears) == 1
    pressed_at = report.dtmf_sent[0][0]
    assert report.clears[0] - pressed_at < 0.2
    heard_until = max(end for _, end in report.bot_speech)
    assert heard_until < pressed_at + 0.25  # the rest of the 4 s was dropped, not played


async def test_line_reader_waits_for_the_pipeline_reader_to_let_go(make_bot):
    """Touching the line while pipecat still reads the socket must not break either reader."""
    got: dict = {}

    async def on_call(transport, info, control):
        async def pipeline_reader() -> None:  # stands for the transport's receive task
            while True:
                await control.ws.receive()

        pipeline = asyncio.create_task(pipeline_reader())
        await asyncio.sleep(0.05)
        digits = control.digits()  # starts the line reader: it must wait its turn
        await asyncio.sleep(0.3)
        pipeline.cancel()  # the pipeline stops
        got["digit"] = await asyncio.wait_for(digits.get(), 3)
        got["pipeline_ok"] = pipeline.cancelled()
        await control.hangup("test over")

    url = await make_bot(on_call)
    report = await place_call(url, audio=[Wait(0.8), Press("7")], timeout=10)
    await settled(got, "pipeline_ok")
    assert got == {"digit": "7", "pipeline_ok": True} and report.ended_by == "server-ws"


async def test_malformed_messages_are_skipped():
    control = TwilioCallControl(Settings(), SimpleNamespace(closed=False), None, redis=lambda: None,
                                account_sid="", call_sid="CA1", stream_sid="MZ1", call_id="c1", public_base=PUBLIC)
    for data in ("not json", '{"event": "dtmf", "dtmf": {}}', '{"event": "dtmf", "dtmf": {"digit": "x"}}',
                 '{"no": "event"}', '{"event": "dtmf", "dtmf": {"digit": "5"}}', '{"event": "mark", "mark": null}'):
        control._on_message(data)
    assert control.bad_messages == 4 and control._digits.get_nowait() == "5" and control._digits.empty()
    control._on_message('{"event": "stop", "stop": {}}')
    assert control._gone.is_set()


async def test_caller_gone_is_set_when_the_caller_hangs_up(make_bot):
    got: dict = {}

    async def on_call(transport, info, control):
        t0 = time.monotonic()
        await asyncio.wait_for(control.caller_gone.wait(), 5)
        got["gone_s"] = time.monotonic() - t0
        got["play_after"] = await control.play(pcm(0.5), 8000)

    url = await make_bot(on_call)
    await place_call(url, audio=[Wait(0.3), Hangup()], timeout=10)
    await settled(got, "play_after")
    assert got["gone_s"] < 1.0 and got["play_after"] is False


# ---------------------------------------------------------------- the agent's leg
async def test_connect_agent_sends_dial_twiml_and_hands_off(make_bot):
    got: dict = {}
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:

        async def on_call(transport, info, control):
            got["call_id"] = info.call_id
            got["leg"] = await control.connect_agent(AGENT, ring_timeout=20, call_id=info.call_id)
            await control.hangup("late clean-up")  # must not hang up the handed-off caller
            got["hung_up"] = True

        url = await make_bot(on_call, settings=rest_settings(rest))
        report = await place_call(url, token=TOKEN, account_sid=ACCOUNT, rest=rest, public_base=PUBLIC,
                                  audio=[], timeout=10)
        await settled(got, "hung_up")
        assert got["leg"] == AgentLeg("handed_off")
        dial = ET.fromstring(rest.last_twiml(report.call_sid)).find("Dial")
        assert dial.find("Number").text == AGENT
        assert dial.get("timeout") == "20" and dial.get("answerOnBridge") == "true"
        assert dial.get("action") == f"{PUBLIC}/twilio/dial-result?call={got['call_id']}"
        assert report.ended_by == "transfer" and report.transferred_to == AGENT
        assert not any(r.form.get("Status") == "completed" for r in rest.requests_for(report.call_sid))


async def test_connect_agent_rest_failure_keeps_the_caller_on_the_stream(make_bot):
    got: dict = {}
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:
        rest.fail_next_update(500)

        async def on_call(transport, info, control):
            got["leg"] = await control.connect_agent(AGENT, ring_timeout=20, call_id=info.call_id)
            got["played"] = await control.play(pcm(0.5), 8000)
            await control.hangup("test over")

        url = await make_bot(on_call, settings=rest_settings(rest))
        report = await place_call(url, token=TOKEN, account_sid=ACCOUNT, rest=rest, public_base=PUBLIC,
                                  audio=[], timeout=10)
        assert got["leg"].outcome == "failed" and not got["leg"].reached and "500" in got["leg"].detail
        assert got["played"] is True and report.bot_speech  # the stream still works
        assert rest.last_twiml(report.call_sid) is None and report.transferred_to is None
        assert await rest.wait_hangup(report.call_sid, timeout=2)


async def test_connect_agent_without_rest_credentials_goes_through_connect_action(make_bot):
    got: dict = {}

    async def on_call(transport, info, control):
        got["call_id"] = info.call_id
        got["leg"] = await control.connect_agent("sip:accueil@pbx.mairie.fr", ring_timeout=15, call_id=info.call_id)

    url = await make_bot(on_call, settings=Settings(public_url=PUBLIC))
    report = await place_call(url, audio=[], public_base=PUBLIC, timeout=10)
    await settled(got, "leg")
    assert got["leg"] == AgentLeg("handed_off")
    assert report.ended_by == "transfer" and report.transferred_to == "sip:accueil@pbx.mairie.fr"
    dial = ET.fromstring(report.after_twiml).find("Dial")
    assert dial.get("timeout") == "15" and dial.get("answerOnBridge") == "true"
    assert dial.get("action") == f"{PUBLIC}/twilio/dial-result?call={got['call_id']}"


def test_dial_twiml_number_or_sip():
    sip = ET.fromstring(dial_twiml("sip:accueil@pbx.mairie.fr", action=f"{PUBLIC}/x", ring_timeout=2.4))
    assert sip.find("Dial/Sip").text == "sip:accueil@pbx.mairie.fr"
    assert sip.find("Dial").get("timeout") == "5"  # Twilio's minimum
    number = ET.fromstring(dial_twiml(" +33100000000 ", action=f"{PUBLIC}/x"))
    assert number.find("Dial/Number").text == "+33100000000" and number.find("Dial").get("timeout") is None
    with pytest.raises(ValueError):
        dial_twiml("  ", action=f"{PUBLIC}/x")


# ---------------------------------------------------------------- /twilio/dial-result and resume
async def test_dial_not_answered_resumes_the_bot_with_the_same_call_id(make_bot):
    results: list[tuple[str, str, float]] = []
    resumed: list = []
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:

        async def on_call(transport, info, control):
            raise AssertionError("a resumed stream must go to on_resume")

        async def on_resume(transport, info, control):
            resumed.append(info)
            await control.play(pcm(0.3), 8000)
            await control.hangup("test over")

        async def on_dial_result(call_id, status, duration_s):
            results.append((call_id, status, duration_s))

        url = await make_bot(on_call, settings=rest_settings(rest), on_resume=on_resume,
                             on_dial_result=on_dial_result)
        form = {"CallSid": "CA" + "12" * 16, "From": "+33700000000", "To": "+33100000000",
                "DialCallStatus": "no-answer", "DialCallDuration": "0"}
        status, body = await signed_post(url, "/twilio/dial-result?call=abc123", form)
        assert status == 200
        connect = ET.fromstring(body).find("Connect")
        assert connect.get("action") == f"{PUBLIC}/twilio/after"
        stream = connect.find("Stream")
        assert stream.get("url") == "wss://bot.mairie.example/twilio/media"
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        assert params == {"resume": "abc123", "dial_status": "no-answer", "caller": "+33700000000",
                          "called": "+33100000000", "call_sid": form["CallSid"]}
        assert results == [("abc123", "no-answer", 0.0)]

        # Twilio runs that TwiML: a new stream with ``resume`` reaches on_resume with our call id
        report = await place_call(f"{url}/twilio/dial-result?call=abc123", audio=[], token=TOKEN,
                                  account_sid=ACCOUNT, rest=rest, public_base=PUBLIC, call_sid=form["CallSid"],
                                  caller=form["From"], timeout=10,
                                  webhook_params={"DialCallStatus": "busy", "DialCallDuration": "0"})
        assert report.custom_parameters["resume"] == "abc123" and report.bot_speech
        assert [i.call_id for i in resumed] == ["abc123"]
        assert resumed[0].extra == {"resume": "1", "dial_status": "busy"}
        assert resumed[0].caller == "+33700000000" and resumed[0].provider_call_id == form["CallSid"]

        status, body = await signed_post(url, "/twilio/dial-result?call=abc123",
                                         dict(form, DialCallStatus="completed", DialCallDuration="42"))
        assert status == 200 and ET.fromstring(body).find("Hangup") is not None
        assert results[-1] == ("abc123", "completed", 42.0)
        async with aiohttp.ClientSession() as http:  # unsigned: refused
            async with http.post(f"{url}/twilio/dial-result?call=abc123", data=form) as resp:
                assert resp.status == 403


async def test_resume_falls_back_to_on_call_and_marks_cold_transfers(make_bot):
    calls: list = []

    async def on_call(transport, info, control):
        calls.append(info)
        await control.hangup("test over")

    url = await make_bot(on_call)
    report = await place_call(f"{url}/twilio/dial-result?call=cold1&cold=1", audio=[], timeout=10,
                              webhook_params={"DialCallStatus": "failed"})
    assert report.custom_parameters["cold"] == "1"
    assert [(i.call_id, i.extra) for i in calls] == [("cold1", {"resume": "1", "dial_status": "failed", "cold": "1"})]


# ---------------------------------------------------------------- state shared between workers
async def test_after_stream_decision_is_shared_through_redis(make_bot, redis_url):
    """Webhooks on worker B, the stream on worker A: B's ``/twilio/after`` still dials A's transfer."""
    got: dict = {}

    async def on_call_a(transport, info, control):
        got["call_id"] = info.call_id
        got["ok"] = await control.transfer("+33123456789")

    async def on_call_b(transport, info, control):
        raise AssertionError("the stream goes to worker A")

    url_a = await make_bot(on_call_a)
    url_b = await make_bot(on_call_b)
    report = await place_call(url_b, ws_url=url_a.replace("http://", "ws://") + "/twilio/media", audio=[], timeout=10)
    assert got["ok"] is True
    assert report.ended_by == "transfer" and report.transferred_to == "+33123456789"
    dial = ET.fromstring(report.after_twiml).find("Dial")
    assert dial.get("action") == f"{url_a}/twilio/dial-result?call={got['call_id']}&cold=1"
    redis = aioredis.from_url(redis_url)
    try:
        assert await redis.exists(after_key(report.call_sid)) == 0  # consumed: a resumed stream starts clean
    finally:
        await redis.aclose()
