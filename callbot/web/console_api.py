"""The agents' console JSON API: queue, offers, presence, callbacks, tickets of one's services.

Every route sits behind the global auth middleware (``callbot/web/auth.py``); here we only
narrow what a user sees to their services (ops see everything). The switchboard state
itself lives in Redis (``callbot/switchboard``) so whichever worker serves the console
sees the calls waiting on every worker.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from callbot import events as ev
from callbot.switchboard.accounts import Accounts, User
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.presence import P, SETTABLE, Presence
from callbot.switchboard.queue import CallQueue, WaitingCall
from callbot.web import api
from callbot.web.auth import current_user, visible_services
from callbot.web.labels import intent_labels, service_labels, ticket_service  # noqa: F401 (re-exported)

NOTE_MAX = 2000  # a callback note is a sentence or two, not a file
TICKETS_SHOWN = 50
OFFER_KEY_MARGIN_S = 5  # CallQueue.offer keeps offer:{agent} ring_s + 5 s


def error(status: int, code: str, message: str) -> web.Response:
    """Errors as JSON ``{"error": code, "message": text}`` so the console can show the text as is."""
    return web.json_response({"error": code, "message": message}, status=status)


def sb(request: web.Request) -> Any:
    """The switchboard objects (``.queue``, ``.presence``, ``.callbacks``, ``.accounts``).

    Prefers ``rt.switchboard`` (built once by the server); falls back to objects over the
    store's Redis so the console works on a runtime that does not build one (tests, older wiring).
    """
    rt = request.app[api.RUNTIME]
    found = getattr(rt, "switchboard", None)
    if found is not None:
        return found
    redis = rt.store.redis
    return SimpleNamespace(queue=CallQueue(redis), presence=Presence(redis), callbacks=Callbacks(redis),
                           accounts=Accounts(redis))


def _sees(visible: set[str] | None, service: str) -> bool:
    return visible is None or service in visible


def queue_row(row: dict[str, Any], labels: dict[str, str], intents: dict[str, str]) -> dict[str, Any]:
    """A waiting call for the queue table: no transcript (the offer card carries the full context)."""
    keep = ("call_id", "position", "wait_s", "service", "channel", "caller", "intent", "summary", "state",
            "agent", "priority", "entered")
    out = {k: row.get(k) for k in keep}
    out["service_label"] = row.get("service_label") or labels.get(row["service"], row["service"])
    out["intent_label"] = intents.get(row.get("intent") or "", "")
    return out


async def offer_view(request: web.Request, agent: str) -> dict[str, Any] | None:
    """The call offered to ``agent`` with everything the bot gathered, or None."""
    s = sb(request)
    call: WaitingCall | None = await s.queue.offered_to(agent)
    if call is None or call.agent != agent:
        return None
    now = time.time()
    ttl = await request.app[api.RUNTIME].store.redis.ttl(f"{P}offer:{agent}")
    view = call.view(await s.queue.position(call), now)
    view["service_label"] = call.service_label or service_labels(request).get(call.service, call.service)
    view["intent_label"] = intent_labels(request).get(call.intent, "")
    view["ring_s"] = round(max(0.0, now - call.offered_at), 1) if call.offered_at else 0.0
    view["ring_left_s"] = max(0, int(ttl) - OFFER_KEY_MARGIN_S) if ttl and ttl > 0 else None
    return view


async def colleagues(request: web.Request, user: User, visible: set[str] | None) -> list[dict[str, Any]]:
    """Agents sharing at least one of the user's services (ops: every agent), with their presence."""
    s = sb(request)
    users = []
    for u in await s.accounts.list():
        if u.role == "ops" and not u.services:
            continue  # a supervisor without a service takes no calls
        if u.name == user.name or visible is None or "*" in u.services or set(u.services) & visible:
            users.append(u)
    now = time.time()
    states = await s.presence.all([u.name for u in users], now)
    return [{"name": u.name, "display_name": u.display_name or u.name, "services": u.services,
             "state": p.state, "for_s": p.to_dict(now)["for_s"]} for u, p in zip(users, states)]


def callback_row(cb: Any, labels: dict[str, str], now: float) -> dict[str, Any]:
    return {**cb.model_dump(), "service_label": labels.get(cb.service, cb.service),
            "age_s": round(max(0.0, now - cb.created), 1)}


async def visible_tickets(request: web.Request, visible: set[str] | None,
                          labels: dict[str, str]) -> list[dict[str, Any]]:
    """Recent tickets of the user's services (newest first)."""
    tickets = await request.app[api.RUNTIME].store.list_tickets(500, 0)
    out = []
    for t in tickets:
        service = ticket_service(t, labels)
        if _sees(visible, service):
            out.append({**t, "service": service, "service_label": labels.get(service, service)})
        if len(out) >= TICKETS_SHOWN:
            break
    return out


# ---- handlers
async def get_queue(request: web.Request) -> web.Response:
    visible = visible_services(request)
    labels, intents = service_labels(request), intent_labels(request)
    rows = await sb(request).queue.waiting(visible)
    return web.json_response({"calls": [queue_row(r, labels, intents) for r in rows]},
                             headers={"Cache-Control": "no-store"})


async def get_state(request: web.Request) -> web.Response:
    """Everything the console shows, in one round trip (it reloads this on each live event)."""
    user = current_user(request)
    visible = visible_services(request)
    s = sb(request)
    labels, intents = service_labels(request), intent_labels(request)
    now = time.time()
    presence = await s.presence.get(user.name, now)
    queue = [queue_row(r, labels, intents) for r in await s.queue.waiting(visible, now)]
    callbacks = [callback_row(cb, labels, now) for cb in await s.callbacks.list(visible, status="open")]
    names = sorted(labels) if visible is None else sorted(visible)
    for row in queue:  # a queue may exist for a service the flow no longer names
        if row["service"] not in names:
            names.append(row["service"])
    me = {**user.model_dump(exclude={"created"}), "presence": presence.state,
          "presence_for_s": presence.to_dict(now)["for_s"]}
    return web.json_response({
        "now": now,
        "me": me,
        "services": [{"name": n, "label": labels.get(n, n)} for n in names],
        "offer": await offer_view(request, user.name),
        "queue": queue,
        "callbacks": callbacks,
        "agents": await colleagues(request, user, visible),
        "tickets": await visible_tickets(request, visible, labels),
    }, headers={"Cache-Control": "no-store"})


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "bad_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return error(400, "bad_json", "the body must be a JSON object")
    return body


async def set_presence(request: web.Request) -> web.Response:
    """The agent's own choice (available / away / offline); ringing, on_call and wrap_up are the switchboard's.

    Leaving ``available`` while a call is offered declines that offer at once, so the caller
    goes to the next agent instead of ringing an empty desk until the offer times out.
    """
    user = current_user(request)
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    state = body.get("state")
    if state not in SETTABLE:
        return error(400, "bad_state", f"state must be one of {', '.join(SETTABLE)} (got {state!r}); "
                                       "ringing, on_call and wrap_up are set by the switchboard")
    s = sb(request)
    await s.presence.set(user.name, state)
    if state != "available":
        offered = await s.queue.offered_to(user.name)
        if offered is not None:
            await s.queue.answer(user.name, offered.call_id, False)
    return web.json_response({"ok": True, "state": state})


async def _answer(request: web.Request, accept: bool) -> web.Response:
    user = current_user(request)
    call_id = request.match_info["call_id"]
    if not await sb(request).queue.answer(user.name, call_id, accept):
        return error(409, "offer_expired", "Cet appel ne vous est plus proposé (délai dépassé, appelant raccroché "
                                           "ou appel pris par un collègue).")
    return web.json_response({"ok": True})


async def accept_offer(request: web.Request) -> web.Response:
    return await _answer(request, True)


async def decline_offer(request: web.Request) -> web.Response:
    return await _answer(request, False)


async def close_callback(request: web.Request) -> web.Response:
    """Record a callback attempt; the outcome also goes to the original call's event log."""
    user = current_user(request)
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    outcome, note = body.get("outcome"), body.get("note", "")
    if outcome not in ("done", "no_answer"):
        return error(400, "bad_outcome", f"outcome must be 'done' or 'no_answer' (got {outcome!r})")
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        return error(400, "bad_note", f"note must be a text of at most {NOTE_MAX} characters")
    s = sb(request)
    cb = await s.callbacks.get(request.match_info["id"])
    if cb is None:
        return error(404, "not_found", "no such callback request")
    if not user.can_see(cb.service):
        return error(403, "forbidden", f"this callback belongs to the service {cb.service!r}, not one of yours")
    cb = await s.callbacks.close(cb.id, outcome, agent=user.name, note=note.strip())
    if cb is None:  # deleted in between
        return error(404, "not_found", "no such callback request")
    if cb.call_id:
        rt = request.app[api.RUNTIME]
        rt.store.emit(ev.stamp(ev.CallbackDone(callback_id=cb.id, outcome=outcome, agent=user.name,
                                               note=note.strip()), cb.call_id))
    return web.json_response({"ok": True, "callback": cb.model_dump()})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/queue", get_queue)
    app.router.add_get("/api/console/state", get_state)
    app.router.add_post("/api/console/presence", set_presence)
    app.router.add_post("/api/console/offers/{call_id}/accept", accept_offer)
    app.router.add_post("/api/console/offers/{call_id}/decline", decline_offer)
    app.router.add_post("/api/callbacks/{id}", close_callback)
