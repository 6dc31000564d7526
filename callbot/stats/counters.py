"""One call's facts -> flat, summable counters (pure).

Every counter is an increment for ONE call; the counters of any set of calls are the sum of
theirs, so an hour, a day or a month is the sum of its hourly buckets and ``kpis.compute_kpis``
works on any of them. Names and meanings: ``docs/stats.md`` ("Counters").

Fixed counters are always present (0 when they do not apply); the keyed families
(``outcome:*``, ``intent:*:*``, ``v2v_le_*``, ``answer_wait_le_*``) only when non-zero.
Histograms are NOT cumulative: ``v2v_le_1000`` counts the turns in (previous bound, 1000 ms],
``v2v_le_inf`` those above the last bound.

Three counters never come from ``counters()``: the rollup adds them to the ORIGINAL call's
buckets (its start hour) when it learns them later — see ``LATE_COUNTERS``.
"""

from __future__ import annotations

import math
from collections import defaultdict

from callbot.stats.facts import CallFacts

# Voice-to-voice turn latency histogram bounds (ms) and queue answer-wait bounds (s).
V2V_BUCKETS_MS: tuple[float, ...] = (250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 3000, 3500,
                                     4000, 5000, 6000, 8000, 10000, 15000)
ANSWER_WAIT_BUCKETS_S: tuple[float, ...] = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
SL_THRESHOLD_S = 20.0

# Added by the rollup, never by counters(): see late_counters() and docs/stats.md.
# +1 on a contained call followed by a call from the same number within 24 h
REPEAT_AFTER_CONTAINED = "repeat_after_contained"
CALLBACKS_DONE = "callbacks_done"  # +1 per callback id closed "done" (at most once per callback id)
CALLBACKS_NO_ANSWER = "callbacks_no_answer"  # +1 per "no_answer" attempt (a request may have several)
LATE_COUNTERS = (REPEAT_AFTER_CONTAINED, CALLBACKS_DONE, CALLBACKS_NO_ANSWER)

FIXED = (
    "offered", "answered", "bot_conversations", "short_abandons", "bot_abandons", "rejected",
    "queued", "queue_abandons", "queue_short_abandons", "queue_abandon_wait_s_sum", "queue_flow_outs",
    "agent_answered", "answered_within_sl", "answer_wait_s_sum", "talk_s_sum", "talk_count",
    "resolved_by_bot", "deflected", "handoffs", "transfers", "callbacks", "callback_requests",
    "tickets", "emergencies", "survey_responses", "survey_score_sum", "keypad_fallbacks",
    "brief_calls", "greedy_calls",
    "greeting_latency_ms_sum", "greeting_latency_count", "v2v_count", "v2v_ms_sum",
)
NO_INTENT = "_none"  # the intent row of answered calls where no request was recognised
ABANDON_OUTCOMES = frozenset({"bot_abandoned", "queue_abandoned"})


def bound_name(b: float) -> str:
    """``1000.0`` -> ``"1000"``, ``2.5`` -> ``"2.5"``, ``inf`` -> ``"inf"`` (counter-name suffixes)."""
    return "inf" if math.isinf(b) else f"{b:g}"


def bucket_of(value: float, bounds: tuple[float, ...]) -> str:
    """The name suffix of the (non-cumulative) bucket holding ``value``: first bound >= value."""
    for b in sorted(bounds):
        if value <= b:
            return bound_name(b)
    return "inf"


def counters(f: CallFacts, *, sl_threshold_s: float = SL_THRESHOLD_S,
             v2v_buckets_ms: tuple[float, ...] = V2V_BUCKETS_MS,
             answer_wait_buckets_s: tuple[float, ...] = ANSWER_WAIT_BUCKETS_S) -> dict[str, float]:
    """The increments one call adds to its buckets (name -> value)."""
    c: dict[str, float] = dict.fromkeys(FIXED, 0.0)
    c["offered"] = 1.0
    c["answered"] = float(f.answered)
    c["bot_conversations"] = float(f.answered and not f.short_abandon)
    c["short_abandons"] = float(f.short_abandon)
    c["bot_abandons"] = float(f.outcome == "bot_abandoned")
    c["rejected"] = float(f.rejected)

    c["queued"] = float(f.queued)
    long_abandon = f.queue_abandoned and not f.queue_short_abandon
    c["queue_abandons"] = float(long_abandon)  # short queue abandons are NOT in here
    c["queue_short_abandons"] = float(f.queue_short_abandon)
    c["queue_abandon_wait_s_sum"] = (f.queue_wait_s or 0.0) if long_abandon else 0.0
    c["queue_flow_outs"] = float(f.queued and bool(f.queue_left_cause) and not f.transferred)
    c["agent_answered"] = float(f.agent_answered)
    if f.agent_answered and f.answer_wait_s is not None:
        c["answer_wait_s_sum"] = f.answer_wait_s
        c["answered_within_sl"] = float(f.answer_wait_s <= sl_threshold_s)
        c[f"answer_wait_le_{bucket_of(f.answer_wait_s, answer_wait_buckets_s)}"] = 1.0
    if f.talk_s is not None:
        c["talk_s_sum"] = f.talk_s
        c["talk_count"] = 1.0

    c["resolved_by_bot"] = float(f.outcome == "resolved_by_bot")
    c["deflected"] = float(f.answered and not f.short_abandon and not f.handoff and not f.queued
                           and not f.transferred and not f.callback_requested)
    c["handoffs"] = float(f.handoff)
    c["transfers"] = float(f.transferred)
    c["callbacks"] = float(f.callback_requested)
    c["callback_requests"] = float(f.callback_requests)
    c["tickets"] = float(f.tickets)
    c["emergencies"] = float(f.emergency)
    if f.survey_score is not None:
        c["survey_responses"] = 1.0
        c["survey_score_sum"] = float(f.survey_score)
    c["keypad_fallbacks"] = float(f.keypad_fallback)
    c["brief_calls"] = float("brief" in f.degraded)
    c["greedy_calls"] = float("greedy" in f.degraded)
    if f.greeting_latency_ms is not None:
        c["greeting_latency_ms_sum"] = f.greeting_latency_ms
        c["greeting_latency_count"] = 1.0

    c["v2v_count"] = float(len(f.v2v_ms))
    c["v2v_ms_sum"] = float(sum(f.v2v_ms))
    hist: dict[str, float] = defaultdict(float)
    for v in f.v2v_ms:
        hist[f"v2v_le_{bucket_of(v, v2v_buckets_ms)}"] += 1.0
    c.update(hist)

    c[f"outcome:{f.outcome}"] = 1.0
    if f.answered and not f.short_abandon:
        name = f.first_intent or NO_INTENT
        c[f"intent:{name}:calls"] = 1.0
        for field, hit in (("resolved", f.outcome == "resolved_by_bot"), ("agent", f.outcome == "agent"),
                           ("abandoned", f.outcome in ABANDON_OUTCOMES), ("callback", f.outcome == "callback")):
            if hit:
                c[f"intent:{name}:{field}"] = 1.0
    return c


def add(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """``total += more`` (in place, returned): what HINCRBYFLOAT does in Redis."""
    for k, v in more.items():
        total[k] = total.get(k, 0.0) + v
    return total


def repeats(calls: list[CallFacts], window_s: float = 86400.0) -> set[str]:
    """Call ids of contained calls (``resolved_by_bot``) followed by ANOTHER call from the same
    number starting less than or exactly ``window_s`` after the contained call started (any outcome,
    hidden numbers never match). Each contained call counts once, however many calls follow."""
    by_caller: dict[str, list[CallFacts]] = defaultdict(list)
    for f in calls:
        if f.caller_hash:
            by_caller[f.caller_hash].append(f)
    out: set[str] = set()
    for group in by_caller.values():
        group.sort(key=lambda f: f.started)
        for i, f in enumerate(group):
            if f.outcome != "resolved_by_bot":
                continue
            for later in group[i + 1:]:
                dt = later.started - f.started
                if dt > window_s:
                    break
                if dt > 0 and later.call_id != f.call_id:
                    out.add(f.call_id)
                    break
    return out


def callback_done_counters(outcome: str) -> dict[str, float]:
    """What a ``callback_done`` event adds to the original call's buckets (the rollup calls it once per
    event; it must count ``done`` at most once per callback id)."""
    if outcome == "done":
        return {CALLBACKS_DONE: 1.0}
    if outcome == "no_answer":
        return {CALLBACKS_NO_ANSWER: 1.0}
    return {}


def late_counters(calls: list[CallFacts], window_s: float = 86400.0) -> dict[str, float]:
    """The counters the rollup adds later, computed from a list of calls (tests, demo, reference):
    repeats within ``window_s`` and callbacks closed "done" among the events the facts were read from."""
    return {REPEAT_AFTER_CONTAINED: float(len(repeats(calls, window_s))),
            CALLBACKS_DONE: float(sum(f.callbacks_done for f in calls))}


def total_counters(calls: list[CallFacts], *, window_s: float = 86400.0, **kw) -> dict[str, float]:
    """Sum of ``counters`` over ``calls`` plus ``late_counters``: what the buckets of the calls' period hold."""
    total: dict[str, float] = {}
    for f in calls:
        add(total, counters(f, **kw))
    return add(total, late_counters(calls, window_s))
