"""JSON API: health, recent calls, one call with its events, tickets.

Agents see the calls and tickets of their services only (a call belongs to the service whose
queue it entered, or to which the flow transferred it); ops see everything and export.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from aiohttp import web

from callbot.web.appkeys import RUNTIME
from callbot.web.auth import audit, current_user, require_role, visible_services
from callbot.web.labels import service_labels, ticket_service
from callbot.workers import WORKER


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name!r} must be an integer, got {raw!r}\n") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"query parameter {name!r} must be between {lo} and {hi}\n")
    return value


async def healthz(request: web.Request) -> web.Response:
    """Open (nginx, compose and systemd health checks): 200 while the worker takes calls; 503 while it
    starts or drains (``{"status": "draining", "state": "draining"}``: send new calls elsewhere)."""
    rt = request.app.get(RUNTIME)
    worker = request.app.get(WORKER)
    me = {"worker": worker.id, "state": worker.state} if worker is not None else {}
    if rt is None or not rt.ready:
        return web.json_response({"status": "starting", **me, "state": "starting"}, status=503)
    if worker is not None and worker.draining:
        return web.json_response({"status": "draining", **me, "active_calls": worker.active_calls()}, status=503)
    redis_ok = await rt.store.ping()
    return web.json_response({
        "status": "ok",
        **me,
        "redis": redis_ok,
        "events_pending": rt.store.pending,
        "active_calls": len(rt.active_calls),
        "voice": f"{rt.voice.engine}:{rt.voice.name}",
        "flow": rt.flows.current.name,
        "flow_version": rt.flows.current.version,
    })


async def list_calls(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit = _int(request, "limit", 50, 1, 1000)
    offset = _int(request, "offset", 0, 0, 1_000_000)
    visible = visible_services(request)
    if visible is None:
        return web.json_response({"calls": await rt.store.list_calls(limit, offset)})
    calls, skipped, start = [], 0, 0
    while len(calls) < limit and start < SCAN_MAX:  # the newest calls of the agent's services
        page = await rt.store.list_calls(500, start)
        if not page:
            break
        start += 500
        for row in page:
            if _call_visible(row, visible):
                if skipped < offset:
                    skipped += 1
                elif len(calls) < limit:
                    calls.append(row)
    return web.json_response({"calls": calls})


SCAN_MAX = 20_000


def _call_visible(row: dict, visible: set[str] | None) -> bool:
    return visible is None or bool({row.get("service"), row.get("transfer_target")} & visible)


async def get_call(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    call = await rt.store.get_call(request.match_info["call_id"])
    if call is None or not _call_visible(call, visible_services(request)):
        raise web.HTTPNotFound(text="no such call\n")
    return web.json_response(call)


async def list_tickets(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit = _int(request, "limit", 100, 1, 1000)
    offset = _int(request, "offset", 0, 0, 1_000_000)
    visible = visible_services(request)
    if visible is None:
        return web.json_response({"tickets": await rt.store.list_tickets(limit, offset)})

    labels = service_labels(request)
    mine = [t for t in await rt.store.list_tickets(SCAN_MAX // 4, 0) if ticket_service(t, labels) in visible]
    return web.json_response({"tickets": mine[offset: offset + limit]})


async def tickets_csv(request: web.Request) -> web.Response:
    """Tickets as CSV for the town's services (one row per report, fields flattened)."""
    require_role(request, "ops")
    rt = request.app[RUNTIME]
    tickets = await rt.store.list_tickets(_int(request, "limit", 1000, 1, 100_000), 0)
    field_names = sorted({k for t in tickets for k in t.get("fields", {})})
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(["id", "date", "kind", "status", "call_id", "node", *field_names])
    for t in tickets:
        when = datetime.fromtimestamp(t["ts"]).astimezone().isoformat(timespec="seconds")
        values = [t["fields"].get(k, "") for k in field_names]
        writer.writerow([t["id"], when, t["kind"], t.get("status", ""), t["call_id"], t.get("node", ""),
                         *[v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]])
    await audit(rt.store.redis, "export", current_user(request).name, request.remote or "",
                f"tickets.csv {len(tickets)} rows")
    return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"),  # BOM: Excel opens it as UTF-8
                        content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="tickets.csv"'})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets.csv", tickets_csv)
