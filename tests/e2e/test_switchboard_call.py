"""The whole switchboard, end to end: a citizen asks for a person on a SIP call, an agent takes it in the
console in a real browser, and the agent's SIP phone is connected to the caller.

Real components only: the ``callbot serve`` process (Whisper, flow, voice, SIP), Redis, Debian's
``baresip`` as the caller (speech, then a 1 kHz tone standing for their voice) and as the agent's
phone (auto-answer, 600 Hz), and Chromium driven by Playwright. The clock is set to a Monday
morning (``CALLBOT_CLOCK``) so the town hall is open.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from callbot.switchboard.accounts import Accounts
import callbot_testing.sip_caller as C
from tests.e2e.conftest import start_bot, stop_bot
from tests.test_sip_transfer import tone_at

async_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
RESULTS = Path(__file__).resolve().parents[2] / "test-results"
PW = "un-mot-de-passe-solide"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.skipif(shutil.which("pico2wave") is None, reason="pico2wave (libttspico-utils) not installed"),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def open_bot(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("bot"), redis_server.url, CALLBOT_CLOCK="2026-12-07T10:00:00",
                       CALLBOT_AGENT_RING_SECS="25", CALLBOT_QUEUE_ANNOUNCE_SECS="30")
    yield server
    stop_bot(server)


def caller_audio(tmp: Path) -> Path:
    """4 s of silence (the greeting), the request, 1 s of silence, then 40 s of 1 kHz: the caller's voice."""
    speech = C.french_wav("Bonjour, je voudrais parler à un conseiller, s'il vous plaît.", tmp / "speech.wav",
                          lead_silence=4.0, tail_silence=1.0)
    pcm, rate = C.read_wav(speech)
    t = np.arange(int(rate * 40)) / rate
    tone = (np.sin(2 * np.pi * 1000 * t) * 6000).astype("<i2").tobytes()
    C.write_wav(tmp / "caller.wav", pcm + tone, rate)
    return tmp / "caller.wav"


async def test_agent_takes_a_transferred_sip_call_in_the_browser(open_bot, redis_server, tmp_path):
    from playwright.async_api import async_playwright, expect

    bot = open_bot
    agent = await C.BaresipPeer(tmp_path / "agent", user="alice", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 60)).start()
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await Accounts(redis).add("alice", "agent", PW, services=["agent"], phone=agent.uri, display_name="Alice Martin",
                              replace=True)
    caller = None
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(bot.url + "/console")
            await page.fill("#name", "alice")
            await page.fill("#password", PW)
            await page.click("button[type=submit]")
            await page.wait_for_url(bot.url + "/console")
            await page.get_by_role("button", name="Disponible").click()
            await expect(page.get_by_role("button", name="Disponible")).to_have_attribute("aria-pressed", "true")

            caller = await C.BaresipPeer(tmp_path / "caller", source_wav=caller_audio(tmp_path)).start()
            t_dial = time.monotonic()
            await caller.dial(f"sip:mairie@127.0.0.1:{bot.sip_port}")
            assert await caller.wait_event("CALL_ESTABLISHED", 10), caller.events

            card = page.get_by_test_id("offer")
            await expect(card).to_be_visible(timeout=60_000)
            offered_after = time.monotonic() - t_dial
            await expect(page.get_by_test_id("offer-transcript")).to_contain_text("conseiller")
            await expect(page.get_by_test_id("offer-caller")).to_contain_text("caller")
            RESULTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(RESULTS / "console-live-call.png"), full_page=True)

            await page.get_by_role("button", name="Prendre l'appel").click()
            t_accept = time.monotonic()
            assert await agent.wait_event("CALL_ESTABLISHED", 20), agent.events
            rang_after = time.monotonic() - t_accept
            await expect(page.locator(".sb-state")).to_have_text("En communication", timeout=10_000)
            await asyncio.sleep(3.0)  # caller and agent talk through the bot
            await caller.hangup()
            assert await agent.wait_event("CALL_CLOSED", 10), agent.events
            await expect(page.locator(".sb-state")).not_to_have_text("En communication", timeout=10_000)
            await browser.close()
        print(f"offer on the console {offered_after:.1f} s after dialling; agent's phone answered "
              f"{rang_after:.1f} s after the click")
    finally:
        if caller is not None:
            await caller.stop()
        await agent.stop()
        await redis.aclose()

    record = None
    for _ in range(100):
        rows = [r for r in bot.get_json("/api/calls?limit=20")["calls"]
                if r.get("channel") == "sip" and r.get("status") == "ended"]
        if rows:
            record = bot.get_json(f"/api/calls/{rows[0]['id']}")
            break
        await asyncio.sleep(0.1)
    assert record, bot.log()
    types = [e["type"] for e in record["events"]]
    for kind in ("queued", "agent_offered", "agent_answered", "agent_connected"):
        assert kind in types, (kind, types)
    assert record["end_reason"] == "transferred", record
    connected = [e for e in record["events"] if e["type"] == "agent_connected"][0]
    assert connected["agent"] == "alice" and connected["talk_s"] > 2

    _, heard_by_agent = agent.recordings()
    pcm, rate = C.read_wav(heard_by_agent)
    assert tone_at(pcm, 1000, rate), "the agent did not hear the caller"
    _, heard_by_caller = caller.recordings()
    pcm, rate = C.read_wav(heard_by_caller)
    assert tone_at(pcm, 600, rate), "the caller did not hear the agent"



async def test_twilio_call_waits_then_is_dialled_to_the_agent(open_bot, redis_server):
    """Twilio path: the caller asks for a person, the agent accepts through the console API, the bot sends
    Twilio a ``<Dial>`` to the agent's phone (recorded by the fake REST API), and Twilio's dial result
    closes the call with its only ``call_ended``."""
    import aiohttp
    from twilio.request_validator import RequestValidator

    from callbot_testing.fake_twilio_rest import FakeTwilioRest
    from callbot_testing.steps import Say, Wait, WaitForBot
    from callbot_testing.twilio_caller import place_call
    from callbot_testing.twiml import new_sid
    from tests.e2e.conftest import ACCOUNT_SID, AUDIO, TOKEN

    bot = open_bot
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    accounts = Accounts(redis)
    await accounts.add("bob", "agent", PW, services=["agent"], phone="+33611111111", replace=True)
    for other in await accounts.list():
        if other.name != "bob":
            await redis.hset(f"callbot:sb:agent:{other.name}", mapping={"state": "offline"})
    token = await accounts.new_token("bob")
    auth = {"Authorization": f"Bearer {token}"}
    call_sid = new_sid("CA")
    try:
        async with aiohttp.ClientSession(headers=auth) as http, \
                FakeTwilioRest(ACCOUNT_SID, TOKEN, port=bot.rest_port) as rest:
            async with http.post(bot.url + "/api/console/presence", json={"state": "available"}) as r:
                assert r.status == 200, await r.text()
            caller = asyncio.create_task(place_call(
                bot.url, audio=[WaitForBot(), Say(AUDIO / "agent.wav"), Wait(60)], token=TOKEN,
                account_sid=ACCOUNT_SID, rest=rest, call_sid=call_sid, timeout=90))
            offer = None
            for _ in range(600):
                async with http.get(bot.url + "/api/console/state") as r:
                    offer = (await r.json())["offer"]
                if offer or caller.done():
                    break
                await asyncio.sleep(0.1)
            assert offer, bot.log()
            async with http.get(bot.url + "/api/queue") as r:
                assert [c["call_id"] for c in (await r.json())["calls"]] == [offer["call_id"]]
            async with http.post(bot.url + f"/api/console/offers/{offer['call_id']}/accept") as r:
                assert r.status == 200, await r.text()
            report = await asyncio.wait_for(caller, 60)
            twiml = rest.last_twiml(call_sid)
            assert twiml and "<Number>+33611111111</Number>" in twiml, (twiml, report.timeline())
            assert 'answerOnBridge="true"' in twiml and f"/twilio/dial-result?call={offer['call_id']}" in twiml
            assert not rest.hung_up(call_sid).is_set()  # the bot did not hang up the transferred caller
            url = f"{bot.url}/twilio/dial-result?call={offer['call_id']}"
            form = {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "DialCallStatus": "completed",
                    "DialCallDuration": "42"}
            sig = RequestValidator(TOKEN).compute_signature(url, form)
            async with http.post(url, data=form, headers={"X-Twilio-Signature": sig}) as r:
                assert r.status == 200 and "<Hangup" in await r.text()
    finally:
        await redis.aclose()
    record = None
    for _ in range(100):
        record = bot.get_json(f"/api/calls/{offer['call_id']}")
        if record.get("status") == "ended":
            break
        await asyncio.sleep(0.1)
    types = [e["type"] for e in record["events"]]
    assert types.count("call_ended") == 1 and record["end_reason"] == "transferred", types
    for kind in ("queued", "agent_offered", "agent_answered", "agent_connected"):
        assert kind in types, (kind, types)
    assert (await _state(redis_server.url, "bob")) == "wrap_up"


async def _state(url: str, name: str) -> str:
    redis = aioredis.from_url(url, decode_responses=True)
    try:
        return await redis.hget(f"callbot:sb:agent:{name}", "state")
    finally:
        await redis.aclose()
