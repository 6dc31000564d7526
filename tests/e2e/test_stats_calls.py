"""Scripted calls through the real server -> the numbers ops read: ``/api/stats`` and ``/metrics``.

Seven calls, one of each kind: answered by the bot, transferred and answered by an agent, abandoned in the
queue, a short abandon, a callback request from the queue, a caller who said nothing (bot abandonment),
and one refused at overload (SIP, ``CALLBOT_MAX_CALLS=1``). Its own Redis, so the numbers are exact.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from twilio.request_validator import RequestValidator

from callbot.redis_server import RedisServer
from callbot.switchboard.accounts import Accounts
import callbot_testing.sip_caller as C
from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.steps import Hangup, Press, Say, Wait, WaitForBot
from callbot_testing.twilio_caller import place_call
from callbot_testing.twiml import new_sid
from tests.e2e.conftest import ACCOUNT_SID, AUDIO, TOKEN, start_bot, stop_bot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.timeout(300),
]
PW = "un-mot-de-passe-solide"


@pytest.fixture(scope="module")
def stats_bot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats")
    redis = RedisServer(tmp / "redis").start()
    bot = start_bot(tmp, redis.url, CALLBOT_CLOCK="2026-12-07T10:00:00", CALLBOT_MAX_CALLS="1",
                    CALLBOT_QUEUE_ANNOUNCE_SECS="30", CALLBOT_AGENT_RING_SECS="20")
    yield bot, redis.url
    stop_bot(bot)
    redis.stop()


async def until(predicate, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    return None


async def test_scripted_calls_give_exact_stats_and_metrics(stats_bot, tmp_path):
    bot, redis_url = stats_bot
    redis = aioredis.from_url(redis_url, decode_responses=True)
    accounts = Accounts(redis)
    await accounts.add("bob", "agent", PW, services=["agent"], phone="+33611111111", replace=True)
    auth = {"Authorization": f"Bearer {await accounts.new_token('bob')}"}
    http = aiohttp.ClientSession(headers=auth)

    async def presence(state: str) -> None:
        async with http.post(bot.url + "/api/console/presence", json={"state": state}) as r:
            assert r.status == 200, await r.text()

    async def waiting() -> list:
        async with http.get(bot.url + "/api/queue") as r:
            return (await r.json())["calls"]

    async def twilio(steps, call_sid=None, **kw):
        return await place_call(bot.url, audio=steps, token=TOKEN, account_sid=ACCOUNT_SID, rest=rest,
                                call_sid=call_sid or new_sid("CA"), timeout=120, **kw)

    try:
        async with FakeTwilioRest(ACCOUNT_SID, TOKEN, port=bot.rest_port) as rest:
            # 1 resolved by the bot, 2 short abandon, 3+4 SIP: one says nothing (bot abandonment), one refused
            async def sip_pair() -> None:
                first = await C.BaresipPeer(tmp_path / "sip1", source_wav=C.tone_wav(tmp_path / "q.wav", 0, 20)).start()
                second = await C.BaresipPeer(tmp_path / "sip2").start()
                try:
                    await first.dial(f"sip:mairie@127.0.0.1:{bot.sip_port}")
                    assert await first.wait_event("CALL_ESTABLISHED", 10)
                    await second.dial(f"sip:mairie@127.0.0.1:{bot.sip_port}")
                    closed = await second.wait_event("CALL_CLOSED", 10)
                    assert closed and "503" in str(closed), second.events
                    await asyncio.sleep(8)
                    await first.hangup()
                    await first.wait_event("CALL_CLOSED", 5)
                finally:
                    await first.stop()
                    await second.stop()

            await asyncio.gather(
                twilio([WaitForBot(), Say(AUDIO / "horaires.wav"), WaitForBot(), Hangup()], caller="+33600000001"),
                twilio([Wait(1.0), Hangup()]),
                sip_pair())

            # 5 transferred and answered: the agent accepts, Twilio dials them, the dial completes
            await presence("available")
            sid = new_sid("CA")
            call = asyncio.create_task(twilio([WaitForBot(), Say(AUDIO / "agent.wav"), Wait(60)], call_sid=sid))

            async def offered():
                async with http.get(bot.url + "/api/console/state") as r:
                    return (await r.json())["offer"]

            offer = await until(offered)
            assert offer, bot.log()
            async with http.post(bot.url + f"/api/console/offers/{offer['call_id']}/accept") as r:
                assert r.status == 200
            await asyncio.wait_for(call, 60)
            url = f"{bot.url}/twilio/dial-result?call={offer['call_id']}"
            form = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "DialCallStatus": "completed", "DialCallDuration": "42"}
            async with http.post(url, data=form, headers={
                    "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, form)}) as r:
                assert r.status == 200

            # 6 abandoned in the queue after ~8 s; 7 callback requested from the queue (key 1, number, afternoon)
            await presence("away")
            abandon = asyncio.create_task(twilio([WaitForBot(), Say(AUDIO / "agent.wav"), Wait(14), Hangup()]))
            await until(waiting, 40)
            await asyncio.wait_for(abandon, 60)
            # (hold music never falls silent: keys on a timer; a key also cuts the prompt it answers)
            callback = await twilio([WaitForBot(), Say(AUDIO / "agent.wav"), Wait(12), Press("1"), Wait(3),
                                     Press("1"), Wait(3), Press("2"), Wait(10)])
            assert callback.completed
    finally:
        await http.close()
        await redis.aclose()

    ops = await _ops_headers(redis_url)

    async def stats():
        async with aiohttp.ClientSession(headers=ops) as s:
            async with s.get(bot.url + "/api/stats") as r:  # today (the calls' real start times)
                body = await r.json()
                assert r.status == 200, body
        return body if body["kpis"]["calls_offered"]["value"] == 7 else None

    body = await until(stats, 20)
    assert body, bot.log()
    k = {name: (v["value"], v["numerator"], v["denominator"]) for name, v in body["kpis"].items()}
    print({name: k[name] for name in sorted(k)})
    assert k["calls_offered"][0] == 7
    assert k["rejected_calls"][0] == 1
    assert k["short_abandons"][0] == 1
    assert k["pickup_rate"][1:] == (6, 7)
    assert k["bot_abandonment_rate"][1:] == (1, 5)  # answered minus short abandons
    assert k["queue_abandonment_rate"][1:] == (1, 3)  # transferred, abandoned, callback were queued
    assert k["service_level"][1:] == (1, 3)
    assert k["callback_rate"][1] == 1 and k["transfer_rate"][1] == 1
    assert k["containment_rate"][1:] == (1, 6)  # its own number: no repeat call within 24 h
    assert k["average_handle_time_s"][0] == 42  # Twilio's DialCallDuration
    outcomes = {row["intent"]: row for row in body["intents"]}
    assert outcomes["parler_agent"]["calls"] == 3 and outcomes["horaires"]["calls"] == 1

    async with aiohttp.ClientSession(headers=ops) as s:
        async with s.get(bot.url + "/metrics") as r:
            metrics = await r.text()
    calls = {line.split("}")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
             if line.startswith("callbot_calls_total{")}
    assert sum(calls.values()) == 7, calls
    assert calls['callbot_calls_total{channel="sip",reason="rejected"'] == 1
    assert calls['callbot_calls_total{channel="twilio",reason="transferred"'] == 1
    assert 'callbot_queue_events_total{event="abandoned"} 1.0' in metrics
    assert 'callbot_queue_events_total{event="callback_requested"} 1.0' in metrics
    assert 'callbot_overload_total{what="sip_busy"} 1.0' in metrics


async def _ops_headers(redis_url: str) -> dict[str, str]:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        accounts = Accounts(redis)
        await accounts.add("chef", "ops", PW, replace=True)
        return {"Authorization": f"Bearer {await accounts.new_token('chef')}"}
    finally:
        await redis.aclose()
