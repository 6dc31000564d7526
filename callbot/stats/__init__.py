"""Call statistics as pure functions: events -> facts -> counters -> KPIs (see docs/stats.md).

    call_facts(events of one call)  -> CallFacts (one row per call, one outcome)
    counters(facts)                 -> {name: increment}, summable over calls (hourly/daily buckets)
    compute_kpis(summed counters)   -> {name: KPI(value, numerator, denominator, unit, label, definition)}

No I/O, no clock, no Redis: the rollup (``rollup.py``) stores the sums, ``/api/stats`` reads them.
"""

from callbot.stats.counters import (
    ANSWER_WAIT_BUCKETS_S, CALLBACKS_NO_ANSWER, CALLBACKS_DONE, LATE_COUNTERS, REPEAT_AFTER_CONTAINED,
    SL_THRESHOLD_S, V2V_BUCKETS_MS, add, callback_done_counters, counters, late_counters, repeats, total_counters,
)
from callbot.stats.facts import OUTCOMES, SHORT_ABANDON_S, CallFacts, call_facts, caller_key
from callbot.stats.kpis import KPI, compute_kpis, intent_table, kpis_from_calls, outcome_table, quantile

__all__ = [
    "ANSWER_WAIT_BUCKETS_S", "CALLBACKS_NO_ANSWER", "CALLBACKS_DONE", "KPI", "LATE_COUNTERS", "OUTCOMES",
    "REPEAT_AFTER_CONTAINED", "SHORT_ABANDON_S", "SL_THRESHOLD_S", "V2V_BUCKETS_MS", "CallFacts", "add",
    "call_facts", "callback_done_counters", "caller_key", "compute_kpis", "counters", "intent_table",
    "kpis_from_calls", "late_counters", "outcome_table", "quantile", "repeats", "total_counters",
]
