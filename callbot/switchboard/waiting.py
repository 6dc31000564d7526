"""One caller waiting for a person: the queue loop run on the worker that holds the line.

    decide (open? anyone logged in?) -> enter the queue -> hold music, position and wait
    every ``announce_every_s`` -> when an agent is free: offer on their console -> accept:
    "je vous passe un conseiller", ring their phone -> connected; decline / ring-out /
    phone not answering: next agent, the caller keeps their place -> key 1, maximum
    wait, nobody logged in or closed: callback request (keypad) -> polite end.

The caller is never hung up on by a failure here: a lost agent leg puts them back in
the queue; only the caller, a completed callback request or the end of the maximum
wait end the call. Every step is a call event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from callbot import events as ev
from callbot.flows.text import phone_words
from callbot.recorder import CallRecorder
from callbot.switchboard import policy
from callbot.switchboard.hold_music import slice_of
from callbot.switchboard.queue import WaitingCall
from callbot.switchboard.service import Switchboard
from callbot.telephony.base import CallControl

log = logging.getLogger(__name__)

Result = Literal["agent", "handed_off", "callback", "abandoned", "ended"]
SLOTS = {"1": ("matin", "dans la matinée"), "2": ("apres_midi", "dans l'après-midi"),
         "3": ("indifferent", "dès que possible")}
SAY = {  # fixed prompts: synthesised once at start-up (``STATIC_PROMPTS``)
    "connecting": "Je vous passe un conseiller.",
    "agent_unreachable": "Le conseiller n'a pas pu être joint. Vous gardez votre place, je cherche quelqu'un d'autre.",
    "type_number": "Tapez votre numéro de téléphone, puis la touche dièse.",
    "slot": "Pour un rappel le matin, tapez 1. L'après-midi, tapez 2. Peu importe, tapez 3.",
    "no_number": "Je n'ai pas pu noter de numéro. Vous pouvez rappeler la mairie aux heures d'ouverture. Au revoir.",
}
STATIC_PROMPTS = tuple(SAY.values())
MUSIC_SLICE_S = 2.0  # how often the loop looks for a free agent between music slices
OFFER_SLICE_S = 2.0  # music slices while an offer rings (an answer interrupts them)


@dataclass(frozen=True)
class Outcome:
    result: Result
    detail: str = ""


class Waiting:
    """The waiting of one call; ``run`` returns how it ended."""

    key_wait_s = 8.0  # for a key after a question (elderly callers: not less)

    def __init__(self, sb: Switchboard, line: CallControl, recorder: CallRecorder, call: WaitingCall) -> None:
        self.sb = sb
        self.line = line
        self.rec = recorder
        self.call = call
        self._music_at = 0
        self._last_announce = 0.0

    # ---- audio helpers
    async def say(self, text: str) -> bool:
        pcm = await asyncio.to_thread(self.sb.render, text)
        return await self.line.play(pcm, self.sb.rate)

    async def music(self, seconds: float) -> bool:
        pcm, self._music_at = slice_of(self.sb.music, self._music_at, seconds, self.sb.rate)
        return await self.line.play(pcm, self.sb.rate)

    def _drain_digits(self) -> str:
        q, out = self.line.digits(), ""
        while not q.empty():
            out += q.get_nowait()
        return out

    async def ask_digit(self, prompt: str) -> str | None:
        self._drain_digits()
        await self.say(prompt)
        deadline = time.monotonic() + self.key_wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                d = await asyncio.wait_for(self.line.digits().get(), left)
            except asyncio.TimeoutError:
                return None
            if d != "#":  # a '#' typed after a full number is not an answer
                return d
        return None

    async def ask_number(self) -> str:
        """Ten digits typed on the keypad, ``#`` to finish early; '' when nothing usable came."""
        self._drain_digits()
        await self.say(SAY["type_number"])
        digits = ""
        while len(digits) < 10 and not self.line.caller_gone.is_set():
            try:
                d = await asyncio.wait_for(self.line.digits().get(), self.key_wait_s * (1.25 if not digits else 0.75))
            except asyncio.TimeoutError:
                break
            if d == "#":
                break
            if d.isdigit():
                digits += d
        return digits if len(digits) >= 10 or (digits.startswith("1") and len(digits) == 4) else ""

    # ---- the queue
    async def run(self, *, resumed: bool = False) -> Outcome:
        call, sb = self.call, self.sb
        if not call.entered:
            call.entered = time.time()
        present = [p for p in await sb.presence.all(await sb.agent_names(call.service)) if p.state != "offline"]
        decision = policy.entry(sb.is_open(call.service), len(present))
        if decision != "queue":
            return await self.callback(decision)
        position = await sb.queue.enter(call)
        self.rec.emit(ev.Queued(service=call.service, position=position, priority=call.priority, resumed=resumed))
        try:
            return await self._wait()
        finally:
            await sb.queue.leave(call)

    def waited(self) -> float:
        return max(0.0, time.time() - self.call.entered)

    async def _wait(self) -> Outcome:
        call, sb, rules = self.call, self.sb, self.sb.rules
        while True:
            if self.line.caller_gone.is_set():
                return await self._abandoned()
            if self.waited() >= rules.max_wait_s:
                self.rec.emit(ev.QueueLeft(service=call.service, wait_s=self.waited(), cause="max_wait"))
                await sb.queue.leave(call)
                return await self.callback("max_wait")
            await sb.queue.touch(call)
            names = await sb.agent_names(call.service)
            states = await sb.presence.all(names)
            if not any(p.state != "offline" for p in states):
                self.rec.emit(ev.QueueLeft(service=call.service, wait_s=self.waited(), cause="no_agent"))
                await sb.queue.leave(call)
                return await self.callback("no_agent")
            position = await sb.queue.position(call)
            free = sum(p.state == "available" for p in states)
            if policy.may_offer(position, free):
                agent = await sb.presence.choose(names, call.call_id)
                if agent:
                    outcome = await self._offer(agent)
                    if outcome is not None:
                        return outcome
                    continue
            if time.monotonic() - self._last_announce >= rules.announce_every_s:
                self._last_announce = time.monotonic()
                serving = sum(p.state in ("available", "ringing", "on_call", "wrap_up") for p in states)
                await self.say(policy.announcement(position, policy.estimate_wait_s(position, serving),
                                                   rules.callback_key))
            else:
                await self.music(MUSIC_SLICE_S)
            if rules.callback_key and rules.callback_key in self._drain_digits():
                self.rec.emit(ev.QueueLeft(service=call.service, wait_s=self.waited(), cause="callback_key"))
                await sb.queue.leave(call)
                return await self.callback("callback_key")

    async def _abandoned(self) -> Outcome:
        position = await self.sb.queue.position(self.call)
        self.rec.emit(ev.Abandoned(service=self.call.service, wait_s=self.waited(), position=position))
        return Outcome("abandoned", f"hung up after {self.waited():.0f} s in the {self.call.service} queue")

    async def _offer(self, agent: str) -> Outcome | None:
        """Offer the call to ``agent``; None = keep waiting (declined, rang out, phone not reached)."""
        call, sb, rules = self.call, self.sb, self.sb.rules
        await sb.queue.offer(call, agent, rules.ring_s)
        self.rec.emit(ev.AgentOffered(agent=agent, service=call.service))
        t0 = time.monotonic()
        answer_task = asyncio.create_task(
            sb.queue.wait_answer(call.call_id, rules.ring_s, self.line.caller_gone))
        try:
            while not answer_task.done():  # music until the agent answers; their answer cuts it at once
                music = asyncio.create_task(self.music(OFFER_SLICE_S))
                await asyncio.wait({answer_task, music}, return_when=asyncio.FIRST_COMPLETED)
                if not music.done():
                    music.cancel()
                await asyncio.gather(music, return_exceptions=True)
            answer = answer_task.result()
        finally:
            answer_task.cancel()
        ring_s = time.monotonic() - t0
        await sb.queue.withdraw(call)
        if answer == "gone":
            await sb.presence.release(agent, call.call_id, "available")
            return await self._abandoned()
        if answer != "accept":
            self.rec.emit(ev.AgentDeclined(agent=agent, cause="declined" if answer == "decline" else "timeout",
                                           ring_s=ring_s))
            # an offer left ringing means nobody is at the desk: pause them (autopause)
            await sb.presence.release(agent, call.call_id, "available" if answer == "decline" else "away")
            await sb.queue.update(call)
            return None
        self.rec.emit(ev.AgentAnswered(agent=agent, service=call.service, wait_s=self.waited(), ring_s=ring_s))
        await sb.presence.set(agent, "on_call", call_id=call.call_id)
        call.state, call.agent = "connecting", agent
        await sb.queue.leave(call)  # no longer waiting: the others move up
        user = await sb.accounts.get(agent)
        await self.say(SAY["connecting"])
        leg = await self.line.connect_agent(user.phone if user else "", ring_timeout=rules.ring_s,
                                            call_id=call.call_id)
        if leg.outcome == "ended":
            self.rec.emit(ev.AgentConnected(agent=agent, service=call.service, talk_s=leg.talk_s, mode="bridge"))
            await sb.presence.release(agent, call.call_id, "wrap_up")
            return Outcome("agent", f"talked with {agent} for {leg.talk_s:.0f} s")
        if leg.outcome == "handed_off":
            await sb.remember_handoff(call)  # the provider's dial result records the talk time and the end
            return Outcome("handed_off", f"connected to {agent} by the provider")
        if leg.outcome == "caller_gone":
            await sb.presence.release(agent, call.call_id, "available")
            return await self._abandoned()
        cause = leg.outcome if leg.outcome in ("no_answer", "busy", "declined") else "failed"
        self.rec.emit(ev.AgentDeclined(agent=agent, cause=cause, ring_s=ring_s))
        log.warning("call %s: agent %s's phone %s not reached (%s %s): back in the queue", call.call_id, agent,
                    user.phone if user else "?", leg.outcome, leg.detail)
        await sb.presence.release(agent, call.call_id, "away")
        call.state, call.agent = "waiting", ""
        await sb.queue.enter(call)  # back at its place: its arrival time is kept
        await self.say(SAY["agent_unreachable"])
        return None

    # ---- callback request by keypad
    async def callback(self, reason: Literal["callback_key", "max_wait", "no_agent", "closed"]) -> Outcome:
        call, line = self.call, self.line
        intro = {"closed": "Le service est fermé en ce moment.",
                 "no_agent": "Aucun conseiller n'est disponible pour le moment.",
                 "max_wait": "Nos conseillers sont toujours occupés.",
                 "callback_key": ""}[reason]
        number: str | None = _callable(call.caller)
        if number:
            for _ in range(2):
                d = await self.ask_digit(f"{intro} Pour être rappelé au {phone_words(number)}, tapez 1. "
                                         "Pour donner un autre numéro, tapez 2.")
                if d == "1" or line.caller_gone.is_set():
                    break
                if d is not None:
                    number = ""  # another number
                    break
            else:
                number = None  # silent twice: nobody to call back
        elif intro:
            await self.say(intro)
        if number == "":
            for _ in range(2):
                if line.caller_gone.is_set():
                    break
                typed = await self.ask_number()
                if typed and await self.ask_digit(f"J'ai noté le {phone_words(typed)}. Si c'est juste, tapez 1.") == "1":
                    number = typed
                    break
        if line.caller_gone.is_set():
            return Outcome("abandoned", f"hung up while leaving a callback request ({reason})")
        if not number:
            await self.say(SAY["no_number"])
            return Outcome("ended", f"no callback number ({reason})")
        d = await self.ask_digit(SAY["slot"])
        slot, spoken = SLOTS.get(d or "3", SLOTS["3"])
        cb = await self.sb.callbacks.add(service=call.service, number=number, call_id=call.call_id, slot=slot,
                                         reason=reason, summary=call.summary)
        self.rec.emit(ev.CallbackRequested(callback_id=cb.id, service=call.service, number=number, slot=slot,
                                           reason=reason))
        await self.say(f"C'est noté. Un conseiller vous rappellera {spoken}. Merci de votre appel, au revoir.")
        return Outcome("callback", f"callback {cb.id} requested ({reason})")


def _callable(caller: str) -> str:
    """The caller's number when it is one we can call back (not a SIP user name, not hidden)."""
    digits = "".join(c for c in caller if c.isdigit())
    if caller.startswith("+33") and len(digits) == 11:
        return "0" + digits[2:]
    return digits if len(digits) == 10 and digits.startswith("0") else ""
