"""From the flow's ``transfer`` step to a person: the call outlives its flow.

``hand_over`` decides, for the service the flow named:
- ``mode: direct`` with a number: cold transfer; if it fails, the caller waits in the queue;
- agents take calls for the service: the queue (``waiting.Waiting``);
- nobody does but the service has a number: cold transfer (towns without agents on the console);
- neither: a callback request.
It returns the call's end reason for ``call_ended``. The caller is never hung up on
because a transfer failed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from callbot import events as ev
from callbot.flows.types import Turn
from callbot.recorder import CallRecorder
from callbot.switchboard.policy import priority_of
from callbot.switchboard.queue import Turn as Line
from callbot.switchboard.queue import WaitingCall
from callbot.switchboard.service import Switchboard
from callbot.switchboard.waiting import SAY, Outcome, Waiting
from callbot.telephony.base import CallControl, CallInfo

log = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"
TRANSCRIPT_TURNS = 40
HANDED_OFF = "handed off to the provider"  # its call_ended comes with the provider's dial result
END_REASONS = {"agent": "transferred", "handed_off": "transferred", "callback": "bot_hangup",
               "abandoned": "caller_hangup", "ended": "bot_hangup"}


def call_context(info: CallInfo, history: list[ev._Event], service: str, service_label: str,
                 priorities: dict[str, int]) -> WaitingCall:
    """What the agent sees: the caller, the theme, what was collected and said (from the call's events)."""
    intents = [e.intent for e in history if isinstance(e, ev.IntentMatched) and e.intent]
    themes = [i for i in intents if i not in ("parler_agent", "repeter", "menu_principal", "oui", "non")]
    slots: dict[str, Any] = {}
    for e in history:
        if isinstance(e, ev.SlotFilled):
            slots[e.slot] = e.value
    lines: list[Line] = []
    for e in history:
        if isinstance(e, ev.Transcript) and e.text:
            last = lines[-1] if lines else None
            if last is not None and last.who == "caller" and e.text.startswith(last.text):
                lines[-1] = Line(who="caller", text=e.text)  # the same sentence, heard further
            else:
                lines.append(Line(who="caller", text=e.text))
        elif isinstance(e, ev.DigitsPressed):
            lines.append(Line(who="caller", text=f"[touches {e.digits}]"))
        elif isinstance(e, ev.BotSaid):
            lines.append(Line(who="bot", text=e.text))
    theme = themes[-1] if themes else (intents[-1] if intents else "")
    said = [e.text for e in history if isinstance(e, ev.IntentMatched) and e.intent == theme and e.text] or \
        [ln.text for ln in lines if ln.who == "caller" and not ln.text.startswith("[")]
    parts = [f"« {said[-1]} »"] if said else ["demande non précisée"]
    parts += [f"{k.replace('_', ' ')} : {v}" for k, v in slots.items()]
    summary = " — ".join(parts)
    emergency = any(isinstance(e, ev.Emergency) for e in history)
    if emergency:
        summary = "URGENCE signalée — " + summary
    priority = priority_of(priorities, service, *intents, "urgence" if emergency else "")
    return WaitingCall(call_id=info.call_id, service=service, service_label=service_label, channel=info.channel,
                       caller=info.caller, intent=theme, summary=summary, slots=slots,
                       transcript=lines[-TRANSCRIPT_TURNS:], priority=priority, worker=WORKER)


async def hand_over(sb: Switchboard | None, control: CallControl, info: CallInfo, recorder: CallRecorder,
                    flow: Any, turn: Turn) -> tuple[str, str]:
    t = turn.transfer
    assert t is not None
    if t.mode == "direct" and t.number:
        if await _cold(control, recorder, turn):
            return "transferred", t.number
    if sb is None:  # no switchboard (tests of the bare pipeline): the old blind transfer
        if t.number and t.mode != "direct" and await _cold(control, recorder, turn):
            return "transferred", t.number
        recorder.emit(ev.TransferRequested(target=t.target, reason=t.reason, node=turn.node, outcome="announced"))
        await control.hangup("transfer_announced")
        return "bot_hangup", f"transfer to {t.target} announced (no switchboard)"
    svc = flow.spec.services.get(t.target)
    call = call_context(info, recorder.history, t.target, svc.label if svc else t.target, dict(sb.rules.priorities))
    waiting = Waiting(sb, control, recorder, call)
    if await sb.has_agents(t.target):
        outcome = await waiting.run()
    elif t.number and t.mode != "direct" and await _cold(control, recorder, turn):
        return "transferred", t.number
    else:
        outcome = await waiting.callback("no_agent")
    return await _finish(control, outcome)


async def resume(sb: Switchboard, control: CallControl, info: CallInfo, recorder: CallRecorder) -> tuple[str, str]:
    """A call the provider could not connect to the agent comes back: it keeps its place in the queue."""
    call = await sb.handoff(info.call_id)
    if call is None:
        log.warning("call %s came back but its context is gone: callback offer", info.call_id)
        call = WaitingCall(call_id=info.call_id, service="agent", caller=info.caller, channel=info.channel,
                           worker=WORKER)
    agent = call.agent
    if agent:
        recorder.emit(ev.AgentDeclined(agent=agent, cause=_dial_cause(info.extra.get("dial_status", ""))))
        await sb.presence.release(agent, call.call_id, "away")
    call.state, call.agent, call.worker = "waiting", "", WORKER
    waiting = Waiting(sb, control, recorder, call)
    await waiting.say(SAY["agent_unreachable"])
    return await _finish(control, await waiting.run(resumed=True))


async def provider_dial_result(store: Any, sb: Switchboard | None, call_id: str, status: str,
                               duration_s: float) -> None:
    """Twilio's ``<Dial>`` to the agent is over. Reached: the call's ``call_ended`` (its only one) and the
    agent's wrap-up. Not reached: nothing here — the caller is back on a stream (``resume``)."""
    if status not in ("completed", "answered"):
        return
    recorder = CallRecorder(store, call_id)
    call = await sb.handoff(call_id) if sb is not None else None
    if call is not None and call.agent and sb is not None:
        await sb.presence.release(call.agent, call_id, "wrap_up")
    if call is not None and call.agent and duration_s > 0:  # the talk time Twilio measured
        recorder.emit(ev.AgentConnected(agent=call.agent, service=call.service, talk_s=duration_s, mode="provider"))
    started = await store.redis.hget(f"callbot:call:{call_id}", "started")
    total = time.time() - float(started) if started else duration_s
    recorder.emit(ev.CallEnded(reason="transferred", detail=f"talked with {call.agent if call else 'an agent'} "
                               f"for {duration_s:.0f} s (provider)", duration_s=total))


def _dial_cause(status: str) -> str:
    return {"busy": "busy", "no-answer": "no_answer", "canceled": "no_answer"}.get(status, "failed")


async def _finish(control: CallControl, outcome: Outcome) -> tuple[str, str]:
    if outcome.result in ("callback", "ended"):
        await control.hangup(outcome.result)
    if outcome.result == "handed_off":
        return "transferred", HANDED_OFF
    return END_REASONS[outcome.result], outcome.detail


async def _cold(control: CallControl, recorder: CallRecorder, turn: Turn) -> bool:
    t = turn.transfer
    assert t is not None and t.number
    ok = await control.transfer(t.number)
    recorder.emit(ev.TransferRequested(target=t.target, reason=t.reason, node=turn.node,
                                       outcome="connected" if ok else "failed"))
    if not ok:
        log.warning("cold transfer to %s failed: the caller stays with the bot", t.number)
    return ok
