"""The call-event vocabulary: one typed stream per call.

Every stage emits these (telephony, ASR, flow engine, TTS, transfer); the store
persists them, and stats, the dashboard, logs and tests all read the same
records. Keep the set small: add a field before adding a type.

The flow engine is pure: it returns events without ``call_id``/``ts``; the
call's recorder stamps them (``stamp``) before they reach the store.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    call_id: str = ""
    ts: float = 0.0  # wall clock, epoch seconds


class CallStarted(_Event):
    type: Literal["call_started"] = "call_started"
    channel: Literal["twilio", "sip", "test"]
    caller: str = ""
    called: str = ""
    provider_call_id: str = ""
    flow: str = ""
    flow_version: str = ""
    worker: str | None = None  # the worker that took the call (callbot/workers.py); None in events stored before


class CallAnswered(_Event):
    """The bot's first audio went out (answer -> greeting latency lives here)."""

    type: Literal["call_answered"] = "call_answered"
    greeting_latency_ms: float | None = None


class CallEnded(_Event):
    type: Literal["call_ended"] = "call_ended"
    # watchdog: the runtime ended a call that ran past max_call_secs or in which nothing happened (watchdog.py)
    reason: Literal["bot_hangup", "caller_hangup", "transferred", "error", "timeout", "rejected", "watchdog"]
    detail: str = ""
    duration_s: float = 0.0


class Transcript(_Event):
    """One caller turn as recognised by the ASR."""

    type: Literal["transcript"] = "transcript"
    text: str
    audio_s: float | None = None
    asr_ms: float | None = None
    node: str = ""


class DigitsPressed(_Event):
    type: Literal["digits"] = "digits"
    digits: str
    node: str = ""


class NodeEntered(_Event):
    type: Literal["node"] = "node"
    node: str
    kind: str = ""


class IntentMatched(_Event):
    type: Literal["intent"] = "intent"
    intent: str | None  # None = no match
    confidence: float = 0.0
    text: str = ""
    node: str = ""


class NoInput(_Event):
    """The caller said nothing (``kind=no_input``) or nothing we understood (``no_match``)."""

    type: Literal["no_input"] = "no_input"
    kind: Literal["no_input", "no_match"] = "no_input"
    node: str = ""
    count: int = 1


class SlotFilled(_Event):
    type: Literal["slot"] = "slot"
    slot: str
    value: Any
    confirmed: bool = False
    node: str = ""


class BotSaid(_Event):
    type: Literal["bot_said"] = "bot_said"
    text: str
    node: str = ""
    cached: bool = False


class TurnLatency(_Event):
    """Server-side view of one caller turn: end of speech -> first bot audio out."""

    type: Literal["latency"] = "latency"
    voice_to_voice_ms: float | None = None
    asr_ms: float | None = None
    flow_ms: float | None = None
    tts_ms: float | None = None
    trigger: Literal["speech", "digits"] = "speech"


class TicketCreated(_Event):
    type: Literal["ticket"] = "ticket"
    ticket_id: str = ""
    kind: str
    fields: dict[str, Any] = Field(default_factory=dict)
    node: str = ""


class TransferRequested(_Event):
    type: Literal["transfer"] = "transfer"
    target: str  # a service name, or "agent"
    reason: str = ""
    node: str = ""
    outcome: Literal["requested", "announced", "connected", "failed"] = "requested"


class Emergency(_Event):
    type: Literal["emergency"] = "emergency"
    number: str  # 112, 15, 17, 18
    text: str = ""
    node: str = ""
    reason: str = ""  # what caught it: words, classifier, words+classifier, keypad


class SurveyAnswered(_Event):
    type: Literal["survey"] = "survey"
    score: int
    node: str = ""


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    stage: str = ""


# ---- the switchboard: the call waits for a person (callbot/switchboard)
class Queued(_Event):
    """The call entered a service's queue (or re-entered it at the head: ``resumed``)."""

    type: Literal["queued"] = "queued"
    service: str
    position: int
    priority: int = 0
    resumed: bool = False


class AgentOffered(_Event):
    """An agent's console shows the call (warm transfer: before anyone is connected)."""

    type: Literal["agent_offered"] = "agent_offered"
    agent: str
    service: str = ""


class AgentAnswered(_Event):
    """The agent accepted; the caller is being connected to the agent's phone."""

    type: Literal["agent_answered"] = "agent_answered"
    agent: str
    service: str = ""
    wait_s: float = 0.0  # queue entry -> accepted (speed of answer)
    ring_s: float = 0.0  # offered -> accepted


class AgentDeclined(_Event):
    """The offer or the agent's phone did not turn into a conversation; the caller keeps waiting."""

    type: Literal["agent_declined"] = "agent_declined"
    agent: str
    cause: Literal["declined", "timeout", "no_answer", "busy", "failed"] = "declined"
    ring_s: float = 0.0


class AgentConnected(_Event):
    """The caller and the agent talked; ``talk_s`` is known once the bridge ends (SIP)."""

    type: Literal["agent_connected"] = "agent_connected"
    agent: str
    service: str = ""
    talk_s: float | None = None
    mode: Literal["bridge", "provider"] = "bridge"


class QueueLeft(_Event):
    """The call left the queue without reaching a person (the caller is still on the line)."""

    type: Literal["queue_left"] = "queue_left"
    service: str
    wait_s: float
    cause: Literal["callback_key", "max_wait", "no_agent", "closed"]


class Abandoned(_Event):
    """The caller hung up while waiting for a person."""

    type: Literal["abandoned"] = "abandoned"
    service: str
    wait_s: float
    position: int = 0


class CallbackRequested(_Event):
    type: Literal["callback_requested"] = "callback_requested"
    callback_id: str
    service: str
    number: str
    slot: str = ""  # matin, apres_midi, indifferent
    reason: Literal["callback_key", "max_wait", "no_agent", "closed", "flow"] = "callback_key"


class CallbackDone(_Event):
    """An agent closed a callback request from the console (stored under the original call)."""

    type: Literal["callback_done"] = "callback_done"
    callback_id: str
    outcome: Literal["done", "no_answer"]
    agent: str = ""
    note: str = ""


class KeypadFallback(_Event):
    """The call goes on with the keypad menu instead of speech (recogniser over capacity, recogniser or
    synthesis failing: ``*_fault``, see ``Fault``)."""

    type: Literal["keypad_fallback"] = "keypad_fallback"
    reason: Literal["asr_capacity", "asr_busy", "asr_fault", "tts_fault"] = "asr_capacity"
    detail: str = ""


class Fault(_Event):
    """A speech stage raised or missed its deadline during the call; the call went on without it.

    ``action``: where the call went — the keypad menu, a person (the flow has no keypad menu),
    or nowhere new (``none``: the call was already ending, or already on that fallback).
    ``detail`` never holds what the caller said or the prompt's text (personal data).
    """

    type: Literal["fault"] = "fault"
    stage: Literal["asr", "tts"]
    kind: Literal["error", "timeout"]
    detail: str = ""
    action: Literal["keypad", "agent", "none"] = "keypad"


class Degraded(_Event):
    """The machine was saturated and this call was served one step down the ladder (``admission.py``):
    ``brief`` (the flow's shorter prompts), then ``greedy`` (cheaper, less precise recognition). The
    last step, the keypad menu, is ``KeypadFallback``. Once per call and step."""

    type: Literal["degraded"] = "degraded"
    step: Literal["brief", "greedy"]
    detail: str = ""


class Overload(_Event):
    """A capacity limit was hit: the call was refused (``sip_busy``) or degraded (``asr_*``)."""

    type: Literal["overload"] = "overload"
    what: Literal["sip_busy", "asr_capacity", "asr_busy"]
    detail: str = ""


CallEvent = Annotated[
    Union[
        CallStarted,
        CallAnswered,
        CallEnded,
        Transcript,
        DigitsPressed,
        NodeEntered,
        IntentMatched,
        NoInput,
        SlotFilled,
        BotSaid,
        TurnLatency,
        TicketCreated,
        TransferRequested,
        Emergency,
        SurveyAnswered,
        ErrorEvent,
        Queued,
        AgentOffered,
        AgentAnswered,
        AgentDeclined,
        AgentConnected,
        QueueLeft,
        Abandoned,
        CallbackRequested,
        CallbackDone,
        KeypadFallback,
        Overload,
        Degraded,
        Fault,
    ],
    Field(discriminator="type"),
]

_adapter: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)


def stamp(event: _Event, call_id: str, ts: float | None = None) -> _Event:
    """Return ``event`` with its call id and wall-clock time set."""
    return event.model_copy(update={"call_id": call_id, "ts": ts if ts is not None else time.time()})


def to_json(event: _Event) -> str:
    return event.model_dump_json()


def from_json(data: str | bytes | dict) -> _Event:
    if isinstance(data, dict):
        return _adapter.validate_python(data)
    return _adapter.validate_json(data)
