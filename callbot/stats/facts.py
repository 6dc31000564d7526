"""One row per call: what the KPIs need, read from the call's events (pure: no I/O, no clock).

``call_facts(events)`` turns the typed events of ONE call (``callbot/events.py``, in the order they
were stored) into a ``CallFacts``: who called (hashed), when, what was asked, whether a person was
reached, and the call's single **outcome**. ``counters.py`` turns one ``CallFacts`` into summable
counters; ``kpis.py`` turns summed counters into the dashboard's figures. See ``docs/stats.md``.

Outcomes, by precedence (the first that applies wins; each call has exactly one):

1. ``in_progress``     no ``call_ended`` yet (never reaches the buckets: the rollup waits for the end)
2. ``rejected``        refused before the bot answered (``call_ended`` reason ``rejected``, or a
                       ``sip_busy`` overload with no answer)
3. ``emergency``       an emergency was detected (message given, maybe transferred)
4. ``short_abandon``   the caller hung up less than ``short_abandon_s`` after the start
5. ``agent``           the caller talked to a person (queue -> agent, or a cold transfer connected)
6. ``callback``        a callback was requested (in the queue, or by the flow's out-of-hours path)
7. ``queue_abandoned`` the caller hung up while waiting for a person
8. ``error``           the call ended on a technical error
9. ``agent_unreached`` the caller asked for / was sent to a person and got neither a person, a
                       callback nor a queue (closed and callback declined, no number, ...)
10. ``resolved_by_bot`` the bot served a request (recognised intent or ticket) and the call ended
                       without any of the above (whoever hung up)
11. ``bot_abandoned``  answered, not a short abandon, ended before any request was served
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, Field

from callbot import events as ev

Outcome = Literal[
    "in_progress", "rejected", "emergency", "short_abandon", "agent", "callback", "queue_abandoned",
    "error", "agent_unreached", "resolved_by_bot", "bot_abandoned",
]
OUTCOMES: tuple[str, ...] = (
    "rejected", "emergency", "short_abandon", "agent", "callback", "queue_abandoned", "error",
    "agent_unreached", "resolved_by_bot", "bot_abandoned", "in_progress",
)

# Conversation helpers: recognised, but not a request ("oui"/"non" come from yes/no questions).
HELPER_INTENTS = frozenset({"oui", "non", "repeter", "menu_principal", "au_revoir"})
AGENT_INTENTS = frozenset({"parler_agent"})  # asking for a person is not a request the bot serves
EMERGENCY_INTENTS = frozenset({"urgence"})
CALLBACK_TICKET_KINDS = frozenset({"rappel"})  # the flow's "an agent will call you back" ticket

SHORT_ABANDON_S = 5.0
_HIDDEN = frozenset({"", "anonymous", "anonyme", "unknown", "restricted", "private", "unavailable"})


class CallFacts(BaseModel):
    """Everything the KPIs need about one call; JSON-serialisable (``model_dump_json``)."""

    call_id: str
    started: float  # epoch seconds (the call's bucket is its START hour)
    ended: float | None = None
    channel: str = ""
    caller_hash: str = ""  # sha256(salt + normalised number); "" when hidden or unknown
    service: str = ""  # the queue it entered, else the transfer target, else the callback's service
    first_intent: str = ""  # first recognised intent that is not a conversation helper
    intents: list[str] = Field(default_factory=list)  # distinct recognised non-helper intents, in order
    outcome: Outcome = "in_progress"
    end_reason: str = ""  # CallEnded.reason, "" while in progress
    duration_s: float = 0.0
    answered: bool = False  # the bot picked up (its first audio went out)
    greeting_latency_ms: float | None = None
    short_abandon: bool = False  # caller hung up less than short_abandon_s after the start
    handoff: bool = False  # asked for / sent to a person: transfer step, queue or "parler_agent"
    queued: bool = False
    queue_wait_s: float | None = None  # time in the queue, however it ended
    queue_left_cause: str = ""  # QueueLeft.cause: callback_key, max_wait, no_agent, closed
    agent_answered: bool = False  # an agent accepted the queued call and the caller reached them
    answer_wait_s: float | None = None  # AgentAnswered.wait_s (queue entry -> accepted)
    queue_abandoned: bool = False  # hung up while waiting for a person (any wait)
    queue_short_abandon: bool = False  # ... after less than short_abandon_s in the queue
    talk_s: float | None = None  # agent conversation, when measured (SIP bridge; None on Twilio)
    transferred: bool = False  # reached a person: queue -> agent, or a cold transfer connected
    callback_requested: bool = False
    callback_requests: int = 0  # distinct callback ids (CallbackRequested)
    callbacks_done: int = 0  # distinct callback ids closed "done" among the events given
    emergency: bool = False
    tickets: int = 0
    survey_score: int | None = None
    v2v_ms: list[float] = Field(default_factory=list)  # voice-to-voice of speech turns
    no_match_texts: list[str] = Field(default_factory=list)
    keypad_fallback: bool = False
    degraded: list[str] = Field(default_factory=list)  # degrading-ladder steps the call was served at
    rejected: bool = False


def caller_key(number: str, salt: str = "") -> str:
    """The caller's pseudonymous key: sha256 of ``salt`` + the number in E.164 (French numbers
    normalised: ``06 12 34 56 78`` = ``+33612345678``); "" for a hidden or missing number."""
    raw = (number or "").strip()
    if raw.lower() in _HIDDEN:
        return ""
    n = re.sub(r"[\s.\-()/]", "", raw)
    if n.startswith("sip:"):
        n = n[4:].split("@", 1)[0]
    if n.startswith("00"):
        n = "+" + n[2:]
    if re.fullmatch(r"0[1-9]\d{8}", n):
        n = "+33" + n[1:]
    elif re.fullmatch(r"33[1-9]\d{8}", n):
        n = "+" + n
    if n.lower() in _HIDDEN:
        return ""
    return hashlib.sha256((salt + n).encode()).hexdigest()


def call_facts(events: list[ev._Event], *, short_abandon_s: float = SHORT_ABANDON_S,
               caller_salt: str = "") -> CallFacts:
    """Read one call's events (store order) into its facts. Pure: the same events give the same facts."""
    if not events:
        raise ValueError("call_facts needs at least one event")
    start = next((e for e in events if isinstance(e, ev.CallStarted)), None)
    end = next((e for e in reversed(events) if isinstance(e, ev.CallEnded)), None)
    call_id = start.call_id if start is not None else events[0].call_id
    started = start.ts if start is not None else min(e.ts for e in events)
    end_reason = end.reason if end is not None else ""
    if end is None:
        duration = 0.0
    elif started > 0 and end.ts > 0:
        duration = max(0.0, end.ts - started)  # wall clock: right for calls resumed after a provider hand-off
    else:
        duration = end.duration_s

    answered_ev = next((e for e in events if isinstance(e, ev.CallAnswered)), None)
    rejected = end_reason == "rejected"
    answered = not rejected and (answered_ev is not None or any(
        isinstance(e, (ev.BotSaid, ev.Transcript, ev.IntentMatched, ev.NoInput)) for e in events))
    if not answered and any(isinstance(e, ev.Overload) and e.what == "sip_busy" for e in events):
        rejected = True

    recognised = [e.intent for e in events if isinstance(e, ev.IntentMatched) and e.intent]
    intents: list[str] = []
    for i in recognised:
        if i not in HELPER_INTENTS and i not in intents:
            intents.append(i)
    first_intent = intents[0] if intents else ""
    no_match_texts = [e.text for e in events if isinstance(e, ev.IntentMatched) and e.intent is None
                      and e.text and not e.text.startswith("#")]

    tickets = [e for e in events if isinstance(e, ev.TicketCreated)]
    transfers = [e for e in events if isinstance(e, ev.TransferRequested)]
    queued_evs = [e for e in events if isinstance(e, ev.Queued)]
    cb_ids = {e.callback_id for e in events if isinstance(e, ev.CallbackRequested)}
    done: dict[str, str] = {}
    for e in events:
        if isinstance(e, ev.CallbackDone):
            if done.get(e.callback_id) != "done":
                done[e.callback_id] = e.outcome

    # the queue: how the wait ended (the last of answered / abandoned / left)
    queue_wait = None
    left_cause = ""
    last_answer: ev.AgentAnswered | None = None
    abandoned: ev.Abandoned | None = None
    for e in events:
        if isinstance(e, ev.AgentAnswered):
            queue_wait, last_answer = e.wait_s, e
        elif isinstance(e, ev.Abandoned):
            queue_wait, abandoned = e.wait_s, e
        elif isinstance(e, ev.QueueLeft):
            queue_wait, left_cause = e.wait_s, e.cause
    transferred = (end_reason == "transferred"
                   or any(isinstance(e, ev.AgentConnected) and e.mode == "bridge" for e in events)
                   or any(t.outcome == "connected" for t in transfers))
    agent_answered = last_answer is not None and transferred
    talks = [e.talk_s for e in events if isinstance(e, ev.AgentConnected) and e.talk_s is not None]

    service = (queued_evs[0].service if queued_evs else transfers[-1].target if transfers
               else next((e.service for e in events if isinstance(e, ev.CallbackRequested)), ""))
    surveys = [e.score for e in events if isinstance(e, ev.SurveyAnswered)]

    f = CallFacts(
        call_id=call_id,
        started=started,
        ended=end.ts if end is not None else None,
        channel=start.channel if start is not None else "",
        caller_hash=caller_key(start.caller, caller_salt) if start is not None else "",
        service=service,
        first_intent=first_intent,
        intents=intents,
        end_reason=end_reason,
        duration_s=duration,
        answered=answered,
        greeting_latency_ms=answered_ev.greeting_latency_ms if answered_ev is not None else None,
        short_abandon=not rejected and end_reason == "caller_hangup" and duration < short_abandon_s,
        handoff=bool(transfers or queued_evs or any(i in AGENT_INTENTS for i in recognised)),
        queued=bool(queued_evs),
        queue_wait_s=queue_wait if queued_evs else None,
        queue_left_cause=left_cause,
        agent_answered=agent_answered,
        answer_wait_s=last_answer.wait_s if agent_answered and last_answer is not None else None,
        queue_abandoned=abandoned is not None and not transferred,
        queue_short_abandon=abandoned is not None and not transferred and abandoned.wait_s < short_abandon_s,
        talk_s=sum(talks) if talks else None,
        transferred=transferred,
        callback_requested=bool(cb_ids) or any(t.kind in CALLBACK_TICKET_KINDS for t in tickets),
        callback_requests=len(cb_ids),
        callbacks_done=sum(1 for o in done.values() if o == "done"),
        emergency=any(isinstance(e, ev.Emergency) for e in events)
        or any(i in EMERGENCY_INTENTS for i in recognised),
        tickets=len(tickets),
        survey_score=surveys[-1] if surveys else None,
        v2v_ms=[e.voice_to_voice_ms for e in events if isinstance(e, ev.TurnLatency)
                and e.voice_to_voice_ms is not None and e.trigger == "speech"],
        no_match_texts=no_match_texts,
        keypad_fallback=any(isinstance(e, ev.KeypadFallback) for e in events),
        degraded=sorted({e.step for e in events if isinstance(e, ev.Degraded)}),
        rejected=rejected,
    )
    return f.model_copy(update={"outcome": outcome_of(f)})


def outcome_of(f: CallFacts) -> Outcome:
    """The call's single outcome (precedence in the module docstring and docs/stats.md)."""
    if f.ended is None and not f.end_reason:
        return "in_progress"
    if f.rejected:
        return "rejected"
    if f.emergency:
        return "emergency"
    if f.short_abandon:
        return "short_abandon"
    if f.transferred:
        return "agent"
    if f.callback_requested:
        return "callback"
    if f.queue_abandoned:
        return "queue_abandoned"
    if f.end_reason in ("error", "watchdog"):  # watchdog: a call gone wrong, ended by the runtime
        return "error"
    if f.handoff:
        return "agent_unreached"
    served = any(i not in AGENT_INTENTS and i not in EMERGENCY_INTENTS for i in f.intents) or f.tickets > 0
    return "resolved_by_bot" if served else "bot_abandoned"
