"""Names of the flow's services and intents as people read them, for the console and the dashboard."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callbot.web.appkeys import RUNTIME


def _flow_spec(request: web.Request) -> Any:
    try:
        return request.app[RUNTIME].flows.current.spec
    except AttributeError:
        return None


def service_labels(request: web.Request) -> dict[str, str]:
    """Flow service name -> label (``etat_civil`` -> ``le service état civil``); empty without a flow."""
    spec = _flow_spec(request)
    return {name: svc.label for name, svc in (getattr(spec, "services", None) or {}).items()}


def intent_labels(request: web.Request) -> dict[str, str]:
    spec = _flow_spec(request)
    return {name: i.label for name, i in (getattr(spec, "intents", None) or {}).items() if i.label}


def ticket_service(ticket: dict[str, Any], labels: dict[str, str]) -> str:
    """The service a ticket belongs to: its ``service`` field (a name, or a label the caller chose),
    else ``agent`` (l'accueil) which dispatches the reports that name none."""
    value = str((ticket.get("fields") or {}).get("service") or "").strip()
    if not value:
        return "agent"
    if value in labels:
        return value
    folded = value.casefold()
    for name, label in labels.items():
        if label.casefold() == folded or label.casefold().endswith(" " + folded):
            return name
    return value
