"""Summed counters -> the dashboard's KPIs (pure).

``compute_kpis(totals)`` works on the sum of any buckets (an hour, a day, a month, one service);
every rate comes with its numerator and denominator, and a rate whose denominator is 0 is None.
Definitions, French labels and sources: ``docs/stats.md``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

from callbot.stats.counters import (
    ANSWER_WAIT_BUCKETS_S, CALLBACKS_DONE, NO_INTENT, REPEAT_AFTER_CONTAINED, SL_THRESHOLD_S, total_counters,
)
from callbot.stats.facts import OUTCOMES, SHORT_ABANDON_S, CallFacts

Unit = Literal["count", "ratio", "seconds", "score"]


class KPI(BaseModel):
    name: str
    value: float | None  # ratio: a fraction 0..1 (the dashboard shows %); seconds; count; score 1..5
    numerator: float | None
    denominator: float | None
    unit: Unit
    label: str  # French, short
    definition: str  # French, one sentence: numerator / denominator in words


OUTCOME_LABELS: dict[str, str] = {
    "rejected": "Refusé (saturation)",
    "emergency": "Urgence",
    "short_abandon": "Raccroché immédiat",
    "agent": "Mis en relation avec un agent",
    "callback": "Rappel demandé",
    "queue_abandoned": "Raccroché en attente d'un agent",
    "error": "Erreur technique",
    "agent_unreached": "Agent demandé, non joint",
    "resolved_by_bot": "Réponse donnée par l'assistant",
    "bot_abandoned": "Raccroché pendant l'assistant",
    "in_progress": "En cours",
}


def _g(t: dict[str, float], k: str) -> float:
    return float(t.get(k, 0.0) or 0.0)


def _ratio(name: str, num: float, den: float, label: str, definition: str) -> KPI:
    return KPI(name=name, value=num / den if den > 0 else None, numerator=num, denominator=den,
               unit="ratio", label=label, definition=definition)


def _mean(name: str, total: float, n: float, unit: Unit, label: str, definition: str) -> KPI:
    return KPI(name=name, value=total / n if n > 0 else None, numerator=total, denominator=n,
               unit=unit, label=label, definition=definition)


def _count(name: str, n: float, label: str, definition: str) -> KPI:
    return KPI(name=name, value=n, numerator=n, denominator=None, unit="count", label=label,
               definition=definition)


def histogram(totals: dict[str, float], prefix: str) -> list[tuple[float, float]]:
    """``[(upper bound, count), ...]`` sorted by bound (``inf`` last) from the ``<prefix><bound>`` counters."""
    out = []
    for k, v in totals.items():
        if k.startswith(prefix):
            try:
                out.append((float(k[len(prefix):]), float(v)))
            except ValueError:
                continue
    return sorted(out)


def quantile(hist: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile from a non-cumulative histogram, by linear interpolation inside the bucket
    holding rank ``q × n`` (the first bucket starts at 0, as Prometheus' ``histogram_quantile``).
    In the open last bucket the answer is its lower bound (a floor: "at least"). None when empty."""
    n = sum(c for _, c in hist)
    if n <= 0:
        return None
    rank = q * n
    cum, lo = 0.0, 0.0
    for hi, c in hist:
        if c > 0 and cum + c >= rank:
            if math.isinf(hi):
                return lo
            return lo + (hi - lo) * max(0.0, rank - cum) / c
        cum += c
        lo = hi
    return lo


def _service_level_numerator(totals: dict[str, float], threshold: float) -> float:
    """Agent-answered calls waiting <= threshold: exact from the answer-wait histogram when the threshold
    is one of its bounds (so a new threshold applies to past buckets), else ``answered_within_sl``."""
    hist = histogram(totals, "answer_wait_le_")
    if threshold in ANSWER_WAIT_BUCKETS_S or any(b == threshold for b, _ in hist):
        return sum(c for b, c in hist if b <= threshold)
    return _g(totals, "answered_within_sl")


def compute_kpis(totals: dict[str, float], *, sl_threshold_s: float = SL_THRESHOLD_S,
                 short_abandon_s: float = SHORT_ABANDON_S) -> dict[str, KPI]:
    """All dashboard KPIs from summed counters (the thresholds must be those the counters were made with)."""
    t = totals
    sa = f"{short_abandon_s:g} s"
    sl = f"{sl_threshold_s:g} s"
    offered, answered = _g(t, "offered"), _g(t, "answered")
    bot_conv = _g(t, "bot_conversations")
    queued_net = _g(t, "queued") - _g(t, "queue_short_abandons")
    resolved, repeats = _g(t, "resolved_by_bot"), _g(t, REPEAT_AFTER_CONTAINED)
    k: list[KPI] = [
        _count("calls_offered", offered, "Appels reçus",
               "Tous les appels arrivés sur la ligne, y compris refusés et raccrochés immédiats."),
        _count("calls_answered", answered, "Appels décrochés par l'assistant",
               "Appels où l'assistant a parlé (premier message envoyé)."),
        _ratio("pickup_rate", answered, offered, "Taux de décroché",
               "Appels décrochés par l'assistant / appels reçus."),
        _mean("time_to_answer_s", _g(t, "greeting_latency_ms_sum") / 1000, _g(t, "greeting_latency_count"),
              "seconds", "Délai de décroché",
              "Somme des délais entre la prise de la ligne et le premier mot de l'assistant / "
              "appels décrochés où il est mesuré."),
        _ratio("bot_abandonment_rate", _g(t, "bot_abandons"), bot_conv, "Abandon pendant l'assistant",
               f"Appels quittés avant qu'une demande soit traitée / appels décrochés hors raccrochés "
               f"de moins de {sa}."),
        _count("short_abandons", _g(t, "short_abandons"), f"Raccrochés en moins de {sa}",
               f"Appels raccrochés par l'appelant moins de {sa} après l'arrivée : comptés dans les appels reçus, "
               "exclus des taux d'abandon."),
        _count("calls_queued", _g(t, "queued"), "Appels mis en attente d'un agent",
               "Appels entrés dans la file d'attente d'un service."),
        _ratio("queue_abandonment_rate", _g(t, "queue_abandons"), queued_net, "Abandon en attente d'un agent",
               f"Appels raccrochés en file après {sa} ou plus d'attente / appels mis en file, hors raccrochés en "
               f"moins de {sa} ; une demande de rappel n'est pas un abandon."),
        _mean("average_abandon_wait_s", _g(t, "queue_abandon_wait_s_sum"), _g(t, "queue_abandons"), "seconds",
              "Attente moyenne avant abandon",
              "Somme des attentes en file des appels abandonnés / appels abandonnés en file (hors courts)."),
        _ratio("service_level", _service_level_numerator(t, sl_threshold_s), queued_net,
               f"Niveau de service ({sl})",
               f"Appels pris par un agent en {sl} ou moins d'attente / appels mis en file, hors raccrochés en "
               f"moins de {sa} (abandons, rappels et sorties de file comptent contre)."),
        _ratio("agent_answer_rate", _g(t, "agent_answered"), queued_net, "Appels en file joints par un agent",
               f"Appels mis en file pris par un agent / appels mis en file, hors raccrochés en moins de {sa}."),
        _mean("average_speed_of_answer_s", _g(t, "answer_wait_s_sum"), _g(t, "agent_answered"), "seconds",
              "Attente moyenne avant agent",
              "Somme des attentes en file (entrée en file jusqu'à l'acceptation) / appels pris par un agent ; "
              "le temps passé avec l'assistant n'est pas compté."),
        _mean("average_handle_time_s", _g(t, "talk_s_sum"), _g(t, "talk_count"), "seconds",
              "Durée moyenne de conversation avec un agent",
              "Somme des durées de conversation agent mesurées / conversations mesurées (sans après-appel ; "
              "non mesurée sur Twilio)."),
        _ratio("containment_rate", resolved - repeats, answered, "Demandes résolues par l'assistant",
               "Appels où l'assistant a répondu sans agent ni rappel, et sans nouvel appel du même numéro "
               "dans les 24 h / appels décrochés."),
        _ratio("deflection_rate", _g(t, "deflected"), answered, "Appels sans agent (déflexion brute)",
               f"Appels décrochés (hors raccrochés en moins de {sa}) sans demande d'agent, transfert ni rappel, "
               "qu'ils soient résolus ou non / appels décrochés."),
        _ratio("repeat_rate", repeats, resolved, "Rappels du même numéro sous 24 h",
               "Appels résolus par l'assistant suivis d'un nouvel appel du même numéro dans les 24 h / "
               "appels résolus par l'assistant."),
        _ratio("handoff_rate", _g(t, "handoffs"), answered, "Demandes d'agent",
               "Appels où l'appelant a demandé ou été orienté vers un agent / appels décrochés."),
        _ratio("transfer_rate", _g(t, "transfers"), answered, "Transferts vers un agent",
               "Appels mis en relation avec une personne (file ou transfert direct) / appels décrochés."),
        _ratio("callback_rate", _g(t, "callbacks"), answered, "Demandes de rappel",
               "Appels avec une demande de rappel (en file ou hors horaires) / appels décrochés."),
        _ratio("callbacks_done_rate", _g(t, CALLBACKS_DONE), _g(t, "callback_requests"), "Rappels effectués",
               "Demandes de rappel closes « fait » par un agent / demandes de rappel enregistrées "
               "(appels de la période ; le taux monte à mesure que les agents rappellent)."),
        _count("tickets", _g(t, "tickets"), "Demandes enregistrées",
               "Tickets créés par l'assistant (signalements, rappels, démarches)."),
        _count("emergencies", _g(t, "emergencies"), "Urgences signalées",
               "Appels où une urgence a été détectée (message des numéros d'urgence donné)."),
        _mean("satisfaction_avg", _g(t, "survey_score_sum"), _g(t, "survey_responses"), "score",
              "Satisfaction moyenne (sur 5)", "Somme des notes de 1 à 5 / réponses à l'enquête."),
        _ratio("satisfaction_response_rate", _g(t, "survey_responses"), answered, "Réponses à l'enquête",
               "Appels avec une note de satisfaction / appels décrochés."),
        _mean("v2v_mean_s", _g(t, "v2v_ms_sum") / 1000, _g(t, "v2v_count"), "seconds",
              "Temps de réponse moyen", "Somme des délais fin de parole -> début de réponse / tours de parole."),
    ]
    v2v = histogram(t, "v2v_le_")
    n = sum(c for _, c in v2v)
    for q in (50, 90, 95):
        val = quantile(v2v, q / 100)
        k.append(KPI(name=f"v2v_p{q}_s", value=val / 1000 if val is not None else None, numerator=None,
                     denominator=n, unit="seconds",
                     label="Temps de réponse médian" if q == 50 else f"Temps de réponse ({q} % des tours)",
                     definition=f"Délai fin de parole de l'appelant -> début de réponse, tel que {q} % des tours "
                                "de parole sont plus rapides (interpolé dans l'histogramme) / tours de parole."))
    k += [
        _ratio("brief_rate", _g(t, "brief_calls"), answered, "Messages abrégés (charge)",
               "Appels servis avec les messages courts du parcours, la machine étant saturée (1er palier de "
               "dégradation) / appels décrochés."),
        _ratio("greedy_rate", _g(t, "greedy_calls"), answered, "Reconnaissance allégée (charge)",
               "Appels dont au moins un tour a été reconnu en mode rapide moins précis (2e palier) / appels "
               "décrochés."),
        _ratio("keypad_fallback_rate", _g(t, "keypad_fallbacks"), answered, "Passage au clavier",
               "Appels passés au menu clavier faute de reconnaissance vocale disponible (dernier palier) / "
               "appels décrochés."),
        _count("rejected_calls", _g(t, "rejected"), "Appels refusés (saturation)",
               "Appels refusés avant décroché (capacité atteinte) : comptés dans les appels reçus."),
    ]
    return {x.name: x for x in k}


def intent_table(totals: dict[str, float]) -> list[dict]:
    """Per first intent: calls, resolved, agent, abandoned, callback, resolution_rate (resolved / calls,
    None when 0 calls); sorted by calls, most first. The ``_none`` row: no request recognised."""
    rows: dict[str, dict] = {}
    for key, v in totals.items():
        if not key.startswith("intent:"):
            continue
        name, _, field = key[len("intent:"):].rpartition(":")
        if not name or field not in ("calls", "resolved", "agent", "abandoned", "callback"):
            continue
        row = rows.setdefault(name, {"intent": name, "calls": 0.0, "resolved": 0.0, "agent": 0.0,
                                     "abandoned": 0.0, "callback": 0.0})
        row[field] += float(v)
    out = list(rows.values())
    for r in out:
        r["resolution_rate"] = r["resolved"] / r["calls"] if r["calls"] > 0 else None
        r["recognised"] = r["intent"] != NO_INTENT
    return sorted(out, key=lambda r: (-r["calls"], r["intent"]))


def outcome_table(totals: dict[str, float]) -> list[dict]:
    """Per outcome (fixed order, precedence order): calls, share of offered calls (None if none), French label."""
    offered = _g(totals, "offered")
    return [{"outcome": o, "label": OUTCOME_LABELS[o], "calls": _g(totals, f"outcome:{o}"),
             "share": _g(totals, f"outcome:{o}") / offered if offered > 0 else None}
            for o in OUTCOMES]


def kpis_from_calls(calls: list[CallFacts], *, window_s: float = 86400.0, sl_threshold_s: float = SL_THRESHOLD_S,
                    short_abandon_s: float = SHORT_ABANDON_S, **kw) -> dict[str, KPI]:
    """The reference: sum the calls' counters, add repeats (``repeats``) and callbacks done, compute.
    ``short_abandon_s`` only words the labels: the facts were made with their own threshold."""
    totals = total_counters(calls, window_s=window_s, sl_threshold_s=sl_threshold_s, **kw)
    return compute_kpis(totals, sl_threshold_s=sl_threshold_s, short_abandon_s=short_abandon_s)
