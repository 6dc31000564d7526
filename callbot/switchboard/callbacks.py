"""Callback requests: a caller who could not wait (or called out of hours) is called back.

Layout (prefix ``callbot:sb:``): ``callback:{id}`` JSON of ``Callback``;
``callbacks:{service}`` sorted set id -> creation time (open and closed ones).
Each change is published on the ``live`` channel for the consoles.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel

from callbot.switchboard.presence import LIVE, P

Status = Literal["open", "done", "no_answer"]
Slot = Literal["matin", "apres_midi", "indifferent", ""]


class Callback(BaseModel):
    id: str
    service: str
    number: str
    call_id: str = ""
    slot: Slot = ""
    reason: str = ""  # callback_key, max_wait, no_agent, closed, flow
    summary: str = ""  # what the caller wanted (the bot's summary)
    status: Status = "open"
    attempts: int = 0
    note: str = ""
    agent: str = ""
    created: float = 0.0
    updated: float = 0.0


def new_callback_id() -> str:
    return time.strftime("R%y%m%d-") + secrets.token_hex(3).upper()


class Callbacks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def add(self, *, service: str, number: str, call_id: str = "", slot: Slot = "", reason: str = "",
                  summary: str = "") -> Callback:
        now = time.time()
        cb = Callback(id=new_callback_id(), service=service, number=number, call_id=call_id, slot=slot,
                      reason=reason, summary=summary, created=now, updated=now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(f"{P}callback:{cb.id}", cb.model_dump_json())
        pipe.zadd(f"{P}callbacks:{service}", {cb.id: now})
        pipe.sadd(f"{P}callback_services", service)
        await pipe.execute()
        await self._changed(cb)
        return cb

    async def get(self, callback_id: str) -> Callback | None:
        raw = await self.redis.get(f"{P}callback:{callback_id}")
        return Callback.model_validate_json(raw) if raw else None

    async def list(self, services: set[str] | None = None, status: Status | None = "open",
                   limit: int = 200) -> list[Callback]:
        """Oldest first (who waited longest is called first)."""
        out: list[Callback] = []
        for service in sorted(await self.redis.smembers(f"{P}callback_services")):
            if services is not None and service not in services:
                continue
            ids = await self.redis.zrange(f"{P}callbacks:{service}", 0, -1)
            if ids:
                out += [Callback.model_validate_json(r) for r in await self.redis.mget(
                    [f"{P}callback:{i}" for i in ids]) if r]
        out = [c for c in out if status is None or c.status == status]
        return sorted(out, key=lambda c: c.created)[:limit]

    async def close(self, callback_id: str, outcome: Literal["done", "no_answer"], *, agent: str,
                    note: str = "") -> Callback | None:
        """Record an attempt. ``no_answer`` keeps the request open (tried again later) with the attempt counted."""
        cb = await self.get(callback_id)
        if cb is None:
            return None
        cb.attempts += 1
        cb.status = "done" if outcome == "done" else "open"
        cb.note = note or cb.note
        cb.agent, cb.updated = agent, time.time()
        await self.redis.set(f"{P}callback:{cb.id}", cb.model_dump_json())
        await self._changed(cb)
        return cb

    async def _changed(self, cb: Callback) -> None:
        await self.redis.publish(LIVE, json.dumps({"kind": "callback", "service": cb.service, "id": cb.id}))
