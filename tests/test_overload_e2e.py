"""Overload path end to end: past the speech-recognition capacity a call is still answered at
once, on the keypad menu (pre-rendered prompts), and the menu works.

``CALLBOT_MAX_ASR_CALLS=1``: the first call holds the only speech slot, the second one
arrives meanwhile and must be served in keypad mode.
"""

from __future__ import annotations

import asyncio

import pytest

from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.twilio_caller import Hangup, Press, Wait, WaitForBot, place_call
from tests.e2e.conftest import ACCOUNT_SID, TOKEN, start_bot, stop_bot

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def small_bot(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("overload"), redis_server.url,
                       CALLBOT_MAX_ASR_CALLS="1", CALLBOT_SIP_ENABLED="false")
    yield server
    stop_bot(server)


def _get(bot, path: str) -> dict:
    return bot.get_json(path)  # with the bot's API token


async def _record(bot, call_sid: str) -> dict:
    for _ in range(100):
        for row in _get(bot, "/api/calls?limit=50")["calls"]:
            if row.get("provider_call_id") == call_sid and row.get("status") == "ended":
                return _get(bot, f"/api/calls/{row['id']}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no ended call {call_sid}\n{bot.log()}")


async def test_call_beyond_asr_capacity_is_answered_on_the_keypad_menu(small_bot):
    async with FakeTwilioRest(ACCOUNT_SID, TOKEN, port=small_bot.rest_port) as rest:
        async def first():
            return await place_call(small_bot.url, audio=[WaitForBot(), Wait(6), Hangup()], token=TOKEN,
                                    account_sid=ACCOUNT_SID, rest=rest, timeout=40)

        async def second():
            await asyncio.sleep(1.0)  # arrives while the first call holds the speech slot
            return await place_call(small_bot.url, audio=[WaitForBot(), Press("1"), WaitForBot(), Hangup()],
                                    token=TOKEN, account_sid=ACCOUNT_SID, rest=rest, timeout=60)

        speech_call, keypad_call = await asyncio.gather(first(), second())
    print(keypad_call.timeline())
    assert speech_call.greeting_latency is not None
    assert keypad_call.greeting_latency is not None, "the overflow call was not answered"
    assert keypad_call.turns[0].bot_onset is not None, "no reply to the keypad digit"
    record = await _record(small_bot, keypad_call.call_sid)
    types = [e["type"] for e in record["events"]]
    assert "keypad_fallback" in types and "overload" in types, types
    nodes = [e["node"] for e in record["events"] if e["type"] == "node"]
    assert nodes[0] == "menu" and "horaires" in nodes, nodes
    said = [e["text"] for e in record["events"] if e["type"] == "bot_said"]
    assert all(e["cached"] for e in record["events"] if e["type"] == "bot_said" and e["node"] == "menu"), said
    first_record = await _record(small_bot, speech_call.call_sid)
    assert not any(e["type"] in ("keypad_fallback", "overload") for e in first_record["events"])
