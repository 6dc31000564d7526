"""Twilio webhooks: TwiML content and signature checking (no audio)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

import redis.asyncio as aioredis

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from callbot.config import Settings
from callbot.telephony import twilio
from callbot.web import api

FORM = {"CallSid": "CA123", "AccountSid": "AC1", "From": "+33612345678", "To": "+33100000000"}


async def _client(settings: Settings, redis=None) -> TestClient:
    app = web.Application()
    if redis is not None:  # what server.py's runtime offers the Twilio routes
        app[api.RUNTIME] = SimpleNamespace(store=SimpleNamespace(redis=redis))

    async def on_call(transport, info, control):  # not reached by these tests
        raise AssertionError("no media expected")

    twilio.setup_routes(app, settings, on_call)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_voice_webhook_returns_connect_stream_with_caller():
    client = await _client(Settings(public_url="https://bot.mairie.example/"))
    try:
        resp = await client.post("/twilio/voice", data=FORM)
        assert resp.status == 200 and resp.content_type == "application/xml"
        root = ET.fromstring(await resp.text())
        connect = root.find("Connect")
        assert connect.get("action") == "https://bot.mairie.example/twilio/after"
        stream = connect.find("Stream")
        assert stream.get("url") == "wss://bot.mairie.example/twilio/media"
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        assert params["caller"] == "+33612345678" and params["called"] == "+33100000000"
    finally:
        await client.close()


async def test_stream_url_follows_the_request_when_no_public_url():
    client = await _client(Settings())
    try:
        resp = await client.post("/twilio/voice", data=FORM, headers={"X-Forwarded-Proto": "https",
                                                                       "X-Forwarded-Host": "abc.ngrok.app"})
        stream = ET.fromstring(await resp.text()).find("Connect/Stream")
        assert stream.get("url") == "wss://abc.ngrok.app/twilio/media"
    finally:
        await client.close()


async def test_signature_required_when_token_set():
    settings = Settings(public_url="https://bot.mairie.example", twilio_auth_token="secret-token")
    client = await _client(settings)
    try:
        unsigned = await client.post("/twilio/voice", data=FORM)
        assert unsigned.status == 403
        forged = await client.post("/twilio/voice", data=FORM, headers={"X-Twilio-Signature": "AAAA"})
        assert forged.status == 403
        url = "https://bot.mairie.example/twilio/voice"
        signature = RequestValidator("secret-token").compute_signature(url, FORM)
        signed = await client.post("/twilio/voice", data=FORM, headers={"X-Twilio-Signature": signature})
        assert signed.status == 200
        tampered = dict(FORM, From="+33700000000")
        assert (await client.post("/twilio/voice", data=tampered,
                                  headers={"X-Twilio-Signature": signature})).status == 403
    finally:
        await client.close()


async def test_after_stream_dials_a_transfer_or_hangs_up(redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    client = await _client(Settings(), redis)
    try:
        await twilio.store_after_stream(redis, "CA123", "<Response><Dial>+33123456789</Dial></Response>")
        dial = ET.fromstring(await (await client.post("/twilio/after", data=FORM)).text())
        assert dial.find("Dial").text == "+33123456789"
        again = ET.fromstring(await (await client.post("/twilio/after", data=FORM)).text())
        assert again.find("Hangup") is not None
    finally:
        await client.close()
        await redis.aclose()


async def test_a_replayed_signed_request_is_refused(redis_url):
    """A captured request keeps a valid signature forever: each one is served once, by any worker."""
    settings = Settings(public_url="https://bot.mairie.example", twilio_auth_token="secret-token")
    redis = aioredis.from_url(redis_url, decode_responses=True)
    first, second = await _client(settings, redis), await _client(settings, redis)  # two workers, one Redis
    try:
        url = "https://bot.mairie.example/twilio/voice"
        signature = RequestValidator("secret-token").compute_signature(url, FORM)
        assert (await first.post("/twilio/voice", data=FORM, headers={"X-Twilio-Signature": signature})).status == 200
        replay = await second.post("/twilio/voice", data=FORM, headers={"X-Twilio-Signature": signature})
        assert replay.status == 403 and "replayed" in await replay.text()
        other = dict(FORM, CallSid="CA456")  # the next real call differs: served
        sig2 = RequestValidator("secret-token").compute_signature(url, other)
        assert (await second.post("/twilio/voice", data=other, headers={"X-Twilio-Signature": sig2})).status == 200
    finally:
        await first.close()
        await second.close()
        await redis.aclose()
