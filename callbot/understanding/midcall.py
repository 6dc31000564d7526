"""Judging the emergency layer in the middle of a call, where most of a caller's words are answers.

The opening sentence is not the only turn that can raise the alarm: a caller giving an address, a
phone number or the description of a problem may say that their neighbour has just collapsed, or
may live "rue du Gaz". ``callbot eval-intents`` reads files whose header is
``context<TAB>utterance<TAB>label`` (label ``urgence`` or anything else) with this module: each row
walks a call to the question its context names (``CONTEXTS``: the sentences that reach it on the
``mairie`` flow), says the answer, and records whether the turn gave the emergency message.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from callbot.events import Emergency
from callbot.understanding.evaluate import EMERGENCY, EVAL_NOW, pct

# a Sunday: the agents are away, so asking for one leads to the callback questions
SUNDAY = datetime(2026, 3, 15, 11, 0, tzinfo=ZoneInfo("Europe/Paris"))

# context -> (the question's node, what the caller says to get there, when)
CONTEXTS: dict[str, tuple[str, tuple[str, ...], datetime]] = {
    "adresse": ("signal_lieu", ("je voudrais signaler un trou dans le trottoir",), EVAL_NOW),
    "description": ("signal_details", ("je voudrais signaler un trou dans le trottoir", "12 rue des Lilas", "oui"),
                    EVAL_NOW),
    "reclamation": ("reclamation_texte", ("je voudrais faire une réclamation",), EVAL_NOW),
    "objets": ("encombrants_objets", ("je voudrais faire enlever des encombrants", "12 rue des Lilas", "oui"),
               EVAL_NOW),
    "telephone": ("rappel_numero", ("je voudrais parler à un agent", "oui"), SUNDAY),
    "motif": ("rappel_motif", ("je voudrais parler à un agent", "oui", "06 12 34 56 78", "oui"), SUNDAY),
}
HEADER = ("context", "utterance", "label")


class ContextError(ValueError):
    """A context the flow cannot be walked to (unknown name, or the flow's nodes changed)."""


@dataclass(frozen=True)
class MidCallRow:
    context: str
    text: str
    label: str

    @property
    def urgent(self) -> bool:
        return self.label == EMERGENCY


def is_midcall_file(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        return tuple(f.readline().rstrip("\n").split("\t")) == HEADER


def read_midcall(path: Path) -> list[MidCallRow]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if n == 1 or not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ContextError(f"{path}:{n}: expected context<TAB>utterance<TAB>label, got {len(row)} field(s)")
            if row[0].strip() not in CONTEXTS:
                raise ContextError(f"{path}:{n}: unknown context {row[0].strip()!r} "
                                   f"(one of {', '.join(CONTEXTS)})")
            rows.append(MidCallRow(row[0].strip(), row[1].strip(), row[2].strip()))
    return rows


def mid_call_turn(flow, context: str, text: str) -> tuple[bool, float]:
    """(did the turn give the emergency message, ms) for ``text`` said at ``context``'s question."""
    from callbot.flows.types import CallContext

    node, path, now = CONTEXTS[context]
    session = flow.new_session(CallContext(channel="eval", caller="+33600000000", now=now))
    session.start()
    for said in path:
        session.hear(said)
    if session.s.node != node:
        raise ContextError(f"context {context!r}: {' / '.join(path)!r} led to {session.s.node!r}, not {node!r}")
    t0 = time.perf_counter()
    turn = session.hear(text)
    return any(isinstance(e, Emergency) for e in turn.events), (time.perf_counter() - t0) * 1000


def report(flow, rows: list[MidCallRow], show: int = 40) -> list[str]:
    """Emergency recall and false alarms, overall and per context; last line ``emergency accuracy: X``."""
    out, ms = [], []
    per: Counter = Counter()
    shown = 0
    for row in rows:
        alarm, t = mid_call_turn(flow, row.context, row.text)
        ms.append(t)
        per[(row.context, row.urgent, alarm)] += 1
        if alarm != row.urgent and shown < show:
            out.append(f"{'missed' if row.urgent else 'false alarm':11} {row.context:12} {row.text}")
            shown += 1
    caught = sum(c for (_, u, a), c in per.items() if u and a)
    pos = sum(c for (_, u, _), c in per.items() if u)
    fa = sum(c for (_, u, a), c in per.items() if not u and a)
    neg = len(rows) - pos
    for ctx in CONTEXTS:
        p = sum(c for (x, u, _), c in per.items() if x == ctx and u)
        n = sum(c for (x, u, _), c in per.items() if x == ctx and not u)
        if p or n:
            out.append(f"  {ctx:12} emergencies {per[(ctx, True, True)]}/{p}, false alarms {per[(ctx, False, True)]}/{n}")
    out.append(f"mid-call emergency recall: {caught}/{pos} ({caught / max(pos, 1):.3f}); "
               f"false alarms: {fa}/{neg} ({fa / max(neg, 1):.1%})")
    if ms:
        out.append(f"latency ms per answer: p50 {pct(ms, .5):.1f}, p95 {pct(ms, .95):.1f}")
    out.append(f"emergency accuracy: {(caught + neg - fa) / max(len(rows), 1):.3f} ({caught + neg - fa}/{len(rows)})")
    return out
