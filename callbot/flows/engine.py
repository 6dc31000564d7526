"""The pure flow engine: one ``Session`` per call walks an immutable ``Flow``.

Why pure and synchronous: the pipeline, the terminal chat and the YAML
conversation tests drive the very same object with ``start / hear / press /
silence`` and get back a ``Turn``; no audio, no I/O, no clock but the call's.
A reload builds a new ``Flow``; calls in progress keep the one they started with.

Failure policy (never loop, never hang up without a word): consecutive
no-input / no-match answers count up; 1st -> reprompt in other words, 2nd ->
the keypad main menu (or a second reprompt where a menu makes no sense),
``settings.max_failures`` -> the agent node (which itself says why and either
transfers or takes a callback when the town hall is closed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from callbot.errors import FlowError
from callbot.events import (Emergency, IntentMatched, NodeEntered, NoInput, SlotFilled, SurveyAnswered,
                            TicketCreated, TransferRequested)
from callbot.flows import slots as slot_parsers
from callbot.flows.checks import TEMPLATE, as_list
from callbot.flows.conditions import evaluate, speak_hours
from callbot.flows.intents import Match, tokens
from callbot.flows.schema import (AskNode, CollectNode, ConditionNode, FlowSpec, GotoNode, HangupNode,
                                  MenuNode, SayNode, SurveyNode, TicketNode, TransferNode)
from callbot.flows.text import fold, number_words, words_to_digits
from callbot.flows.types import CallContext, Hangup, Listen, Prompt, Transfer, Turn

MAX_HOPS = 40


class Flow:
    """A compiled, read-only flow version (safe to share between concurrent calls)."""

    def __init__(self, spec: FlowSpec, *, path: Path | None = None, version: str = "", lines=None) -> None:
        self.spec = spec
        self.name = spec.name
        self.version = version
        self.path = path
        self.settings = spec.settings
        self.town = MappingProxyType(dict(spec.town))
        self.nodes = MappingProxyType(dict(spec.nodes))
        self.intents = MappingProxyType(dict(spec.intents))
        self._lines = MappingProxyType(dict(lines or {}))
        static = {f"town.{k}": v for k, v in spec.town.items()}
        static.update({f"hours.{k}": speak_hours(v) for k, v in spec.hours.items()})
        self.static_values = MappingProxyType(static)
        self.opening = self._opening()
        self._recogniser = None
        self._emergency_detector = None
        self.goto_intents = frozenset(n for n, i in spec.intents.items() if i.goto)
        self.globals = MappingProxyType(dict(spec.globals))
        em = spec.emergency
        self.emergency_intent = em.intent if em else None
        self._emergency_default = em.default if em else "112"
        self._emergency_words = tuple(
            (num, svc.label, tuple(fold(w) for w in svc.words)) for num, svc in (em.services if em else {}).items()
        )

    @property
    def recogniser(self):
        """The intent recogniser, trained on first use (``warm`` does it ahead, in a thread)."""
        if self._recogniser is None:
            from callbot.understanding import build_recogniser

            self._recogniser = build_recogniser(self.spec, self.path)
        return self._recogniser

    @property
    def emergency(self):
        """The emergency detector: runs on every caller turn, apart from the intent recogniser."""
        if self._emergency_detector is None:
            from callbot.understanding import build_emergency_detector

            self._emergency_detector = build_emergency_detector(self.spec)
        return self._emergency_detector

    def warm(self) -> "Flow":
        """Train the recogniser and the emergency detector now (blocking: seconds the first time)."""
        self.recogniser.ensure_trained()
        self.emergency.ensure_trained()
        return self

    def _opening(self) -> tuple[str, ...]:
        """The AI disclosure and the recording notice, rendered once: every call says them first, from
        pre-rendered audio, so they may only use town and hours facts (nothing is known about the call yet)."""
        out = []
        for name in ("disclosure", "recording_notice"):
            prompt = self.render(getattr(self.settings, name) or "")
            if not prompt.static:
                line = self._lines.get(("settings", name), 1)
                raise FlowError(f"{self.path or 'flow'}:{line}: settings.{name} may only use {{town.*}} and "
                                "{hours.*} values (it is said before anything is known about the call); "
                                "fix or remove the other {...}")
            if prompt.text:
                out.append(prompt.text)
        return tuple(out)

    def line(self, node: str) -> int:
        return self._lines.get(("nodes", node), 0)

    def new_session(self, ctx: CallContext | None = None) -> "Session":
        return Session(self, ctx or CallContext())

    def render(self, text: str, values: dict | None = None) -> Prompt:
        """Fill ``{name}`` placeholders; a prompt is static when only town/hours facts were used."""
        static = True

        def sub(m: re.Match) -> str:
            nonlocal static
            key = m.group(1)
            if key in self.static_values:
                return self.static_values[key]
            static = False
            return str((values or {}).get(key, ""))

        return Prompt(TEMPLATE.sub(sub, text).strip(), static)

    def menu_prompt(self, node: MenuNode) -> list[str]:
        if as_list(node.say):
            return as_list(node.say)
        return [" ".join(f"Pour {o.label}, tapez {self._key_words(k)}." for k, o in node.options.items())]

    @staticmethod
    def _key_words(key: str) -> str:
        return " ".join("étoile" if c == "*" else number_words(int(c)) for c in key)

    def static_prompts(self) -> list[str]:
        texts: list[str] = [*self.opening, *self.spec.messages.model_dump().values()]
        for node in self.spec.nodes.values():
            if isinstance(node, (GotoNode, ConditionNode)):
                continue
            texts += as_list(node.say) + as_list(node.brief) + as_list(node.reprompt)
            if isinstance(node, MenuNode):
                texts += self.menu_prompt(node)
            if isinstance(node, CollectNode):
                texts += as_list(node.invalid) + as_list(node.confirm_say)
            if isinstance(node, SurveyNode):
                texts += as_list(node.thanks)
        out, seen = [], set()
        for t in texts:
            p = self.render(t)
            if p.static and p.text and p.text not in seen:
                seen.add(p.text)
                out.append(p.text)
        return out

    def emergency_number(self, text: str) -> tuple[str, str]:
        folded = " " + fold(text) + " "
        for num, label, words in self._emergency_words:
            if any(f" {w}" in folded for w in words):
                return num, label
        return self._emergency_default, "les secours"


@dataclass
class _State:
    node: str = ""
    failures: int = 0
    visits: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)  # slot -> stored value
    spoken: dict = field(default_factory=dict)  # slot -> read-back text
    pending: object = None  # parsed slot value awaiting oui/non
    clarify: tuple = ()  # intents offered in a clarifying question
    last_say: list = field(default_factory=list)
    history: list = field(default_factory=list)
    ended: bool = False


class Session:
    """One call's conversation over one flow version (implements ``types.FlowSession``)."""

    def __init__(self, flow: Flow, ctx: CallContext) -> None:
        self.flow = flow
        self.ctx = ctx
        self.now = ctx.now or datetime.now(ZoneInfo(flow.settings.timezone))
        self.s = _State()
        # an emergency prompt reached by any path never says an empty number
        self.s.spoken.update(urgence_numero="cent douze", urgence_service="le numéro d'urgence européen")
        self.last_match: Match | None = None
        # set by the call while the machine is saturated: nodes with a ``brief`` wording use it
        self.brief = False

    # --- protocol ------------------------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.s.node

    @property
    def slots(self) -> dict:
        return dict(self.s.values)

    @property
    def ended(self) -> bool:
        return self.s.ended

    def start(self) -> Turn:
        return self._goto(self.flow.settings.start, self.opening(), [])

    def opening(self) -> list[Prompt]:
        """What every call hears first (``settings.disclosure``, ``settings.recording_notice``), static prompts.

        Also for a call that starts on the keypad menu instead of ``start``: the caller must hear it too."""
        return [Prompt(text, True) for text in self.flow.opening]

    def hear(self, text: str, alternatives: Sequence[str] = ()) -> Turn:
        """The caller said ``text`` (Whisper's best hypothesis; ``alternatives``: the beam's others, best first)."""
        from callbot.flows.dialog import on_hear

        if self.s.ended:
            return Turn(node=self.s.node, listen=None)
        if not fold(text):
            return self.silence()
        return on_hear(self, text, tuple(a for a in alternatives if fold(a)))

    def press(self, digits: str) -> Turn:
        from callbot.flows.dialog import on_press

        if self.s.ended:
            return Turn(node=self.s.node, listen=None)
        digits = digits.strip().rstrip("#")
        if not digits:
            return self.silence()
        return on_press(self, digits)

    def silence(self) -> Turn:
        from callbot.flows.dialog import fail

        if self.s.ended:
            return Turn(node=self.s.node, listen=None)
        return fail(self, "no_input", [], [])

    def prepare(self, text: str, alternatives: Sequence[str] = ()) -> None:
        """Compute the sentence vectors ``hear`` will need (blocking: call it from a worker thread):
        Whisper's other hypotheses' too, when this node would look at them (its best is not understood),
        and each one's form with a neutral place name ("rue du Gaz"), which the emergency layer judges."""
        from callbot.flows.dialog import wants_alternatives
        from callbot.understanding.emergency import neutral_places

        said = [text]
        if alternatives and wants_alternatives(self, text):
            said += alternatives
        for sentence in said:
            for form in dict.fromkeys((sentence, neutral_places(sentence))):
                self.flow.recogniser.prepare(form)
                self.flow.emergency.prepare(form)

    def vocabulary(self) -> str:
        node = self.flow.nodes.get(self.s.node)
        words = [self.flow.town.get("name", ""), "mairie"]
        if isinstance(node, MenuNode):
            words += [o.label for o in node.options.values()]
        elif isinstance(node, CollectNode):
            words += {"phone": ["zéro six", "zéro un"], "address": ["rue", "avenue", "place", "chemin"],
                      "yes_no": ["oui", "non"], "date": ["lundi", "demain"], "time": ["heures"]}.get(
                node.slot_type, [])
            if node.slot_type == "address":
                words += [v for k, v in self.flow.town.items() if k.startswith("rue")]
        elif isinstance(node, AskNode):
            words += self.flow.spec.settings.asr_vocabulary or [
                "état civil", "carte d'identité", "passeport", "lampadaire", "encombrants", "CCAS"]
        return ", ".join(w for w in words if w)

    # --- helpers used by dialog.py ---------------------------------------------------------------

    def values(self, extra: dict | None = None) -> dict:
        v = {"caller": self.ctx.caller, **self.s.spoken}
        if extra:
            v.update(extra)
        return v

    def variant(self, prompts, index: int) -> str | None:
        items = as_list(prompts)
        return items[index % len(items)] if items else None

    def say(self, out: list[Prompt], text: str | None, extra: dict | None = None) -> None:
        if text:
            p = self.flow.render(text, self.values(extra))
            if p.text:
                out.append(p)

    def listen_for(self, node) -> Listen:
        st = self.flow.settings
        eot, no_input, digits = None, st.no_input_secs, 1
        expect, slot_type = "any", None
        if isinstance(node, CollectNode):
            eot, hint_ni, digits = slot_parsers.LISTEN_HINTS[node.slot_type]
            no_input = hint_ni or no_input
            slot_type = node.slot_type
        elif isinstance(node, MenuNode):
            digits = max(len(k) for k in node.options)
        if node.end_of_turn_secs is not None:
            eot = node.end_of_turn_secs
        if isinstance(node, CollectNode) and self.s.pending is not None:
            eot, digits, slot_type = None, 1, None  # the read-back's "oui"/"non", not the dictation's patience
        return Listen(
            barge_in=node.barge_in,
            end_of_turn_secs=eot,
            no_input_secs=node.no_input_secs or no_input,
            max_digits=digits,
            expect=expect,
            slot_type=slot_type,
        )

    def _goto(self, target: str, out: list[Prompt], events: list) -> Turn:
        """Enter ``target`` and run non-listening nodes until one listens or the call ends."""
        flow = self.flow
        for _ in range(MAX_HOPS):
            node = flow.nodes[target]
            st = self.s
            st.node = target
            st.pending = None
            st.clarify = ()
            visit = st.visits.get(target, 0)
            st.visits[target] = visit + 1
            events.append(NodeEntered(node=target, kind=node.type))
            if isinstance(node, GotoNode):
                target = node.goto
                continue
            if isinstance(node, ConditionNode):
                target = node.else_
                for branch in node.branches:
                    if evaluate(branch.if_, now=self.now, hours=flow.spec.hours,
                                closed_dates=tuple(flow.spec.closed_dates),
                                subdiv=flow.settings.holidays_subdiv, slots=st.values, caller=self.ctx.caller,
                                services=flow.spec.services):
                        target = branch.goto
                        break
                continue
            say = flow.menu_prompt(node) if isinstance(node, MenuNode) else node.say
            if self.brief and as_list(node.brief):
                say = node.brief
            self.say(out, self.variant(say, visit))
            if isinstance(node, SayNode):
                for k, v in node.set.items():
                    st.values[k] = st.spoken[k] = v
                target = node.next
                continue
            if isinstance(node, TicketNode):
                fields = {k: self._raw(v) for k, v in node.fields.items()}
                if self.ctx.caller:
                    fields.setdefault("caller", self.ctx.caller)
                events.append(TicketCreated(kind=self._raw(node.kind), fields=fields, node=target))
                target = node.next
                continue
            if isinstance(node, TransferNode):
                svc = flow.spec.services.get(node.target)
                reason = node.reason or target
                events.append(TransferRequested(target=node.target, reason=reason, node=target))
                return self._end(Turn(node=target, say=out, listen=None, events=events,
                                      transfer=Transfer(node.target, reason, svc.number if svc else None,
                                                        node.mode)))
            if isinstance(node, HangupNode):
                return self._end(Turn(node=target, say=out, listen=None, events=events,
                                      hangup=Hangup(node.reason)))
            # a listening node: ask, menu, collect, survey
            st.last_say = list(out)
            if not st.history or st.history[-1] != target:
                st.history.append(target)
            return Turn(node=target, say=out, listen=self.listen_for(node), events=events)
        raise FlowError(f"{flow.path}:{flow.line(target)}: node '{target}' loops without listening; "
                        "add an ask/menu/collect node in the cycle")

    def _raw(self, template: str) -> str:
        values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.s.values.items()}
        values["caller"] = self.ctx.caller
        return self.flow.render(template, values).text

    def _end(self, turn: Turn) -> Turn:
        self.s.ended = True
        return turn

    def stay(self, out: list[Prompt], events: list) -> Turn:
        node = self.flow.nodes[self.s.node]
        return Turn(node=self.s.node, say=out, listen=self.listen_for(node), events=events)


def intent_words(text: str) -> str:
    """Folded content words, for menus matching option labels."""
    return " ".join(tokens(words_to_digits(fold(text))))
