"""KPIs as pure functions (callbot/stats): events -> facts -> counters -> KPIs, hand-computed cases."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from callbot import events as ev
from callbot.stats import (
    CALLBACKS_DONE, REPEAT_AFTER_CONTAINED, CallFacts, add, call_facts, callback_done_counters, caller_key,
    compute_kpis, counters, intent_table, kpis_from_calls, late_counters, outcome_table, quantile, repeats,
    total_counters,
)

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS).timestamp()
H = 3600.0
NUM = "+33612345678"


def make_call(cid: str, steps: list[ev._Event] = (), *, t0: float = T0, end: str | None = "bot_hangup",
              dur: float = 60.0, answer: bool = True, caller: str = NUM, latency_ms: float = 800.0,
              after: list[ev._Event] = ()) -> list[ev._Event]:
    """One call's events: start, answer, ``steps`` spread over the call, end at ``t0 + dur``, then ``after``
    (events stored later under the same call, e.g. callback_done)."""
    out: list[ev._Event] = [ev.stamp(ev.CallStarted(channel="sip", caller=caller), cid, t0)]
    if answer:
        out.append(ev.stamp(ev.CallAnswered(greeting_latency_ms=latency_ms), cid, t0 + min(1.0, dur / 4)))
    for i, e in enumerate(steps):
        out.append(ev.stamp(e, cid, t0 + dur * (i + 2) / (len(steps) + 3)))
    if end is not None:
        out.append(ev.stamp(ev.CallEnded(reason=end, duration_s=dur), cid, t0 + dur))
    for i, e in enumerate(after):
        out.append(ev.stamp(e, cid, t0 + dur + 3600 * (i + 1)))
    return out


def said(intent: str | None, text: str = "bla") -> list[ev._Event]:
    return [ev.Transcript(text=text), ev.IntentMatched(intent=intent, text=text, confidence=0.9 if intent else 0.1)]


def to_agent(wait: float, talk: float | None = 60.0, service: str = "agent") -> list[ev._Event]:
    mode = "bridge" if talk is not None else "provider"
    return [*said("parler_agent"), ev.TransferRequested(target=service),
            ev.Queued(service=service, position=1), ev.AgentOffered(agent="alice", service=service),
            ev.AgentAnswered(agent="alice", service=service, wait_s=wait, ring_s=2.0),
            ev.AgentConnected(agent="alice", service=service, talk_s=talk, mode=mode)]


def abandon(wait: float) -> list[ev._Event]:
    return [*said("parler_agent"), ev.TransferRequested(target="agent"), ev.Queued(service="agent", position=2),
            ev.Abandoned(service="agent", wait_s=wait, position=2)]


def queue_callback(cb_id: str = "cb1", cause: str = "max_wait", wait: float = 300.0) -> list[ev._Event]:
    return [*said("parler_agent"), ev.TransferRequested(target="agent"), ev.Queued(service="agent", position=3),
            ev.QueueLeft(service="agent", wait_s=wait, cause=cause),
            ev.CallbackRequested(callback_id=cb_id, service="agent", number="0612345678", reason=cause)]


def facts(*a, **kw) -> CallFacts:
    return call_facts(make_call(*a, **kw))


# ---- outcomes -------------------------------------------------------------------------------------------

OUTCOME_CASES = {
    "rejected": dict(steps=[], end="rejected", dur=0.0, answer=False),
    "rejected_overload": dict(steps=[ev.Overload(what="sip_busy")], end="caller_hangup", dur=0.5, answer=False),
    "resolved_bot_hangup": dict(steps=[*said("horaires"), *said("non"), ev.SurveyAnswered(score=5)]),
    "resolved_caller_hangup": dict(steps=said("horaires"), end="caller_hangup", dur=40.0),
    "resolved_ticket": dict(steps=[ev.DigitsPressed(digits="2"), ev.TicketCreated(kind="signalement")],
                            end="caller_hangup"),
    "bot_abandoned": dict(steps=[*said(None), ev.NoInput(kind="no_match")], end="caller_hangup", dur=30.0),
    "bot_abandoned_goodbye": dict(steps=said("au_revoir")),
    "short_abandon": dict(steps=[], end="caller_hangup", dur=4.0),
    "short_abandon_unanswered": dict(steps=[], end="caller_hangup", dur=1.0, answer=False),
    "not_short_6s": dict(steps=[], end="caller_hangup", dur=6.0),
    "agent": dict(steps=to_agent(12.0), end="transferred", dur=200.0),
    "agent_cold": dict(steps=[ev.TransferRequested(target="urbanisme", outcome="connected")], end="transferred"),
    "queue_abandoned": dict(steps=abandon(40.0), end="caller_hangup", dur=100.0),
    "callback_queue": dict(steps=queue_callback(), dur=400.0),
    "callback_flow": dict(steps=[*said("parler_agent"), *said("oui"), ev.TicketCreated(kind="rappel"),
                                 ev.CallbackRequested(callback_id="cb9", service="agent", number="0612345678",
                                                      reason="flow")]),
    "callback_flow_no_switchboard": dict(steps=[*said("parler_agent"), ev.TicketCreated(kind="rappel")]),
    "emergency": dict(steps=[ev.Transcript(text="ça sent le gaz"), ev.IntentMatched(intent="urgence"),
                             ev.Emergency(number="18")]),
    "error": dict(steps=[*said("horaires"), ev.ErrorEvent(code="x", message="boom")], end="error"),
    "agent_unreached": dict(steps=[*said("parler_agent"), *said("non")]),  # closed, callback declined
    "agent_unreached_no_number": dict(steps=[ev.TransferRequested(target="agent"),
                                             ev.Queued(service="agent", position=1),
                                             ev.QueueLeft(service="agent", wait_s=30, cause="no_agent")]),
    "in_progress": dict(steps=said("horaires"), end=None),
}
EXPECTED = {
    "rejected": "rejected", "rejected_overload": "rejected", "resolved_bot_hangup": "resolved_by_bot",
    "resolved_caller_hangup": "resolved_by_bot", "resolved_ticket": "resolved_by_bot",
    "bot_abandoned": "bot_abandoned", "bot_abandoned_goodbye": "bot_abandoned", "short_abandon": "short_abandon",
    "short_abandon_unanswered": "short_abandon", "not_short_6s": "bot_abandoned", "agent": "agent",
    "agent_cold": "agent", "queue_abandoned": "queue_abandoned", "callback_queue": "callback",
    "callback_flow": "callback", "callback_flow_no_switchboard": "callback", "emergency": "emergency",
    "error": "error", "agent_unreached": "agent_unreached", "agent_unreached_no_number": "agent_unreached",
    "in_progress": "in_progress",
}


@pytest.mark.parametrize("case", sorted(OUTCOME_CASES))
def test_each_outcome(case):
    f = facts(case, **OUTCOME_CASES[case])
    assert f.outcome == EXPECTED[case]
    c = counters(f)
    assert c[f"outcome:{f.outcome}"] == 1 and c["offered"] == 1
    assert sum(v for k, v in c.items() if k.startswith("outcome:")) == 1  # one outcome per call
    if f.rejected:
        assert (c["answered"], c["short_abandons"], c["rejected"]) == (0, 0, 1)


@pytest.mark.parametrize("steps,end,expected", [
    # an emergency stays an emergency, even transferred to an agent
    ([*said("horaires"), ev.IntentMatched(intent="urgence"), ev.Emergency(number="15"), *to_agent(5.0)[1:]],
     "transferred", "emergency"),
    # an emergency said through the recogniser only (no Emergency event) is still one
    ([ev.IntentMatched(intent="urgence")], "bot_hangup", "emergency"),
    # a served request then a person: the person
    ([*said("horaires"), *to_agent(8.0)], "transferred", "agent"),
    # a served request then a callback: the callback (out-of-hours outcome, not containment)
    ([*said("etat_civil_naissance"), *queue_callback()], "bot_hangup", "callback"),
    # a served request then a hang-up in the queue: queue abandon
    ([*said("horaires"), *abandon(30.0)], "caller_hangup", "queue_abandoned"),
    # an error after the agent talked: the caller got the agent
    ([*to_agent(5.0)], "error", "agent"),
    # an error while queued: error, not "agent unreached"
    ([*said("parler_agent"), ev.TransferRequested(target="agent"), ev.Queued(service="agent", position=1)],
     "error", "error"),
    # Twilio: handed to the provider, the dial failed, back in the queue, then hung up
    ([*to_agent(10.0, talk=None), ev.AgentDeclined(agent="alice", cause="no_answer"),
      ev.Queued(service="agent", position=1, resumed=True), ev.Abandoned(service="agent", wait_s=70.0)],
     "caller_hangup", "queue_abandoned"),
    # asked for a person (agent unreached) then a served request: still not contained
    ([*said("parler_agent"), *said("non"), *said("horaires")], "bot_hangup", "agent_unreached"),
])
def test_outcome_precedence(steps, end, expected):
    assert facts("p", steps, end=end, dur=120.0).outcome == expected


def test_twilio_provider_transfer_is_agent_without_talk_time():
    f = facts("tw", to_agent(14.0, talk=None), end="transferred", dur=300.0)
    assert (f.outcome, f.transferred, f.agent_answered, f.answer_wait_s, f.talk_s) == ("agent", True, True, 14.0, None)
    c = counters(f)
    assert (c["talk_count"], c["agent_answered"], c["answer_wait_s_sum"]) == (0, 1, 14.0)


def test_facts_fields():
    evs = make_call("c1", [*said(None, "euh"), *said("repeter"), *said("horaires", "les horaires"),
                           *said("etat_civil_naissance"), *said("horaires"),
                           ev.TurnLatency(voice_to_voice_ms=1200.0),
                           ev.TurnLatency(voice_to_voice_ms=300.0, trigger="digits"),
                           ev.IntentMatched(intent=None, text="#7"), ev.KeypadFallback()],
                    latency_ms=650.0)
    f = call_facts(evs, caller_salt="s")
    assert f.first_intent == "horaires" and f.intents == ["horaires", "etat_civil_naissance"]
    assert f.no_match_texts == ["euh"]  # keypad "#7" is not a sentence
    assert f.v2v_ms == [1200.0]  # keypad turns are not voice-to-voice
    assert f.keypad_fallback and f.greeting_latency_ms == 650.0 and f.duration_s == 60.0
    assert f.caller_hash == caller_key(NUM, "s") != caller_key(NUM, "")
    assert CallFacts.model_validate_json(f.model_dump_json()) == f


def test_caller_key_normalises_and_hides():
    assert caller_key("06 12 34 56 78") == caller_key("+33612345678") == caller_key("0033612345678")
    assert caller_key("anonymous") == caller_key("") == ""
    assert caller_key("0612345678") != caller_key("0612345679")


# ---- short abandons ---------------------------------------------------------------------------------------

def test_short_abandon_threshold_4s_vs_6s():
    calls = [facts("s4", end="caller_hangup", dur=4.0), facts("s6", end="caller_hangup", dur=6.0),
             facts("ok", said("horaires"))]
    assert [f.short_abandon for f in calls] == [True, False, False]
    k = kpis_from_calls(calls)
    assert k["calls_offered"].value == 3 and k["short_abandons"].value == 1
    # bot abandonment: 1 (the 6 s call) / (3 answered - 1 short)
    assert (k["bot_abandonment_rate"].numerator, k["bot_abandonment_rate"].denominator) == (1, 2)
    assert k["bot_abandonment_rate"].value == 0.5
    assert k["pickup_rate"].value == 1.0  # all three were answered
    # a 10 s threshold makes the 6 s call short too
    f6 = call_facts(make_call("s6", end="caller_hangup", dur=6.0), short_abandon_s=10.0)
    assert f6.outcome == "short_abandon"
    assert "moins de 10 s" in compute_kpis({}, short_abandon_s=10)["short_abandons"].label


def test_queue_abandon_vs_short_queue_abandon():
    calls = [facts("q3", abandon(3.0), end="caller_hangup", dur=50.0),
             facts("q30", abandon(30.0), end="caller_hangup", dur=80.0),
             facts("qa", to_agent(10.0), end="transferred", dur=200.0)]
    assert [(f.queue_abandoned, f.queue_short_abandon) for f in calls] == [(True, True), (True, False), (False, False)]
    assert calls[0].outcome == "queue_abandoned"  # the outcome stays; the rate excludes it
    k = kpis_from_calls(calls)
    qa = k["queue_abandonment_rate"]
    assert (qa.numerator, qa.denominator, qa.value) == (1, 2, 0.5)
    assert k["average_abandon_wait_s"].value == 30.0
    assert k["bot_abandonment_rate"].value == 0.0  # queue abandons are not bot abandons


# ---- service level, ASA, AHT ------------------------------------------------------------------------------

def _queue_calls() -> list[CallFacts]:
    answered = [facts(f"a{w}", to_agent(w, talk=t), end="transferred", dur=w + 100)
                for w, t in ((5, 90.0), (15, 30.0), (20, None), (25, 60.0), (60, 120.0))]
    return [*answered, facts("ab40", abandon(40.0), end="caller_hangup", dur=90.0),
            facts("ab2", abandon(2.0), end="caller_hangup", dur=40.0),
            facts("cb", queue_callback(wait=300.0), dur=400.0)]


def test_service_level_and_asa():
    k = kpis_from_calls(_queue_calls())
    sl = k["service_level"]
    # answered within 20 s (5, 15, 20) / (8 queued - 1 short queue abandon);
    # the 40 s abandon and the callback count against
    assert (sl.numerator, sl.denominator) == (3, 7) and sl.value == pytest.approx(3 / 7)
    asa = k["average_speed_of_answer_s"]
    assert (asa.numerator, asa.denominator, asa.value) == (125, 5, 25.0)  # agent-answered calls only
    assert k["agent_answer_rate"].value == pytest.approx(5 / 7)
    aht = k["average_handle_time_s"]
    assert (aht.numerator, aht.denominator, aht.value) == (300, 4, 75.0)  # the Twilio call has no talk time
    assert k["transfer_rate"].value == pytest.approx(5 / 8) and k["calls_queued"].value == 8


def test_service_level_other_threshold_from_histogram():
    totals = total_counters(_queue_calls())  # counters made with the default 20 s
    assert compute_kpis(totals, sl_threshold_s=30)["service_level"].numerator == 4  # 5, 15, 20, 25
    assert compute_kpis(totals, sl_threshold_s=10)["service_level"].numerator == 1
    assert "30 s" in compute_kpis(totals, sl_threshold_s=30)["service_level"].label
    c = counters(_queue_calls()[1], sl_threshold_s=10)  # a 15 s wait
    assert (c["answered_within_sl"], c["answer_wait_le_15"]) == (0, 1)


# ---- containment, deflection, repeats ---------------------------------------------------------------------

def test_repeat_within_24h_lowers_containment_not_deflection():
    a, b = "+33611111111", "+33622222222"
    calls = [facts("A1", said("horaires"), caller=a, t0=T0),
             facts("A2", said("horaires"), caller=a, t0=T0 + 23 * H),  # 23 h later: A1 was not really contained
             facts("A3", end="caller_hangup", dur=3.0, caller=a, t0=T0 + 22 * H),  # A1 still counted once
             facts("B1", said("horaires"), caller=b, t0=T0),
             facts("B2", said("horaires"), caller=b, t0=T0 + 25 * H),  # 25 h later: not a repeat
             facts("H1", said("horaires"), caller="anonymous", t0=T0),
             facts("H2", said("horaires"), caller="", t0=T0 + H),  # hidden numbers never match
             facts("G1", to_agent(5.0), end="transferred", caller=b, t0=T0 + 24.5 * H)]  # B1: 24.5 h
    assert repeats(calls) == {"A1"}
    assert repeats(calls, window_s=26 * H) == {"A1", "B1"}
    k = kpis_from_calls(calls)
    c = k["containment_rate"]
    # resolved by the bot: A1 A2 B1 B2 H1 H2 = 6, minus 1 repeat; answered: 8
    assert (c.numerator, c.denominator) == (5, 8)
    d = k["deflection_rate"]
    assert (d.numerator, d.denominator) == (6, 8)  # the repeat does not change deflection
    assert k["repeat_rate"].value == pytest.approx(1 / 6)
    assert late_counters(calls)[REPEAT_AFTER_CONTAINED] == 1


def test_repeat_needs_a_contained_call_first():
    calls = [facts("X1", to_agent(5.0), end="transferred", t0=T0),  # an agent call, then another call
             facts("X2", said("horaires"), t0=T0 + H)]
    assert repeats(calls) == set()


def test_deflection_counts_unresolved_calls_containment_does_not():
    calls = [facts("r", said("horaires")), facts("ab", end="caller_hangup", dur=30.0),
             facts("em", [ev.IntentMatched(intent="urgence"), ev.Emergency(number="15")]),
             facts("ag", to_agent(5.0), end="transferred"), facts("cb", queue_callback())]
    k = kpis_from_calls(calls)
    assert (k["containment_rate"].numerator, k["deflection_rate"].numerator, k["containment_rate"].denominator) \
        == (1, 3, 5)
    assert k["handoff_rate"].value == pytest.approx(2 / 5)


# ---- callbacks ---------------------------------------------------------------------------------------------

def test_callbacks_and_callbacks_done():
    calls = [facts("c1", queue_callback("cb1"), after=[ev.CallbackDone(callback_id="cb1", outcome="no_answer"),
                                                       ev.CallbackDone(callback_id="cb1", outcome="done"),
                                                       ev.CallbackDone(callback_id="cb1", outcome="done")]),
             facts("c2", queue_callback("cb2", cause="callback_key", wait=50.0),
                   after=[ev.CallbackDone(callback_id="cb2", outcome="no_answer")]),
             facts("c3", said("horaires"))]
    assert [f.callbacks_done for f in calls] == [1, 0, 0]
    assert CALLBACKS_DONE not in counters(calls[0])  # the rollup adds it when callback_done arrives
    k = kpis_from_calls(calls)
    assert (k["callback_rate"].numerator, k["callback_rate"].denominator) == (2, 3)
    cd = k["callbacks_done_rate"]
    assert (cd.numerator, cd.denominator, cd.value) == (1, 2, 0.5)
    assert k["queue_abandonment_rate"].value == 0.0  # a callback is not an abandon
    assert callback_done_counters("done") == {CALLBACKS_DONE: 1.0}
    assert callback_done_counters("no_answer") == {"callbacks_no_answer": 1.0}


def test_flow_callback_without_switchboard_has_no_done_rate():
    k = kpis_from_calls([facts("t", [*said("parler_agent"), ev.TicketCreated(kind="rappel")])])
    assert k["callback_rate"].value == 1.0 and k["tickets"].value == 1
    assert k["callbacks_done_rate"].value is None  # nothing on the console to close


# ---- satisfaction, latency ---------------------------------------------------------------------------------

def test_satisfaction():
    calls = [facts("s5", [*said("horaires"), ev.SurveyAnswered(score=5)]),
             facts("s3", [*said("horaires"), ev.SurveyAnswered(score=2), ev.SurveyAnswered(score=3)]),  # last wins
             facts("n1", said("horaires")), facts("n2", said("horaires"))]
    k = kpis_from_calls(calls)
    assert (k["satisfaction_avg"].value, k["satisfaction_avg"].denominator) == (4.0, 2)
    assert k["satisfaction_avg"].unit == "score"
    assert k["satisfaction_response_rate"].value == 0.5


def test_v2v_percentiles_interpolated_in_histogram():
    values = [300, 600, 700, 900, 1100, 1200, 1400, 1600, 1900, 2400]
    f = facts("v", [ev.TurnLatency(voice_to_voice_ms=v) for v in values])
    buckets = (500, 1000, 1500, 2000, 3000)
    c = counters(f, v2v_buckets_ms=buckets)
    assert {k: v for k, v in c.items() if k.startswith("v2v_le_")} == {
        "v2v_le_500": 1, "v2v_le_1000": 3, "v2v_le_1500": 3, "v2v_le_2000": 2, "v2v_le_3000": 1}
    k = compute_kpis(c)
    assert k["v2v_p50_s"].value == pytest.approx(1.0 + 0.5 * (5 - 4) / 3)  # rank 5 in (1000, 1500]
    assert k["v2v_p90_s"].value == pytest.approx(2.0)  # rank 9 closes (1500, 2000]
    assert k["v2v_p95_s"].value == pytest.approx(2.5)  # rank 9.5 halfway through (2000, 3000]
    assert k["v2v_p95_s"].denominator == 10 and k["v2v_mean_s"].value == pytest.approx(1.21)


def test_quantile_edges():
    assert quantile([], 0.5) is None
    assert quantile([(1000.0, 0.0), (math.inf, 4.0)], 0.5) == 1000.0  # open bucket: its lower bound
    assert quantile([(1000.0, 2.0)], 0.5) == 500.0


def test_greeting_latency():
    k = kpis_from_calls([facts("g1", latency_ms=600.0), facts("g2", latency_ms=1000.0),
                         facts("r", end="rejected", answer=False, dur=0.0)])
    t = k["time_to_answer_s"]
    assert (t.value, t.numerator, t.denominator) == (0.8, 1.6, 2)


# ---- rejected, empty periods, additivity ------------------------------------------------------------------

def test_rejected_in_offered_not_answered():
    calls = [facts("r1", end="rejected", answer=False, dur=0.0), facts("ok", said("horaires")),
             facts("ok2", said("horaires"))]
    k = kpis_from_calls(calls)
    assert (k["calls_offered"].value, k["calls_answered"].value, k["rejected_calls"].value) == (3, 2, 1)
    assert k["pickup_rate"].value == pytest.approx(2 / 3)
    assert k["containment_rate"].denominator == 2
    assert k["rejected_calls"].denominator is None and k["rejected_calls"].numerator == 1


def test_division_by_zero_is_none():
    k = compute_kpis({})
    for kpi in k.values():
        if kpi.unit == "count":
            assert kpi.value == 0 and kpi.denominator is None
        else:
            assert kpi.value is None, kpi.name
    # no queue at all: the queue KPIs are None, not 0
    k = kpis_from_calls([facts("x", said("horaires"))])
    for name in ("service_level", "queue_abandonment_rate", "average_speed_of_answer_s", "average_handle_time_s",
                 "satisfaction_avg", "callbacks_done_rate", "v2v_p50_s"):
        assert k[name].value is None, name
    assert k["containment_rate"].value == 1.0


def test_required_kpis_present_with_french_labels():
    k = compute_kpis({})
    for name in ("calls_offered", "pickup_rate", "time_to_answer_s", "bot_abandonment_rate", "short_abandons",
                 "queue_abandonment_rate", "service_level", "average_speed_of_answer_s", "average_handle_time_s",
                 "containment_rate", "deflection_rate", "transfer_rate", "callback_rate", "callbacks_done_rate",
                 "tickets", "emergencies", "satisfaction_avg", "satisfaction_response_rate", "v2v_p50_s",
                 "v2v_p95_s", "keypad_fallback_rate", "rejected_calls"):
        assert name in k and k[name].label and k[name].definition, name


def _mixed_calls() -> list[CallFacts]:
    calls = [facts(n, **kw) for n, kw in OUTCOME_CASES.items() if kw.get("end", "bot_hangup") is not None]
    return [*calls, *_queue_calls(),
            facts("late", said("horaires"), t0=datetime(2026, 3, 10, 23, 59, 50, tzinfo=PARIS).timestamp(), dur=70),
            facts("v", [ev.TurnLatency(voice_to_voice_ms=v) for v in (900, 1800, 2600, 20000)])]


def test_counters_are_additive():
    calls = _mixed_calls()
    totals: dict[str, float] = {}
    for f in calls:
        add(totals, counters(f))
    add(totals, late_counters(calls))
    assert compute_kpis(totals) == kpis_from_calls(calls)
    # the sum of two halves (e.g. two hours, two days) equals the whole (repeats are found over all calls:
    # the rollup adds them to the earlier call's bucket, whichever period the later call falls in)
    half = len(calls) // 2

    def summed(fs):
        out: dict[str, float] = {}
        for f in fs:
            add(out, counters(f))
        return out

    both, whole = add(summed(calls[:half]), summed(calls[half:])), summed(calls)
    assert set(both) == set(whole) and all(both[k] == pytest.approx(v) for k, v in whole.items())
    whole = total_counters(calls)
    assert sum(v for k, v in whole.items() if k.startswith("outcome:")) == whole["offered"] == len(calls)
    assert sum(r["calls"] for r in intent_table(whole)) == whole["bot_conversations"]


def test_call_across_midnight_belongs_to_its_start():
    start = datetime(2026, 3, 10, 23, 59, 50, tzinfo=PARIS).timestamp()
    f = facts("mid", said("horaires"), t0=start, dur=70.0)
    assert f.started == start and f.ended == start + 70 and f.duration_s == 70.0
    assert datetime.fromtimestamp(f.started, PARIS).hour == 23  # the rollup keys it by this hour
    # facts do not depend on where the period cuts: the same call's counters, whichever day is summed
    assert counters(f) == counters(call_facts(make_call("mid", said("horaires"), t0=start, dur=70.0)))


def test_intent_table():
    calls = [facts("h1", said("horaires")), facts("h2", said("horaires"), end="caller_hangup"),
             facts("h3", [*said("horaires"), *to_agent(5.0)], end="transferred"),
             facts("n1", [*said("etat_civil_naissance"), *queue_callback()]),
             facts("z", end="caller_hangup", dur=30.0), facts("s", end="caller_hangup", dur=2.0)]
    rows = intent_table(total_counters(calls))
    assert [r["intent"] for r in rows] == ["horaires", "_none", "etat_civil_naissance"]
    h = rows[0]
    assert (h["calls"], h["resolved"], h["agent"], h["resolution_rate"]) == (3, 2, 1, pytest.approx(2 / 3))
    assert (rows[1]["abandoned"], rows[1]["recognised"]) == (1, False)  # the short abandon has no row
    assert rows[2]["callback"] == 1 and rows[2]["resolution_rate"] == 0


def test_outcome_table_shares():
    table = outcome_table(total_counters([facts("a", said("horaires")), facts("b", end="caller_hangup", dur=2)]))
    by = {r["outcome"]: r for r in table}
    assert by["resolved_by_bot"]["share"] == 0.5 and by["short_abandon"]["calls"] == 1
    assert outcome_table({})[0]["share"] is None
