"""The waiting calls of every worker, per service, in Redis.

A call waits on the worker that holds its line; the queue itself is shared so every
worker computes the same positions and every console sees every waiting call.

Layout (prefix ``callbot:sb:``):
- ``queue:{service}``   sorted set call_id -> rank score (priority first, then arrival)
- ``waiting:{call_id}`` JSON of ``WaitingCall`` (the context the agent sees)
- ``offer:{agent}``     call_id offered to that agent (expires with the ring time)
- ``answer:{call_id}``  ``accept`` / ``decline`` written by the console
- channel ``live``      ``{"kind": "queue"|"offer"|"presence"|"callback", …}`` for consoles
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from callbot.switchboard.presence import LIVE, P

ALIVE_S = 90  # a waiting call's context outlives its worker by this much (the loop refreshes it)
PRIORITY_WEIGHT = 1e11  # seconds: a higher priority always ranks before any arrival time


class Turn(BaseModel):
    who: Literal["caller", "bot"]
    text: str


class WaitingCall(BaseModel):
    """What an agent sees before accepting a call (warm transfer)."""

    call_id: str
    service: str
    service_label: str = ""
    channel: str = ""
    caller: str = ""
    intent: str = ""  # the theme the bot recognised
    summary: str = ""  # one line: what the caller wants and what was collected
    slots: dict[str, Any] = Field(default_factory=dict)
    transcript: list[Turn] = Field(default_factory=list)
    priority: int = 0
    entered: float = 0.0  # epoch seconds: first entry (kept when the call comes back to the queue)
    state: Literal["waiting", "offered", "connecting"] = "waiting"
    agent: str = ""
    offered_at: float = 0.0
    worker: str = ""

    def score(self) -> float:
        return -self.priority * PRIORITY_WEIGHT + self.entered

    def view(self, position: int, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {**self.model_dump(), "position": position, "wait_s": round(max(0.0, now - self.entered), 1)}


class CallQueue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    @staticmethod
    def qkey(service: str) -> str:
        return f"{P}queue:{service}"

    @staticmethod
    def wkey(call_id: str) -> str:
        return f"{P}waiting:{call_id}"

    async def enter(self, call: WaitingCall) -> int:
        """Add (or re-add) the call; returns its 1-based position."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.wkey(call.call_id), call.model_dump_json(), ex=ALIVE_S)
        pipe.zadd(self.qkey(call.service), {call.call_id: call.score()})
        pipe.sadd(f"{P}services", call.service)
        pipe.zrank(self.qkey(call.service), call.call_id)
        *_, rank = await pipe.execute()
        await self._changed(call.service)
        return int(rank) + 1

    async def leave(self, call: WaitingCall) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.qkey(call.service), call.call_id)
        pipe.delete(self.wkey(call.call_id), f"{P}answer:{call.call_id}")
        await pipe.execute()
        if call.state == "offered":
            await self.withdraw(call)
        await self._changed(call.service)

    async def update(self, call: WaitingCall) -> None:
        await self.redis.set(self.wkey(call.call_id), call.model_dump_json(), ex=ALIVE_S)
        await self._changed(call.service)

    async def touch(self, call: WaitingCall) -> None:
        """The call's worker is alive: keep its context (a dead worker's callers leave the queue by themselves)."""
        await self.redis.expire(self.wkey(call.call_id), ALIVE_S)

    async def position(self, call: WaitingCall) -> int:
        rank = await self.redis.zrank(self.qkey(call.service), call.call_id)
        return 0 if rank is None else int(rank) + 1

    async def length(self, service: str) -> int:
        return int(await self.redis.zcard(self.qkey(service)))

    async def get(self, call_id: str) -> WaitingCall | None:
        raw = await self.redis.get(self.wkey(call_id))
        return WaitingCall.model_validate_json(raw) if raw else None

    async def services(self) -> list[str]:
        return sorted(await self.redis.smembers(f"{P}services"))

    async def waiting(self, services: set[str] | None = None, now: float | None = None) -> list[dict[str, Any]]:
        """Every waiting call (of ``services``, or all), in queue order, with position and wait."""
        out: list[dict[str, Any]] = []
        for service in await self.services():
            if services is not None and service not in services:
                continue
            ids = await self.redis.zrange(self.qkey(service), 0, -1)
            if not ids:
                continue
            raws = await self.redis.mget([self.wkey(i) for i in ids])
            position = 0
            for cid, raw in zip(ids, raws):
                if raw is None:  # its worker died: drop the stale entry
                    await self.redis.zrem(self.qkey(service), cid)
                    continue
                position += 1
                out.append(WaitingCall.model_validate_json(raw).view(position, now))
        return out

    # ---- offers: the waiting call's worker offers, the console answers
    async def offer(self, call: WaitingCall, agent: str, ring_s: float) -> None:
        call.state, call.agent, call.offered_at = "offered", agent, time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(f"{P}answer:{call.call_id}")
        pipe.set(f"{P}offer:{agent}", call.call_id, ex=max(1, int(ring_s) + 5))
        pipe.set(self.wkey(call.call_id), call.model_dump_json(), ex=ALIVE_S)
        await pipe.execute()
        await self.redis.publish(LIVE, json.dumps({"kind": "offer", "agent": agent, "call_id": call.call_id,
                                                   "service": call.service}))

    async def withdraw(self, call: WaitingCall) -> None:
        """The offer is over (answered, declined, timed out or the caller left)."""
        agent = call.agent
        if agent and await self.redis.get(f"{P}offer:{agent}") == call.call_id:
            await self.redis.delete(f"{P}offer:{agent}")
        await self.redis.publish(LIVE, json.dumps({"kind": "offer_end", "agent": agent, "call_id": call.call_id}))
        call.state, call.agent, call.offered_at = "waiting", "", 0.0

    async def offered_to(self, agent: str) -> WaitingCall | None:
        call_id = await self.redis.get(f"{P}offer:{agent}")
        return await self.get(call_id) if call_id else None

    async def answer(self, agent: str, call_id: str, accept: bool) -> bool:
        """The agent's answer to the offer; False when it is no longer offered to them."""
        if await self.redis.get(f"{P}offer:{agent}") != call_id:
            return False
        await self.redis.set(f"{P}answer:{call_id}", "accept" if accept else "decline", ex=120)
        return True

    async def wait_answer(self, call_id: str, timeout: float, gone: asyncio.Event,
                          poll_s: float = 0.2) -> Literal["accept", "decline", "timeout", "gone"]:
        """Poll (any worker may have written it) until the agent answers, time runs out or the caller leaves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone.is_set():
                return "gone"
            answer = await self.redis.get(f"{P}answer:{call_id}")
            if answer in ("accept", "decline"):
                return answer  # type: ignore[return-value]
            try:
                await asyncio.wait_for(gone.wait(), poll_s)
            except asyncio.TimeoutError:
                pass
        return "timeout"

    async def _changed(self, service: str) -> None:
        await self.redis.publish(LIVE, json.dumps({"kind": "queue", "service": service}))
