"""The ops dashboard (``GET /dashboard``) and the page of one call (``GET /dashboard/calls/{id}``).

For the town hall's manager, not for engineers: every figure on screen comes with its
numerator, denominator and French definition (contact-centre-kpis.md, "What the dashboard
must state"). Same build as the agents' console: static HTML + a script + the vendored CSP
build of Alpine.js, and Chart.js (vendored, set up in ``dashboard.js``: no inline script,
the page runs under ``default-src 'self'``). The figures come from ``/api/stats`` and
``/api/live``; search and exports from ``dashboard_api``.

The call page reads ``/api/dashboard/calls/{id}``: the call's events turned here into what a
person reads (a timeline with offsets and French labels, the conversation, the path through
the queue, tickets and callback), so the script only lays it out and the rules stay testable.

Both pages are for the ``ops`` role: an agent gets a 403 page pointing to the console.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from callbot.store import P
from callbot.web import api, console, dashboard_api
from callbot.web.auth import current_user, require_role
from callbot.web.console_api import error, sb
from callbot.web.labels import intent_labels, service_labels

STATIC_DIR = console.STATIC_DIR
PAGE_HEADERS = console.PAGE_HEADERS  # default-src 'self': scripts and styles from /static only

FORBIDDEN_HTML = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/common.css?v={v}">
<link rel="stylesheet" href="/static/dashboard.css?v={v}">
<title>Accès réservé — standard</title>
</head>
<body>
<main class="narrow">
<section class="panel denied" role="alert">
<h1>Accès réservé à la supervision</h1>
<p>Le tableau de bord et le journal des appels sont réservés aux comptes « supervision ».
Vous êtes connecté(e) en tant que <strong>{name}</strong> (agent).</p>
<p><a class="btn-link" href="/console">Aller à la console des agents</a></p>
</section>
</main>
</body>
</html>
"""


def _asset_version() -> str:
    return console.asset_version("dashboard.js", "dashboard.css", "call.js")


def _page(request: web.Request, filename: str) -> web.Response:
    user = current_user(request)  # the middleware already sent anonymous browsers to /login
    if user.role != "ops":
        body = FORBIDDEN_HTML.format(v=_asset_version(), name=html.escape(user.display_name or user.name))
        return web.Response(text=body, status=403, content_type="text/html", headers=PAGE_HEADERS)
    text = (STATIC_DIR / filename).read_text(encoding="utf-8").replace("__V__", _asset_version())
    return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)


async def dashboard_page(request: web.Request) -> web.Response:
    return _page(request, "dashboard.html")


async def call_page(request: web.Request) -> web.Response:
    return _page(request, "call.html")


# ---- one call, as a person reads it
EVENT_LABELS = {
    "call_started": "Début de l'appel", "call_answered": "Décroché par l'assistant", "call_ended": "Fin de l'appel",
    "transcript": "L'appelant dit", "digits": "Touches du clavier", "node": "Étape du parcours",
    "intent": "Thème reconnu", "no_input": "Pas de réponse", "slot": "Information recueillie",
    "bot_said": "L'assistant dit", "latency": "Temps de réponse", "ticket": "Signalement créé",
    "transfer": "Transfert", "emergency": "Urgence", "survey": "Satisfaction", "error": "Erreur",
    "queued": "Mis en attente", "agent_offered": "Proposé à un agent", "agent_answered": "Accepté par l'agent",
    "agent_declined": "Non pris par l'agent", "agent_connected": "En communication avec l'agent",
    "queue_left": "Sorti de l'attente", "abandoned": "Raccroché pendant l'attente",
    "callback_requested": "Rappel demandé", "callback_done": "Rappel traité",
    "keypad_fallback": "Passage au clavier", "overload": "Surcharge", "fault": "Incident technique",
    "degraded": "Mode dégradé (charge)",
}
TECHNICAL = {"node", "latency", "slot"}  # hidden unless the manager asks for details
DECLINE_CAUSES = {"declined": "refusé", "timeout": "pas de réponse à temps", "no_answer": "pas de réponse",
                  "busy": "occupé", "failed": "échec de l'appel"}
LEFT_CAUSES = {"callback_key": "a demandé à être rappelé", "max_wait": "attente maximale atteinte",
               "no_agent": "aucun agent connecté", "closed": "service fermé"}
TRANSFER_OUTCOMES = {"requested": "demandé", "announced": "annoncé", "connected": "mis en relation",
                     "failed": "échec"}
CALLBACK_SLOTS = {"matin": "le matin", "apres_midi": "l'après-midi", "indifferent": "indifférent", "": ""}


def _secs(value: Any) -> str:
    s = max(0, round(float(value or 0)))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d}"


def _dec(value: float, digits: int) -> str:
    """``1.5`` -> ``"1,50"``: French decimal comma."""
    return f"{value:.{digits}f}".replace(".", ",")


def _detail(e: dict[str, Any], names: dict[str, str], intents: dict[str, str], services: dict[str, str]) -> str:
    """The key fields of one event, in French."""
    t = e.get("type")
    who = names.get(e.get("agent", ""), e.get("agent", ""))
    svc = services.get(e.get("service", ""), e.get("service", ""))
    if t == "call_started":
        return f"{e.get('caller') or 'numéro masqué'} → {e.get('called') or '?'} ({e.get('channel')})"
    if t == "call_answered" and e.get("greeting_latency_ms") is not None:
        return f"accueil en {_dec(e['greeting_latency_ms'] / 1000, 1)} s"
    if t == "call_ended":
        return dashboard_api.END_REASONS.get(e.get("reason", ""), e.get("reason", "")) + \
            (f" · {_secs(e.get('duration_s'))}" if e.get("duration_s") else "")
    if t in ("transcript", "bot_said"):
        return e.get("text", "")
    if t == "digits":
        return e.get("digits", "")
    if t == "node":
        return e.get("node", "")
    if t == "intent":
        if not e.get("intent"):
            return f"non compris : « {e.get('text', '')} »"
        return f"{intents.get(e['intent'], e['intent'])} (confiance {round(100 * (e.get('confidence') or 0))} %)"
    if t == "no_input":
        return "rien entendu" if e.get("kind") == "no_input" else "non compris"
    if t == "slot":
        return f"{e.get('slot')} = {e.get('value')}"
    if t == "latency" and e.get("voice_to_voice_ms") is not None:
        return f"voix-à-voix {_dec(e['voice_to_voice_ms'] / 1000, 2)} s"
    if t == "ticket":
        return f"{e.get('kind', '')} n° {e.get('ticket_id', '')}"
    if t == "transfer":
        return f"vers {services.get(e.get('target', ''), e.get('target', ''))} · " \
               f"{TRANSFER_OUTCOMES.get(e.get('outcome', ''), e.get('outcome', ''))}"
    if t == "emergency":
        return f"numéro {e.get('number')} · {e.get('text') or e.get('reason') or ''}".rstrip(" ·")
    if t == "survey":
        return f"note {e.get('score')}"
    if t == "error":
        return f"{e.get('stage', '')} {e.get('code', '')} : {e.get('message', '')}".strip()
    if t == "queued":
        return f"{svc} · position {e.get('position')}" + (" (reprise en tête)" if e.get("resumed") else "")
    if t == "agent_offered":
        return who
    if t == "agent_answered":
        return f"{who} · après {_secs(e.get('wait_s'))} d'attente"
    if t == "agent_declined":
        return f"{who} · {DECLINE_CAUSES.get(e.get('cause', ''), e.get('cause', ''))}"
    if t == "agent_connected":
        return who + (f" · {_secs(e['talk_s'])} de conversation" if e.get("talk_s") is not None else "")
    if t == "queue_left":
        return f"{LEFT_CAUSES.get(e.get('cause', ''), e.get('cause', ''))} · après {_secs(e.get('wait_s'))}"
    if t == "abandoned":
        return f"après {_secs(e.get('wait_s'))} d'attente · position {e.get('position')}"
    if t == "callback_requested":
        slot = CALLBACK_SLOTS.get(e.get("slot", ""), e.get("slot", ""))
        return f"{e.get('number')} · {svc}" + (f" · {slot}" if slot else "")
    if t == "callback_done":
        return ("fait" if e.get("outcome") == "done" else "pas de réponse") + (f" par {who}" if who else "") + \
            (f" · {e['note']}" if e.get("note") else "")
    if t == "degraded":
        return {"brief": "messages abrégés", "greedy": "reconnaissance allégée"}.get(e.get("step", ""), "")
    if t in ("keypad_fallback", "overload"):
        return e.get("detail") or e.get("reason") or e.get("what") or ""
    if t == "fault":
        stage = {"asr": "reconnaissance vocale", "tts": "synthèse vocale"}.get(e.get("stage", ""), e.get("stage", ""))
        return f"{stage} · {'délai dépassé' if e.get('kind') == 'timeout' else 'erreur'} · {e.get('detail', '')}"
    return ""


def transfer_path(events: list[dict[str, Any]], names: dict[str, str], services: dict[str, str],
                  t0: float) -> list[dict[str, Any]]:
    """queued -> offered to X -> declined / answered -> connected (talk time) -> or abandoned / left."""
    steps = []
    for e in events:
        t, who = e.get("type"), names.get(e.get("agent", ""), e.get("agent", ""))
        if t == "transfer" and e.get("target"):
            label = f"Transfert demandé vers {services.get(e['target'], e['target'])}"
        elif t == "queued":
            label = f"En attente pour {services.get(e['service'], e['service'])} (position {e.get('position')})"
        elif t == "agent_offered":
            label = f"Proposé à {who}"
        elif t == "agent_declined":
            cause = DECLINE_CAUSES.get(e.get("cause", ""), e.get("cause"))
            label = f"{who} : {cause} (sonnerie {_secs(e.get('ring_s'))})"
        elif t == "agent_answered":
            label = f"Accepté par {who} après {_secs(e.get('wait_s'))} d'attente"
        elif t == "agent_connected":
            talk = f" — {_secs(e['talk_s'])} de conversation" if e.get("talk_s") is not None else ""
            label = f"En communication avec {who}{talk}"
        elif t == "abandoned":
            label = f"L'appelant a raccroché après {_secs(e.get('wait_s'))} d'attente"
        elif t == "queue_left":
            label = f"Sorti de l'attente : {LEFT_CAUSES.get(e.get('cause', ''), e.get('cause'))}"
        elif t == "callback_requested":
            label = f"Rappel demandé au {e.get('number')}"
        else:
            continue
        steps.append({"type": t, "label": label, "at": _offset(e.get("ts"), t0)})
    return steps


def _offset(ts: Any, t0: float) -> str:
    """``+m:ss`` since the call started."""
    s = max(0, int(round(float(ts or t0) - t0)))
    return f"+{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"+{s // 60}:{s % 60:02d}"


def call_view(call: dict[str, Any], names: dict[str, str], intents: dict[str, str], services: dict[str, str],
              tickets: dict[str, dict[str, Any]], callbacks: dict[str, dict[str, Any]],
              short_abandon_s: float = dashboard_api.SHORT_ABANDON_S) -> dict[str, Any]:
    """Everything the call page shows, from ``EventStore.get_call`` plus the tickets' and callbacks' records."""
    events = sorted(call.get("events", []), key=lambda e: e.get("ts", 0))
    summary = {k: v for k, v in call.items() if k != "events"}
    t0 = float(summary.get("started") or (events[0].get("ts") if events else 0) or 0)
    row = dashboard_api.call_row(summary, events, intents, services, short_abandon_s)
    timeline = [{"at": _offset(e.get("ts"), t0), "type": e.get("type"),
                 "label": EVENT_LABELS.get(e.get("type", ""), e.get("type", "")),
                 "detail": _detail(e, names, intents, services), "technical": e.get("type") in TECHNICAL,
                 "cls": "ev-" + str(e.get("type"))} for e in events]
    transcript = [{"who": "bot" if e["type"] == "bot_said" else "caller", "text": e.get("text", ""),
                   "at": _offset(e.get("ts"), t0)}
                  for e in events if e.get("type") in ("bot_said", "transcript") and e.get("text")]
    tks = []
    for e in events:
        if e.get("type") == "ticket":
            stored = tickets.get(e.get("ticket_id", "")) or {}
            tks.append({"id": e.get("ticket_id", ""), "kind": e.get("kind", ""), "fields": e.get("fields") or {},
                        "status": stored.get("status", "open"), "at": _offset(e.get("ts"), t0)})
    cbs = []
    for e in events:
        if e.get("type") == "callback_requested":
            stored = callbacks.get(e.get("callback_id", "")) or {}
            agent = stored.get("agent", "")
            cbs.append({"id": e.get("callback_id", ""), "number": e.get("number", ""),
                        "service": services.get(e.get("service", ""), e.get("service", "")),
                        "slot": CALLBACK_SLOTS.get(e.get("slot", ""), e.get("slot", "")), "reason": e.get("reason"),
                        "status": stored.get("status", "open"), "attempts": stored.get("attempts", 0),
                        "note": stored.get("note", ""), "agent": names.get(agent, agent),
                        "at": _offset(e.get("ts"), t0)})
    emergencies = [{"number": e.get("number"), "text": e.get("text", ""), "reason": e.get("reason", ""),
                    "at": _offset(e.get("ts"), t0)} for e in events if e.get("type") == "emergency"]
    v2v = [e["voice_to_voice_ms"] / 1000 for e in events if e.get("type") == "latency" and e.get("voice_to_voice_ms")]
    survey = next((e.get("score") for e in events if e.get("type") == "survey"), None)
    return {**row, "agent_name": names.get(row["agent"], row["agent"]), "called": summary.get("called", ""),
            "flow": summary.get("flow", ""), "flow_version": summary.get("flow_version", ""),
            "timeline": timeline, "transcript": transcript, "tickets": tks, "callbacks": cbs,
            "emergencies": emergencies, "transfer_path": transfer_path(events, names, services, t0),
            "latency": {"turns": len(v2v), "max_s": max(v2v) if v2v else None,
                        "mean_s": sum(v2v) / len(v2v) if v2v else None},
            "survey": survey}


async def call_detail(request: web.Request) -> web.Response:
    """``GET /api/dashboard/calls/{id}``: the call page's data (ops)."""
    require_role(request, "ops")
    rt = request.app[api.RUNTIME]
    call_id = request.match_info["call_id"]
    call = await rt.store.get_call(call_id)
    if call is None:
        return error(404, "not_found", f"Aucun appel {call_id!r} dans le journal (effacé après la durée de "
                                       "conservation, ou identifiant erroné).")
    redis = rt.store.redis
    ticket_ids = [e.get("ticket_id") for e in call["events"] if e.get("type") == "ticket" and e.get("ticket_id")]
    tickets: dict[str, dict[str, Any]] = {}
    if ticket_ids:
        for tid, raw in zip(ticket_ids, await redis.mget([f"{P}ticket:{t}" for t in ticket_ids])):
            if raw:
                tickets[tid] = json.loads(raw)
    s = sb(request)
    callbacks = {}
    for e in call["events"]:
        if e.get("type") == "callback_requested" and e.get("callback_id"):
            cb = await s.callbacks.get(e["callback_id"])
            if cb is not None:
                callbacks[cb.id] = cb.model_dump()
    names = {u.name: u.display_name or u.name for u in await s.accounts.list()}
    view = call_view(call, names, intent_labels(request), service_labels(request), tickets, callbacks,
                     dashboard_api.short_abandon_s(request))
    return web.json_response(view, headers={"Cache-Control": "no-store"})


def setup_routes(app: web.Application) -> None:
    """The two pages, the call page's data and the dashboard API (search, CSV exports, filter lists)."""
    dashboard_api.setup_routes(app)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/calls/{call_id}", call_page)
    app.router.add_get("/api/dashboard/calls/{call_id}", call_detail)
    if not any(getattr(r, "canonical", None) == "/static" for r in app.router.resources()):
        app.router.add_static("/static", STATIC_DIR)
