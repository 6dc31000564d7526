"""Per-call event recorder: stamps events with the call id and time, logs them, stores them."""

from __future__ import annotations

import json
import logging
import secrets
import time

from callbot import events as ev
from callbot.logsafe import event_summary
from callbot.store import EventStore

log = logging.getLogger("callbot.call")


class CallRecorder:
    def __init__(self, store: EventStore | None, call_id: str) -> None:
        self.store = store
        self.call_id = call_id
        self.started_mono = time.monotonic()
        self.history: list[ev._Event] = []  # this call's events, for tests and the end-of-call summary

    def emit(self, event: ev._Event) -> ev._Event:
        if isinstance(event, ev.TicketCreated) and not event.ticket_id:
            event = event.model_copy(update={"ticket_id": new_ticket_id()})
        stamped = ev.stamp(event, self.call_id)
        self.history.append(stamped)
        if self.store is not None:
            self.store.emit(stamped)
        if log.isEnabledFor(logging.INFO):
            log.info("%s %s", self.call_id, json.dumps(event_summary(stamped, log), ensure_ascii=False, default=str))
        return stamped

    def emit_all(self, events: list[ev._Event]) -> None:
        for e in events:
            self.emit(e)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_mono


def new_ticket_id() -> str:
    """Short, readable over the phone, unique without asking Redis (which may be down)."""
    return time.strftime("T%y%m%d-") + secrets.token_hex(3).upper()
