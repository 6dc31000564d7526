"""Judging understanding the way a caller meets it: the opening sentence through the real engine.

``first_turn`` starts a call on the flow, says the sentence and reads what the
engine did from its events: an emergency, an intent routed, a clarifying
question ("X, or Y?") or a no-match (it asks again). ``Report`` turns the
outcomes of labelled rows into the figures ``callbot eval-intents`` and the
spoken bench print. A no-match counts as ``hors_sujet`` (the intent list
defines it as what the town hall does not handle *or cannot be understood*); a
clarifying question counts as a miss in ``accuracy`` and is reported apart
(with how often the right intent was among the two offered).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callbot.events import Emergency, IntentMatched, NoInput

NO_MATCH = "(no match)"
EMERGENCY = "urgence"
OFF_TOPIC = "hors_sujet"
# a weekday morning: routing does not depend on the hour, but the nodes it leads to may
EVAL_NOW = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


@dataclass(frozen=True)
class Outcome:
    kind: str  # emergency | route | clarify | no_match
    intent: str | None = None
    confidence: float = 0.0
    offered: tuple[str, ...] = ()  # the two intents of a clarifying question
    ms: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "emergency":
            return EMERGENCY
        if self.kind == "route":
            return self.intent or NO_MATCH
        if self.kind == "clarify":
            return "(clarify " + " | ".join(self.offered) + ")"
        return NO_MATCH

    def judged(self) -> str:
        """The intent this outcome counts as for accuracy."""
        if self.kind in ("emergency", "route"):
            return self.label
        return OFF_TOPIC if self.kind == "no_match" else self.label


def first_turn(flow, text: str, alternatives: tuple[str, ...] = ()) -> Outcome:
    from callbot.flows.types import CallContext

    session = flow.new_session(CallContext(channel="eval", caller="+33600000000", now=EVAL_NOW))
    session.start()
    t0 = time.perf_counter()
    turn = session.hear(text, alternatives)
    ms = (time.perf_counter() - t0) * 1000
    if any(isinstance(e, Emergency) for e in turn.events):
        em = next(e for e in turn.events if isinstance(e, IntentMatched))
        return Outcome("emergency", EMERGENCY, em.confidence, ms=ms)
    matched = [e for e in turn.events if isinstance(e, IntentMatched)]
    if matched and matched[-1].intent:
        return Outcome("route", matched[-1].intent, matched[-1].confidence, ms=ms)
    if session.s.clarify:
        return Outcome("clarify", None, matched[-1].confidence if matched else 0.0, tuple(session.s.clarify), ms)
    if any(isinstance(e, NoInput) for e in turn.events):
        return Outcome("no_match", None, matched[-1].confidence if matched else 0.0, ms=ms)
    return Outcome("no_match", None, 0.0, ms=ms)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else 0.0


@dataclass
class Report:
    rows: list[tuple[str, str, Outcome]] = field(default_factory=list)  # (text, gold, outcome)

    def add(self, text: str, gold: str, outcome: Outcome) -> None:
        self.rows.append((text, gold, outcome))

    @property
    def n(self) -> int:
        return len(self.rows)

    def correct(self) -> int:
        return sum(1 for _, gold, o in self.rows if o.judged() == gold)

    def accuracy(self) -> float:
        return self.correct() / self.n if self.n else 0.0

    def misses(self) -> list[tuple[str, str, Outcome]]:
        return [(t, g, o) for t, g, o in self.rows if o.judged() != g]

    def emergency_counts(self) -> tuple[int, int, int, int]:
        """(emergencies caught, emergencies, false alarms, ordinary rows)."""
        pos = [o for _, g, o in self.rows if g == EMERGENCY]
        neg = [o for _, g, o in self.rows if g != EMERGENCY]
        return (sum(o.kind == "emergency" for o in pos), len(pos), sum(o.kind == "emergency" for o in neg), len(neg))

    def lines(self, show: int = 40) -> list[str]:
        out = []
        for text, gold, o in self.misses()[:show]:
            out.append(f"miss  {gold:22} -> {o.label:30} {o.confidence:.2f}  {text}")
        pairs = Counter((g, o.label) for _, g, o in self.misses())
        if pairs:
            out.append("confusions (expected -> recognised: count):")
            out += [f"  {g} -> {p}: {c}" for (g, p), c in pairs.most_common()]
        per, ok = Counter(), Counter()
        for _, g, o in self.rows:
            per[g] += 1
            ok[g] += o.judged() == g
        out.append("per-intent recall: " + ", ".join(f"{g} {ok[g]}/{per[g]}" for g in sorted(per)))
        kinds = Counter(o.kind for _, _, o in self.rows)
        wrong = sum(1 for _, g, o in self.rows if o.kind in ("route", "emergency") and o.judged() != g)
        clar = [(g, o) for _, g, o in self.rows if o.kind == "clarify"]
        out.append(f"outcomes: routed {kinds['route']}, emergency {kinds['emergency']}, clarifying question "
                   f"{len(clar)} (right intent offered {sum(g in o.offered for g, o in clar)}), "
                   f"no match {kinds['no_match']}; routed to a wrong intent {wrong} ({wrong / max(self.n, 1):.1%})")
        caught, pos, fa, neg = self.emergency_counts()
        out.append(f"emergency recall: {caught}/{pos} ({caught / max(pos, 1):.3f}); false alarms: {fa}/{neg} "
                   f"({fa / max(neg, 1):.1%})")
        ms = [o.ms for _, _, o in self.rows]
        if ms:
            out.append(f"latency ms per sentence (engine, embeddings included): p50 {pct(ms, .5):.1f}, "
                       f"p95 {pct(ms, .95):.1f}, max {max(ms):.1f}")
        out.append(f"accuracy: {self.accuracy():.3f} ({self.correct()}/{self.n})")
        return out


def read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 2 or not row[0].strip() or row[0].startswith("#"):
                continue
            if (row[0].strip(), row[1].strip()) == ("utterance", "intent"):
                continue
            rows.append((row[0].strip(), row[1].strip()))
    return rows
