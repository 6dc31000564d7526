"""Stats for the ops: ``/api/stats`` (KPIs of a period), ``/api/live`` (now), ``/metrics`` (Prometheus).

KPIs come from the hourly/daily rollups (``callbot/stats/rollup.py``), never from raw events,
so a year answers as fast as a day; the formulas are the pure ones of ``callbot/stats/kpis.py``.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web

from callbot.stats.kpis import compute_kpis, intent_table
from callbot.stats.metrics import Metrics
from callbot.stats.rollup import Rollups, by_hour_and_weekday, next_day
from callbot.web import api
from callbot.web.auth import require_role

METRICS = web.AppKey("metrics", Metrics)
ROLLUPS = web.AppKey("rollups", Rollups)
SERIES = {"offered": "offered", "answered": "answered", "resolved": "outcome:resolved_by_bot",
          "agent": "outcome:agent", "bot_abandons": "bot_abandons", "queue_abandons": "queue_abandons",
          "callbacks": "callbacks"}
MAX_DAYS = 3 * 366


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": "bad_request", "message": message}, ensure_ascii=False),
                              content_type="application/json")


def parse_day(raw: str | None, name: str, default: date, tz: tzinfo | None = None) -> datetime:
    """``YYYY-MM-DD`` (or a full ISO time) in the town hall's zone; the start of that day for a bare date."""
    if not raw:
        value = datetime.combine(default, datetime.min.time())
    else:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _bad(f"query parameter {name!r} must be a date like 2026-12-04, got {raw!r}") from None
    if value.tzinfo:
        return value
    return value.replace(tzinfo=tz) if tz else value.astimezone()


def period(request: web.Request) -> tuple[datetime, datetime]:
    """[from, to): ``to`` as a bare date is inclusive (the whole day)."""
    tz = request.app[ROLLUPS].tz
    today = datetime.now(tz).date()
    start = parse_day(request.query.get("from"), "from", today, tz)
    raw_to = request.query.get("to")
    end = parse_day(raw_to, "to", start.date(), tz)
    if not raw_to or len(raw_to) <= 10:
        end = next_day(end)
    if end <= start:
        raise _bad("'to' must not be before 'from'")
    if (end - start).days > MAX_DAYS:
        raise _bad(f"a period is at most {MAX_DAYS} days")
    return start, end


async def stats_payload(request: web.Request) -> dict[str, Any]:
    rt = request.app[api.RUNTIME]
    rollups = request.app[ROLLUPS]
    start, end = period(request)
    service = request.query.get("service") or None
    totals = await rollups.totals(start, end, service)
    step = "hour" if end - start <= timedelta(days=2) else "day"
    fields = list(SERIES.values()) + ([f"hour:{h:02d}:offered" for h in range(24)] if step == "day" else [])
    series = await rollups.series(start, end, step, service, fields)
    by_hour, by_weekday = by_hour_and_weekday(series, step)
    no_match = await rollups.no_match(start, end) if service is None else []
    labels = {name: i.label for name, i in rt.flows.current.spec.intents.items() if getattr(i, "label", "")}
    intents = [{**row, "label": labels.get(row["intent"], row["intent"].replace("_", " ")) if row.get("recognised", True)
                else "Aucune demande reconnue"} for row in intent_table(totals)]
    s = rt.settings
    return {
        "from": start.isoformat(), "to": end.isoformat(), "service": service,
        "timezone": getattr(rollups.tz, "key", None),  # the buckets' days and hours: format dates in it
        "kpis": {name: k.model_dump(exclude={"name"}) for name, k in
                 compute_kpis(totals, sl_threshold_s=s.stats_service_level_secs,
                              short_abandon_s=s.stats_short_abandon_secs).items()},
        "intents": intents,
        "by_hour": by_hour, "by_weekday": by_weekday,
        "series": {"step": step, "points": [
            {"t": int(t.timestamp()), **{name: row.get(field, 0.0) for name, field in SERIES.items()}}
            for t, row in series]},
        "no_match": [{"text": text, "count": n} for text, n in no_match],
        "settings": {"short_abandon_s": s.stats_short_abandon_secs, "sl_threshold_s": s.stats_service_level_secs,
                     "retention_days": s.retention_days},
    }


async def get_stats(request: web.Request) -> web.Response:
    require_role(request, "ops")
    t0 = time.perf_counter()
    payload = await stats_payload(request)
    return web.json_response(payload, headers={"Server-Timing": f"stats;dur={(time.perf_counter() - t0) * 1000:.1f}"})


async def live_payload(request: web.Request) -> dict[str, Any]:
    rt = request.app[api.RUNTIME]
    sb = rt.switchboard
    redis = rt.store.redis
    since = time.time() - 4 * 3600
    ids = await redis.zrangebyscore("callbot:calls", since, "+inf")
    pipe = redis.pipeline(transaction=False)
    for cid in ids:
        pipe.hget(f"callbot:call:{cid}", "status")
    in_progress = sum(1 for status in await pipe.execute() if status == "in_progress")
    queue = await sb.queue.waiting() if sb else []
    agents = {state: 0 for state in ("available", "ringing", "on_call", "wrap_up", "away", "offline")}
    if sb:
        names = [u.name for u in await sb.accounts.list() if u.phone]
        for p in await sb.presence.all(names):
            agents[p.state] += 1
    return {"in_progress": in_progress, "waiting": len(queue), "agents": agents, "queue": queue}


async def get_live(request: web.Request) -> web.Response:
    require_role(request, "ops")
    return web.json_response(await live_payload(request))


async def metrics(request: web.Request) -> web.Response:
    require_role(request, "ops")
    m = request.app[METRICS]
    live = await live_payload(request)
    by_service: dict[str, int] = {}
    for call in live["queue"]:
        by_service[call["service"]] = by_service.get(call["service"], 0) + 1
    m.set_shared(by_service, live["agents"])
    body, content_type = m.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup_routes(app: web.Application) -> None:
    app[METRICS] = Metrics()
    app.router.add_get("/api/stats", get_stats)
    app.router.add_get("/api/live", get_live)
    app.router.add_get("/metrics", metrics)
