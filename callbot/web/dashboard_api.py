"""The ops dashboard's own API: call search, CSV exports (calls, KPIs), the lists the page's filters need.

Figures (KPIs, series, intents, no-match, live counts) come from ``/api/stats`` and ``/api/live``
(``callbot/web/stats_api.py``); this module only adds what reads the call log itself:

- ``GET /api/calls/search``: the call log has no text index, so a search scans the ``callbot:calls``
  sorted set (call id -> start time) over the period, newest first, reading each call's summary
  and events in pipelined batches, and stops at ``limit`` hits or ``SEARCH_SCAN_MAX`` calls (the
  answer says when it was cut short). At town-hall volume (hundreds of calls a day) this is
  a few Redis round trips.
- ``GET /api/calls.csv`` and ``GET /api/stats.csv``: ``;``-separated UTF-8 with a BOM, like
  ``/api/tickets.csv``, so Excel set to French opens them as is (decimal commas for the same
  reason). Every export is written to the audit stream: they carry callers' numbers.

Everything here is ops-only (``require_role``); errors are JSON ``{"error", "message"}``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from callbot import events as ev
from callbot.stats.facts import SHORT_ABANDON_S, CallFacts, call_facts
from callbot.stats.kpis import OUTCOME_LABELS
from callbot.stats.rollup import P as STATS_P
from callbot.store import P
from callbot.web import api
from callbot.web.auth import audit, require_role
from callbot.web.console_api import error
from callbot.web.labels import intent_labels, service_labels

STATS_SERVICES = f"{STATS_P}services"  # every service the statistics have counted calls for
SEARCH_SCAN_MAX = 2000  # calls read per search at most (newest first)
BATCH = 100
MAX_SPAN_DAYS = 400
OUTCOMES: dict[str, str] = OUTCOME_LABELS  # one outcome per call, as the KPIs count it (French labels)
END_REASONS = {"bot_hangup": "fin par l'assistant", "caller_hangup": "l'appelant a raccroché",
               "transferred": "transféré", "error": "erreur", "timeout": "délai dépassé", "rejected": "refusé",
               "watchdog": "arrêté par la surveillance (appel bloqué ou trop long)"}


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# ---- the period (local days, ``to`` inclusive, like /api/stats)
def _day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest("bad_date", f"{name} must be a date YYYY-MM-DD, got {raw!r}") from None


def period(query: Any, *, default_today: bool = True) -> tuple[float, float, date | None, date | None]:
    """(start, end) epoch seconds for ``from``..``to`` local days; today when both are absent
    (or the whole log when ``default_today`` is False)."""
    raw_from, raw_to = query.get("from", "").strip(), query.get("to", "").strip()
    if not raw_from and not raw_to:
        if not default_today:
            return float("-inf"), float("inf"), None, None
        raw_from = raw_to = date.today().isoformat()
    first = _day(raw_from or raw_to, "from")
    last = _day(raw_to or raw_from, "to")
    if last < first:
        raise BadRequest("bad_period", f"'to' ({last}) is before 'from' ({first})")
    if (last - first).days > MAX_SPAN_DAYS:
        raise BadRequest("bad_period", f"a period covers at most {MAX_SPAN_DAYS} days")
    start = datetime.combine(first, datetime.min.time()).astimezone().timestamp()
    end = datetime.combine(last + timedelta(days=1), datetime.min.time()).astimezone().timestamp()
    return start, end, first, last


def _int(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("bad_param", f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest("bad_param", f"{name} must be between {lo} and {hi}")
    return value


# ---- what happened to a call
def facts(events: list[dict[str, Any]], short_abandon_s: float = SHORT_ABANDON_S) -> CallFacts | None:
    """The call's facts as the statistics count them (``callbot.stats.facts``): the outcome shown
    next to a call is the one its KPIs used. None for a call without events."""
    typed = []
    for e in events:
        try:
            typed.append(ev.from_json(e))
        except ValueError:  # an event type this version does not know: skip it, keep the call
            continue
    return call_facts(typed, short_abandon_s=short_abandon_s) if typed else None


def short_abandon_s(request: web.Request) -> float:
    settings = getattr(request.app[api.RUNTIME], "settings", None)
    return float(getattr(settings, "stats_short_abandon_secs", SHORT_ABANDON_S))


def fold(text: str) -> str:
    """Lower case without accents: « Etat civil » finds « état civil »."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def digits(number: str) -> str:
    """Digits of a phone number, +33 6… read as 06… (callers type numbers the French way)."""
    d = re.sub(r"\D", "", number or "")
    if d.startswith("33") and len(d) == 11:
        d = "0" + d[2:]
    return d


def _said(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("text")) for e in events if e.get("type") in ("transcript", "intent", "emergency")
            and e.get("text")]


def match(q: str, row: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """What matched (the number, or the caller's sentence; "" for another field), or None.

    A query of digits (with spaces, dots or +) is a phone number: it matches the digits of the
    caller's number. Otherwise every word must appear in the call id, number, intent (name or
    label), service, agent, end reason, outcome, or in what the caller said."""
    q = q.strip()
    if not q:
        return ""
    if re.fullmatch(r"[\d\s.+()-]+", q):
        wanted = digits(q)
        return row["caller"] if wanted and wanted in digits(row["caller"]) else None
    words = fold(q).split()
    fields = [row[k] for k in ("id", "caller", "intent", "intent_label", "service", "service_label", "agent",
                               "end_reason", "outcome_label", "emergency")]
    fields += [END_REASONS.get(row["end_reason"], "")]
    fields += [e.get("intent") or "" for e in events if e.get("type") == "intent"]
    said = _said(events)
    haystack = fold(" ".join(str(f or "") for f in [*fields, *said]))
    if not all(w in haystack for w in words):
        return None
    for sentence in said:  # show the caller's sentence when that is what matched
        if any(w in fold(sentence) for w in words):
            return sentence
    return ""


async def scan_calls(redis: Any, start: float, end: float, cap: int) -> AsyncIterator[tuple[dict, list[dict]]]:
    """(summary, events) of the calls started in [start, end), newest first, ``cap`` at most."""
    lo = "-inf" if start == float("-inf") else start
    hi = "+inf" if end == float("inf") else f"({end}"
    seen = 0
    while seen < cap:
        ids = await redis.zrevrangebyscore(f"{P}calls", hi, lo, start=seen, num=min(BATCH, cap - seen))
        if not ids:
            return
        seen += len(ids)
        pipe = redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(f"{P}call:{cid}")
            pipe.lrange(f"{P}call:{cid}:events", 0, -1)
        res = await pipe.execute()
        for cid, summary, raw in zip(ids, res[::2], res[1::2]):
            if not summary and not raw:
                continue  # expired between the index and the hash
            events = []
            for r in raw:
                try:
                    events.append(json.loads(r))
                except ValueError:
                    continue
            row = {"id": cid, **summary}
            for k in ("started", "answered", "ended", "duration_s"):
                if k in row:
                    row[k] = float(row[k])
            yield row, events
        if len(ids) < BATCH:
            return


def call_row(summary: dict[str, Any], events: list[dict[str, Any]], intents: dict[str, str],
             services: dict[str, str], short_abandon: float = SHORT_ABANDON_S) -> dict[str, Any]:
    """A call as the search list, the CSV and the call page show it (outcome as the KPIs count it)."""
    f = facts(events, short_abandon)
    oc = f.outcome if f is not None else ("in_progress" if summary.get("status") != "ended" else "error")
    intent = (f.first_intent if f is not None else "") or summary.get("last_intent", "")
    service = (f.service if f is not None else "") or summary.get("service") or summary.get("transfer_target") or ""
    duration = f.duration_s if f is not None and f.ended is not None else summary.get("duration_s")
    return {"id": summary["id"], "started": summary.get("started"), "ended": summary.get("ended"),
            "duration_s": duration, "channel": summary.get("channel", ""),
            "caller": summary.get("caller", ""), "intent": intent, "intent_label": intents.get(intent, ""),
            "service": service, "service_label": services.get(service, service), "outcome": oc,
            "outcome_label": OUTCOMES.get(oc, oc), "end_reason": summary.get("end_reason", ""),
            "agent": summary.get("agent", ""), "queue_wait_s": f.queue_wait_s if f is not None else None,
            "emergency": summary.get("emergency", "")}


# ---- handlers
def _bad(e: BadRequest) -> web.Response:
    return error(400, e.code, e.message)


async def search_calls(request: web.Request) -> web.Response:
    """``?q=&from=&to=&outcome=&limit=``: the newest matching calls, each with a link to its page."""
    require_role(request, "ops")
    q = request.query.get("q", "")[:200]
    wanted = request.query.get("outcome", "")
    if wanted and wanted not in OUTCOMES:
        return error(400, "bad_outcome", f"outcome must be one of {', '.join(OUTCOMES)} (got {wanted!r})")
    try:
        start, end, _, _ = period(request.query, default_today=False)
        limit = _int(request.query, "limit", 50, 1, 500)
    except BadRequest as e:
        return _bad(e)
    intents, services = intent_labels(request), service_labels(request)
    redis = request.app[api.RUNTIME].store.redis
    sa = short_abandon_s(request)
    found, scanned = [], 0
    async for summary, events in scan_calls(redis, start, end, SEARCH_SCAN_MAX):
        scanned += 1
        row = call_row(summary, events, intents, services, sa)
        hit = match(q, row, events)
        if hit is None:
            continue
        if wanted and row["outcome"] != wanted:
            continue
        found.append({**row, "matched": hit, "href": f"/dashboard/calls/{summary['id']}"})
        if len(found) >= limit:
            break
    total = await redis.zcount(f"{P}calls", "-inf" if start == float("-inf") else start,
                               "+inf" if end == float("inf") else f"({end}")
    return web.json_response({"calls": found, "scanned": scanned, "in_period": total,
                              "truncated": len(found) < limit and scanned < total},
                             headers={"Cache-Control": "no-store"})


def _num(value: Any) -> str:
    """A number for French Excel: decimal comma, no exponent; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".").replace(".", ",")
    return str(value)


def _when(ts: Any) -> str:
    return datetime.fromtimestamp(float(ts)).astimezone().isoformat(timespec="seconds") if ts else ""


def _csv_response(rows: list[list[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    csv.writer(out, delimiter=";").writerows(rows)
    return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "Cache-Control": "no-store"})


def _span(first: date, last: date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()}_{last.isoformat()}"


CALLS_HEADER = ["id", "debut", "fin", "duree_s", "canal", "appelant", "theme", "service", "issue",
                "motif_fin", "agent", "attente_s", "urgence"]


async def calls_csv(request: web.Request) -> web.Response:
    """One row per call started in the period (oldest first, as a spreadsheet is read)."""
    user = require_role(request, "ops")
    try:
        start, end, first, last = period(request.query)
    except BadRequest as e:
        return _bad(e)
    intents, services = intent_labels(request), service_labels(request)
    redis = request.app[api.RUNTIME].store.redis
    sa = short_abandon_s(request)
    rows = []
    async for summary, events in scan_calls(redis, start, end, 1_000_000):
        r = call_row(summary, events, intents, services, sa)
        rows.append([r["id"], _when(r["started"]), _when(r["ended"]), _num(round(r["duration_s"] or 0)),
                     r["channel"], r["caller"], r["intent_label"] or r["intent"], r["service"], r["outcome_label"],
                     r["end_reason"], r["agent"],
                     _num(round(r["queue_wait_s"])) if r["queue_wait_s"] is not None else "", r["emergency"]])
    rows.reverse()
    await audit(redis, "export", user.name, request.remote or "",
                f"calls.csv {first}..{last} {len(rows)} rows")
    return _csv_response([CALLS_HEADER, *rows], f"appels_{_span(first, last)}.csv")


STATS_HEADER = ["nom", "libelle", "valeur", "numerateur", "denominateur", "unite", "definition"]


async def stats_csv(request: web.Request) -> web.Response:
    """One row per KPI of the period: the very payload of ``/api/stats`` (same figures, same definitions)."""
    user = require_role(request, "ops")
    try:
        _, _, first, last = period(request.query)
    except BadRequest as e:
        return _bad(e)
    try:
        from callbot.web.stats_api import stats_payload
    except ImportError as e:  # the statistics package is missing or broken: say so rather than 500
        return error(503, "stats_unavailable", f"statistics unavailable: {e}")
    payload = await stats_payload(request)
    service = payload.get("service")
    rows = [[name, k.get("label"), _num(k.get("value")), _num(k.get("numerator")), _num(k.get("denominator")),
             k.get("unit"), k.get("definition")] for name, k in payload["kpis"].items()]
    await audit(request.app[api.RUNTIME].store.redis, "export", user.name, request.remote or "",
                f"stats.csv {first}..{last} service={service or '*'} {len(rows)} rows")
    suffix = "_" + re.sub(r"[^\w-]", "_", service) if service else ""
    return _csv_response([STATS_HEADER, *rows], f"indicateurs_{_span(first, last)}{suffix}.csv")


async def meta(request: web.Request) -> web.Response:
    """What the dashboard's filters list: services (the flow's, and any the statistics counted), outcomes,
    who is logged in."""
    user = require_role(request, "ops")
    labels = dict(service_labels(request))
    for name in await request.app[api.RUNTIME].store.redis.smembers(STATS_SERVICES):
        labels.setdefault(name, name.replace("_", " "))  # counted once, since removed from the flow
    services = [{"name": n, "label": labels[n]} for n in sorted(labels, key=lambda n: fold(labels[n]))]
    return web.json_response({
        "me": {"name": user.name, "display_name": user.display_name or user.name, "role": user.role},
        "services": services,
        "outcomes": [{"name": k, "label": v} for k, v in OUTCOMES.items()],
        "search_scan_max": SEARCH_SCAN_MAX,
    }, headers={"Cache-Control": "no-store"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls/search", search_calls)  # a plain path: resolved before /api/calls/{call_id}
    app.router.add_get("/api/calls.csv", calls_csv)
    app.router.add_get("/api/stats.csv", stats_csv)
    app.router.add_get("/api/dashboard/meta", meta)
