"""Agents' presence, shared by every worker through Redis.

States: ``available`` (may be offered a call), ``ringing`` (a call is offered on the
console), ``on_call``, ``wrap_up`` (after a call, for ``wrapup_s``; then available
again without anyone pressing a button), ``away`` (paused; also set when an agent lets
an offer ring out, like Asterisk's autopause, so the next caller does not ring an
empty desk), ``offline``.

Claiming an agent for a call is one Lua script: two workers can never offer the same
agent two calls. Among the candidates the longest idle available agent wins.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

P = "callbot:sb:"
LIVE = f"{P}live"
State = Literal["available", "ringing", "on_call", "wrap_up", "away", "offline"]
STATES: tuple[str, ...] = ("available", "ringing", "on_call", "wrap_up", "away", "offline")
SETTABLE: tuple[str, ...] = ("available", "away", "offline")  # what an agent chooses on the console

# KEYS: agent hashes; ARGV: now, call_id. Effective state: wrap_up past its end = available.
_CLAIM = """
local now = tonumber(ARGV[1])
local best, best_idle = nil, nil
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'state', 'idle_since', 'wrapup_until')
  local state, idle = h[1], tonumber(h[2] or '0') or 0
  if state == 'wrap_up' and tonumber(h[3] or '0') <= now then state = 'available' end
  if state == 'available' and (best_idle == nil or idle < best_idle) then best, best_idle = key, idle end
end
if best == nil then return nil end
redis.call('HSET', best, 'state', 'ringing', 'since', ARGV[1], 'call_id', ARGV[2])
return best
"""


@dataclass(frozen=True)
class AgentPresence:
    name: str
    state: State
    since: float
    idle_since: float
    call_id: str = ""

    def to_dict(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        return {"name": self.name, "state": self.state, "since": self.since,
                "for_s": round(max(0.0, now - self.since), 1), "call_id": self.call_id}


def effective(row: dict[str, str], now: float) -> tuple[State, float]:
    """(state, since) with an expired wrap-up read as available."""
    state = row.get("state") or "offline"
    since = float(row.get("since") or 0)
    if state == "wrap_up" and float(row.get("wrapup_until") or 0) <= now:
        return "available", float(row.get("wrapup_until") or since)
    return state if state in STATES else "offline", since  # type: ignore[return-value]


class Presence:
    def __init__(self, redis: aioredis.Redis, *, wrapup_s: float = 30.0) -> None:
        self.redis = redis
        self.wrapup_s = wrapup_s
        self._claim = redis.register_script(_CLAIM)

    @staticmethod
    def key(name: str) -> str:
        return f"{P}agent:{name}"

    async def get(self, name: str, now: float | None = None) -> AgentPresence:
        now = time.time() if now is None else now
        row = await self.redis.hgetall(self.key(name))
        state, since = effective(row, now)
        return AgentPresence(name, state, since, float(row.get("idle_since") or 0), row.get("call_id", ""))

    async def all(self, names: list[str], now: float | None = None) -> list[AgentPresence]:
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(self.key(n))
        rows = await pipe.execute()
        out = []
        for n, row in zip(names, rows):
            state, since = effective(row, now)
            out.append(AgentPresence(n, state, since, float(row.get("idle_since") or 0), row.get("call_id", "")))
        return out

    async def set(self, name: str, state: State, *, call_id: str = "", now: float | None = None) -> None:
        """Set a state; entering ``available`` or ``wrap_up`` restarts the idle clock."""
        if state not in STATES:
            raise ValueError(f"unknown agent state {state!r}; expected one of {', '.join(STATES)}")
        now = time.time() if now is None else now
        fields: dict[str, str] = {"state": state, "since": repr(now), "call_id": call_id}
        if state == "available":
            fields["idle_since"] = repr(now)
        if state == "wrap_up":
            until = now + self.wrapup_s
            fields.update(wrapup_until=repr(until), idle_since=repr(until))
            if self.wrapup_s <= 0:
                fields["state"] = "available"
        await self.redis.hset(self.key(name), mapping=fields)
        await self.publish(name, fields["state"], call_id)

    async def choose(self, names: list[str], call_id: str, now: float | None = None) -> str | None:
        """Atomically move the longest idle available agent among ``names`` to ``ringing``."""
        if not names:
            return None
        now = time.time() if now is None else now
        key = await self._claim(keys=[self.key(n) for n in names], args=[repr(now), call_id])
        if not key:
            return None
        name = key[len(f"{P}agent:"):]
        await self.publish(name, "ringing", call_id)
        return name

    async def release(self, name: str, call_id: str, state: State) -> None:
        """Leave ``ringing``/``on_call`` for ``state``, unless the agent has moved on meanwhile."""
        row = await self.redis.hmget(self.key(name), ["state", "call_id"])
        if row[1] == call_id and row[0] in ("ringing", "on_call"):
            await self.set(name, state)

    async def publish(self, name: str, state: str, call_id: str = "") -> None:
        await self.redis.publish(LIVE, json.dumps({"kind": "presence", "agent": name, "state": state,
                                                   "call_id": call_id}))
