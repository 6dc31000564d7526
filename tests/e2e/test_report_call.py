"""Issue 3 end to end: a caller reports a broken street light by voice; the bot fills the slots and files a ticket."""

from __future__ import annotations

import json

import pytest

from callbot_testing.twilio_caller import Hangup, Say, WaitForBot
from tests.e2e.conftest import AUDIO
from tests.e2e.test_twilio_call import _call, _call_record, _get, _types

pytestmark = pytest.mark.e2e


async def test_street_light_report_by_voice_creates_a_ticket(bot):
    steps = [
        WaitForBot(),
        Say(AUDIO / "lampadaire.wav"),  # "Je voudrais signaler un lampadaire en panne."
        WaitForBot(silence_after=1.2),
        Say(AUDIO / "adresse.wav"),  # "Au douze rue Victor Hugo." -> read back for confirmation
        WaitForBot(silence_after=1.2),
        Say(AUDIO / "oui_exactement.wav"),
        WaitForBot(silence_after=1.2),
        Say(AUDIO / "description.wav"),  # "Il ne s'allume plus depuis trois jours."
        WaitForBot(silence_after=1.2),
        Hangup(),
    ]
    report, _ = await _call(bot, steps, timeout=120)
    print(report.timeline())
    record = await _call_record(bot, report.call_sid)
    nodes = [e["node"] for e in _types(record, "node")]
    assert "signal_lieu" in nodes and "signal_details" in nodes, nodes
    slots = {e["slot"]: e["value"] for e in _types(record, "slot")}
    assert slots.get("lieu") and slots.get("details"), slots
    tickets = _types(record, "ticket")
    assert len(tickets) == 1 and tickets[0]["kind"] == "eclairage", tickets
    fields = tickets[0]["fields"]
    assert fields["lieu"] == slots["lieu"] and fields["description"] == slots["details"]
    assert tickets[0]["ticket_id"]
    listed = {t["id"]: t for t in _get(bot, "/api/tickets")["tickets"]}
    assert listed[tickets[0]["ticket_id"]]["call_id"] == record["id"]


async def test_spoken_emergency_gets_the_fire_brigade_number_at_once(bot):
    report, _ = await _call(bot, [WaitForBot(), Say(AUDIO / "incendie.wav"), WaitForBot(), Hangup()])
    print(report.timeline())
    record = await _call_record(bot, report.call_sid)
    emergencies = _types(record, "emergency")
    assert emergencies and emergencies[0]["number"] == "18", json.dumps(record["events"])[:3000]
    said = " ".join(e["text"] for e in _types(record, "bot_said")).lower()
    assert "18" in said or "dix-huit" in said
