"""The switchboard's decisions and its queue loop, on a real Redis, with a scripted line.

The line (``ScriptedLine``) stands in for the telephony provider only: it records what
the caller would hear and presses keys on cue. The real SIP and Twilio lines are tested
in tests/test_switchboard_sip.py and tests/test_twilio_line.py.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.switchboard import policy
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.policy import QueueRules
from callbot.switchboard.queue import WaitingCall
from callbot.switchboard.service import Switchboard
from callbot.switchboard.waiting import Waiting
from callbot.telephony.base import AgentLeg

HOURS = {"lundi": ["08:30-12:00", "13:30-17:00"], "mardi": ["08:30-12:00"], "vendredi": ["08:30-12:00"]}
OPEN = datetime(2026, 12, 7, 10, 0).astimezone()  # a Monday morning
CLOSED = datetime(2026, 12, 7, 19, 0).astimezone()
CHRISTMAS = datetime(2026, 12, 25, 10, 0).astimezone()  # a Friday, public holiday


class ScriptedLine:
    """What a caller hears (texts, music seconds) and does (keys, hang-up)."""

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.music_s = 0.0
        self.caller_gone = asyncio.Event()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self.on_text: list[tuple[str, str]] = []  # (words heard, keys to press)
        self.agent_legs: list[str] = []
        self.leg = AgentLeg("ended", talk_s=12.0)

    def digits(self) -> asyncio.Queue[str]:
        return self._digits

    def press(self, keys: str) -> None:
        for k in keys:
            self._digits.put_nowait(k)

    async def play(self, pcm: bytes, rate: int) -> bool:
        if self.caller_gone.is_set():
            return False
        if pcm.startswith(b"TXT:"):
            text = pcm[4:].decode()
            self.heard.append(text)
            for words, keys in list(self.on_text):
                if words in text:
                    self.on_text.remove((words, keys))
                    self.press(keys)
        else:
            self.music_s += len(pcm) / 2 / rate
        await asyncio.sleep(0.01)
        return self._digits.empty()

    async def connect_agent(self, destination: str, *, ring_timeout: float, call_id: str) -> AgentLeg:
        self.agent_legs.append(destination)
        return self.leg

    async def hangup(self, reason: str) -> None:
        self.caller_gone.set()

    async def transfer(self, destination: str) -> bool:
        return False


@pytest.fixture
async def sb(redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    flows = SimpleNamespace(current=SimpleNamespace(spec=SimpleNamespace(hours={"mairie": HOURS}, closed_dates=[]),
                                                    settings=SimpleNamespace(holidays_subdiv=None)))
    board = Switchboard(redis, QueueRules(announce_every_s=0.3, max_wait_s=4.0, ring_s=0.6), flows=flows,
                        render=lambda text: b"TXT:" + text.encode(), wrapup_s=0.0, clock=lambda: OPEN,
                        music=b"\x00\x00" * 400)
    board.accounts = Accounts(redis, hasher=_cheap_hasher())
    yield board
    await redis.aclose()


def _cheap_hasher():
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def add_agent(sb: Switchboard, name: str, services=("etat_civil",), state="available", phone=None) -> None:
    await sb.accounts.add(name, "agent", "motdepasse-long", services=list(services),
                          phone=phone or f"sip:{name}@127.0.0.1:5099")
    await sb.presence.set(name, state)


def waiting_call(call_id: str, caller: str = "+33612345678", service: str = "etat_civil") -> WaitingCall:
    return WaitingCall(call_id=call_id, service=service, caller=caller, intent="acte_naissance",
                       summary="acte de naissance")


def recorder(call_id: str) -> CallRecorder:
    return CallRecorder(None, call_id)


def types(rec: CallRecorder) -> list[str]:
    return [e.type for e in rec.history]


async def answer_when_offered(sb: Switchboard, agent: str, accept: bool = True, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        offered = await sb.queue.offered_to(agent)
        if offered:
            assert await sb.queue.answer(agent, offered.call_id, accept)
            return offered.call_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing offered to {agent}")


# ---------------------------------------------------------------- pure decisions
def test_policy_announcements_and_entry():
    assert "prochain" in policy.announcement(1, 60, "1")
    text = policy.announcement(3, 400, "1")
    assert "Deux personnes attendent avant vous" in text and "sept minutes" in text and "tapez un" in text
    assert policy.entry(True, 1) == "queue" and policy.entry(False, 3) == "closed" and policy.entry(True, 0) == "no_agent"
    assert policy.may_offer(1, 1) and not policy.may_offer(2, 1) and policy.may_offer(2, 2)
    assert policy.estimate_wait_s(1, 1, 240) == 120 and policy.estimate_wait_s(3, 2, 240) == 300
    assert QueueRules().priority("urgence", "x") == 10 and QueueRules().priority("horaires") == 0


# ---------------------------------------------------------------- presence
async def test_longest_idle_agent_is_chosen_and_never_twice(sb):
    await add_agent(sb, "alice")
    await asyncio.sleep(0.01)
    await add_agent(sb, "bob")
    names = ["alice", "bob"]
    assert await sb.presence.choose(names, "c0") == "alice"  # idle the longest
    await sb.presence.set("alice", "available")
    chosen = await asyncio.gather(*(sb.presence.choose(names, f"c{i}") for i in range(3)))
    assert sorted(c for c in chosen if c) == ["alice", "bob"] and chosen.count(None) == 1  # never twice
    assert (await sb.presence.get("alice")).state == "ringing"
    await sb.presence.set("alice", "wrap_up")  # wrap-up 0 s: available at once
    assert (await sb.presence.get("alice")).state == "available"


# ---------------------------------------------------------------- the queue loop
async def test_two_callers_one_agent_positions_abandon_and_answer(sb):
    await add_agent(sb, "alice", state="away")  # logged in, not yet free: both callers wait
    line1, line2 = ScriptedLine(), ScriptedLine()
    rec1, rec2 = recorder("c1"), recorder("c2")
    w1 = asyncio.create_task(Waiting(sb, line1, rec1, waiting_call("c1")).run())
    await asyncio.sleep(0.2)
    w2 = asyncio.create_task(Waiting(sb, line2, rec2, waiting_call("c2", caller="+33698765432")).run())
    await asyncio.sleep(0.5)
    waiting = await sb.queue.waiting()
    assert [c["call_id"] for c in waiting] == ["c1", "c2"] and waiting[1]["position"] == 2
    assert any("prochain" in t for t in line1.heard), line1.heard
    assert any("Une personne attend avant vous" in t for t in line2.heard), line2.heard
    assert line1.music_s > 0
    line2.caller_gone.set()  # the second caller gives up
    assert (await asyncio.wait_for(w2, 3)).result == "abandoned"
    abandoned = [e for e in rec2.history if isinstance(e, ev.Abandoned)]
    assert abandoned and abandoned[0].wait_s >= 0.4 and abandoned[0].position == 2
    await sb.presence.set("alice", "available")
    assert await answer_when_offered(sb, "alice") == "c1"
    outcome = await asyncio.wait_for(w1, 5)
    assert outcome.result == "agent", outcome
    assert line1.agent_legs == ["sip:alice@127.0.0.1:5099"]
    assert any("Je vous passe un conseiller" in t for t in line1.heard)
    assert types(rec1) == ["queued", "agent_offered", "agent_answered", "agent_connected"]
    assert rec1.history[0].position == 1 and rec2.history[0].position == 2
    assert (await sb.presence.get("alice")).state == "available"  # wrap-up 0 s here
    assert await sb.queue.waiting() == []


async def test_decline_goes_to_the_next_agent_and_ring_out_pauses(sb):
    await add_agent(sb, "alice")
    await asyncio.sleep(0.01)
    await add_agent(sb, "bob")
    line, rec = ScriptedLine(), recorder("c1")
    task = asyncio.create_task(Waiting(sb, line, rec, waiting_call("c1")).run())
    assert await answer_when_offered(sb, "alice", accept=False) == "c1"  # longest idle first; declines
    await asyncio.sleep(1.0)  # bob lets it ring out (0.6 s)
    assert (await sb.presence.get("bob")).state == "away"
    assert await answer_when_offered(sb, "alice") == "c1"
    assert (await asyncio.wait_for(task, 5)).result == "agent"
    declined = [e for e in rec.history if isinstance(e, ev.AgentDeclined)]
    assert [(e.agent, e.cause) for e in declined] == [("alice", "declined"), ("bob", "timeout")]


async def test_agent_phone_not_answering_puts_the_caller_back(sb):
    await add_agent(sb, "alice")
    line, rec = ScriptedLine(), recorder("c1")
    line.leg = AgentLeg("no_answer", detail="timeout")
    task = asyncio.create_task(Waiting(sb, line, rec, waiting_call("c1")).run())
    await answer_when_offered(sb, "alice")
    await asyncio.sleep(0.3)
    assert (await sb.presence.get("alice")).state == "away"
    assert [c["call_id"] for c in await sb.queue.waiting()] == ["c1"]  # still waiting, not hung up
    assert any("gardez votre place" in t for t in line.heard)
    line.caller_gone.set()
    assert (await asyncio.wait_for(task, 3)).result == "abandoned"
    assert [e.cause for e in rec.history if isinstance(e, ev.AgentDeclined)] == ["no_answer"]


async def test_callback_key_while_waiting(sb):
    await add_agent(sb, "alice", state="away")
    line, rec = ScriptedLine(), recorder("c1")
    line.on_text = [("tapez un", "1"), ("Pour être rappelé au zéro six", "1"), ("le matin", "2")]
    outcome = await asyncio.wait_for(Waiting(sb, line, rec, waiting_call("c1")).run(), 5)
    assert outcome.result == "callback", line.heard
    req = [e for e in rec.history if isinstance(e, ev.CallbackRequested)][0]
    assert (req.number, req.slot, req.reason) == ("0612345678", "apres_midi", "callback_key")
    assert "queue_left" in types(rec)
    [cb] = await sb.callbacks.list({"etat_civil"})
    assert cb.number == "0612345678" and cb.summary == "acte de naissance" and cb.call_id == "c1"
    assert "rappellera dans l'après-midi" in line.heard[-1]


async def test_max_wait_offers_a_callback_to_a_typed_number(sb):
    await add_agent(sb, "alice", state="away")
    sb.rules = QueueRules(announce_every_s=0.3, max_wait_s=0.5, ring_s=0.6)
    line, rec = ScriptedLine(), recorder("c1")
    line.on_text = [("Tapez votre numéro", "0240000099#"), ("J'ai noté le zéro deux", "1"), ("le matin", "1")]
    outcome = await asyncio.wait_for(Waiting(sb, line, rec, waiting_call("c1", caller="anonymous")).run(), 5)
    assert outcome.result == "callback", line.heard
    assert any("toujours occupés" in t for t in line.heard)
    req = [e for e in rec.history if isinstance(e, ev.CallbackRequested)][0]
    assert (req.number, req.slot, req.reason) == ("0240000099", "matin", "max_wait")


@pytest.mark.parametrize("now", [CLOSED, CHRISTMAS], ids=["evening", "christmas"])
async def test_out_of_hours_goes_straight_to_a_callback(sb, now):
    await add_agent(sb, "alice")
    sb.clock = lambda: now
    line, rec = ScriptedLine(), recorder("c1")
    line.on_text = [("fermé", "1"), ("le matin", "3")]
    outcome = await asyncio.wait_for(Waiting(sb, line, rec, waiting_call("c1")).run(), 5)
    assert outcome.result == "callback" and "queued" not in types(rec)
    assert line.heard[0].startswith("Le service est fermé")
    assert [e.reason for e in rec.history if isinstance(e, ev.CallbackRequested)] == ["closed"]


async def test_nobody_logged_in_offers_a_callback_and_a_silent_caller_gets_a_polite_end(sb):
    await add_agent(sb, "alice", state="offline")
    line, rec = ScriptedLine(), recorder("c1")
    waiting = Waiting(sb, line, rec, waiting_call("c1"))
    waiting.key_wait_s = 0.2  # the caller presses nothing
    outcome = await asyncio.wait_for(waiting.run(), 5)
    assert outcome.result == "ended"
    assert line.heard[0].startswith("Aucun conseiller n'est disponible")
    assert "Au revoir" in line.heard[-1]
    assert await sb.callbacks.list() == []


async def test_priority_caller_jumps_the_queue(sb):
    await add_agent(sb, "alice", state="away")
    low, high = waiting_call("low"), waiting_call("high")
    high.priority = 10
    t1 = asyncio.create_task(Waiting(sb, ScriptedLine(), recorder("low"), low).run())
    await asyncio.sleep(0.1)
    line = ScriptedLine()
    t2 = asyncio.create_task(Waiting(sb, line, recorder("high"), high).run())
    await asyncio.sleep(0.3)
    assert [c["call_id"] for c in await sb.queue.waiting()] == ["high", "low"]
    for t in (t1, t2):
        t.cancel()
    await asyncio.gather(t1, t2, return_exceptions=True)


def test_call_context_for_the_agent():
    from callbot.switchboard.handover import call_context
    from callbot.telephony.base import CallInfo

    history = [ev.BotSaid(text="Bonjour, que puis-je pour vous ?"),
               ev.Transcript(text="bonjour"), ev.Transcript(text="bonjour je voudrais un acte"),
               ev.IntentMatched(intent="acte_naissance", confidence=0.8, text="bonjour je voudrais un acte"),
               ev.SlotFilled(slot="nom_enfant", value="Durand"), ev.DigitsPressed(digits="3"),
               ev.IntentMatched(intent="parler_agent", confidence=0.9, text="un conseiller")]
    call = call_context(CallInfo("c1", "sip", caller="+33612345678"), history, "etat_civil", "l'état civil",
                        {"urgence": 10})
    assert call.intent == "acte_naissance" and call.priority == 0
    assert call.summary == "« bonjour je voudrais un acte » — nom enfant : Durand"
    assert [(t.who, t.text) for t in call.transcript] == [
        ("bot", "Bonjour, que puis-je pour vous ?"), ("caller", "bonjour je voudrais un acte"),
        ("caller", "[touches 3]")]
    urgent = call_context(CallInfo("c2", "sip"), [ev.Emergency(number="18", text="au feu")], "agent", "", {"urgence": 10})
    assert urgent.priority == 10 and urgent.summary.startswith("URGENCE")


def test_preferred_callback_time_in_the_callers_words():
    from callbot.call import _slot

    assert [_slot(t) for t in ("plutôt l'après-midi", "le matin", "avant midi", "peu importe", "le soir")] == \
        ["apres_midi", "matin", "matin", "indifferent", "apres_midi"]
