"""The call-event store: every event of every call, in Redis, even across Redis restarts.

``emit`` never blocks and never fails: events go to an in-memory queue that a
single writer task drains into Redis in batches (one MULTI/EXEC each). When
Redis is unreachable the writer keeps the batch, backs off and retries, so a
Redis restart loses nothing (up to ``buffer_max`` pending events; beyond that
the oldest are dropped with an ERROR log, never silently). Nor does it write
anything twice: a batch whose transaction reached Redis but whose reply was
lost (Redis killed right after applying it, a reply slower than the socket
timeout) must not be written again, so each transaction also records its batch
number under ``writer:{id}``, and a retry first checks whether it is there.

Layout (prefix ``callbot:``):
- ``events``            global stream (XADD), for stats and live views
- ``calls``             sorted set call_id -> start time (recent-calls index)
- ``call:{id}``         hash: summary of the call (channel, caller, worker, last node, end reason…)
- ``call:{id}:events``  list of the call's events (JSON)
- ``tickets`` / ``ticket:{id}``  reports created by flows
- ``writer:{id}``       number of the last batch this process's writer applied (see above)
- channel ``live``      pub/sub of every event (dashboards)
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from callbot import events as ev

log = logging.getLogger(__name__)

P = "callbot:"
STREAM_MAXLEN = 1_000_000
BATCH_MAX = 200
WRITER_KEY_TTL_S = 30 * 86400  # outlives any outage a buffered batch can wait through


class EventStore:
    def __init__(self, redis_url: str, *, max_calls: int = 10_000, retention_days: int = 365,
                 buffer_max: int = 200_000) -> None:
        self.redis = aioredis.from_url(redis_url, decode_responses=True, socket_timeout=5,
                                       socket_connect_timeout=2, health_check_interval=10)
        self.max_calls = max_calls
        self.retention_s = retention_days * 86400
        self.buffer_max = buffer_max
        self._pending: collections.deque[ev._Event] = collections.deque()
        self._inflight: list[ev._Event] = []  # the batch being written: a retry writes exactly these
        self._batch_seq = 0
        self._unsure = False  # the last attempt failed: it may have been applied all the same
        self._writer_key = f"{P}writer:{uuid.uuid4().hex}"
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.dropped = 0
        self.redis_ok = True
        self.observers: list[Callable[[ev._Event], None]] = []  # e.g. Prometheus metrics; must not block

    # ---- writing
    async def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="event-store-writer")

    def emit(self, event: ev._Event) -> None:
        """Queue a stamped event for the store (non-blocking)."""
        if not event.call_id:
            raise ValueError(f"event {event.type} has no call_id: stamp it first")
        if len(self._pending) >= self.buffer_max:
            self._pending.popleft()
            self.dropped += 1
            log.error("event buffer full (%d): dropped the oldest event; is Redis down?", self.buffer_max)
        self._pending.append(event)
        self._idle.clear()
        self._wakeup.set()
        for observe in self.observers:
            try:
                observe(event)
            except Exception:  # an observer's bug must not lose the event
                log.exception("event observer failed on %s", event.type)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._inflight)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is in Redis; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        self._closing = True
        self._wakeup.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.pending:
            log.error("closing the store with %d events not written", self.pending)
        await self.redis.aclose()

    async def _writer(self) -> None:
        backoff = 0.05
        while not self._closing:
            if not self._inflight:
                if not self._pending:
                    self._idle.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                self._inflight = [self._pending.popleft() for _ in range(min(len(self._pending), BATCH_MAX))]
                self._batch_seq += 1
            try:
                if not (self._unsure and await self._applied()):
                    await self._write(self._inflight)
            except (RedisError, OSError) as e:
                self._unsure = True
                if self.redis_ok:
                    log.error("Redis unavailable (%s): buffering %d events and retrying", e, self.pending)
                self.redis_ok = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._inflight = []
            self._unsure = False
            if not self.redis_ok:
                log.warning("Redis is back: buffered events written")
            self.redis_ok = True
            backoff = 0.05

    async def _applied(self) -> bool:
        """Did the last failed attempt reach Redis after all (its transaction recorded the batch number)?"""
        return await self.redis.get(self._writer_key) == str(self._batch_seq)

    async def _write(self, batch: list[ev._Event]) -> None:
        # One attempt, one transaction: the client does not retry it by itself (no ``retry`` on the
        # connection), the writer does, after ``_applied``.
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._writer_key, self._batch_seq, ex=WRITER_KEY_TTL_S)
        for e in batch:
            data = e.model_dump_json()
            key = f"{P}call:{e.call_id}"
            pipe.xadd(f"{P}events", {"call_id": e.call_id, "type": e.type, "json": data},
                      maxlen=STREAM_MAXLEN, approximate=True)
            pipe.rpush(f"{key}:events", data)
            meta = _summary_update(e)
            if meta:
                pipe.hset(key, mapping=meta)
            if isinstance(e, ev.CallStarted):
                pipe.zadd(f"{P}calls", {e.call_id: e.ts})
                pipe.zremrangebyrank(f"{P}calls", 0, -(self.max_calls + 1))
                pipe.expire(key, self.retention_s)
                pipe.expire(f"{key}:events", self.retention_s)
            elif isinstance(e, ev.TicketCreated):
                ticket = {"id": e.ticket_id, "kind": e.kind, "call_id": e.call_id, "ts": e.ts,
                          "node": e.node, "fields": e.fields, "status": "open"}
                pipe.set(f"{P}ticket:{e.ticket_id}", json.dumps(ticket, ensure_ascii=False))
                pipe.zadd(f"{P}tickets", {e.ticket_id: e.ts})
            pipe.publish(f"{P}live", data)
        await pipe.execute()

    # ---- reading
    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        ids = await self.redis.zrevrange(f"{P}calls", offset, offset + limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(f"{P}call:{cid}")
        rows = await pipe.execute()
        return [_decode_summary(cid, row) for cid, row in zip(ids, rows) if row]

    async def call_events(self, call_id: str) -> list[ev._Event]:
        """A call's events as the typed models of ``callbot/events.py``."""
        return [ev.from_json(r) for r in await self.redis.lrange(f"{P}call:{call_id}:events", 0, -1)]

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        key = f"{P}call:{call_id}"
        summary, raw = await asyncio.gather(self.redis.hgetall(key), self.redis.lrange(f"{key}:events", 0, -1))
        if not summary and not raw:
            return None
        return {**_decode_summary(call_id, summary), "events": [json.loads(r) for r in raw]}

    async def list_tickets(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        ids = await self.redis.zrevrange(f"{P}tickets", offset, offset + limit - 1)
        if not ids:
            return []
        raw = await self.redis.mget([f"{P}ticket:{t}" for t in ids])
        return [json.loads(r) for r in raw if r]


def _summary_update(e: ev._Event) -> dict[str, str]:
    """Fields of the call's summary hash that this event changes."""
    if isinstance(e, ev.CallStarted):
        meta = {"channel": e.channel, "caller": e.caller, "called": e.called, "started": str(e.ts),
                "provider_call_id": e.provider_call_id, "flow": e.flow, "flow_version": e.flow_version,
                "status": "in_progress"}
        if e.worker:
            meta["worker"] = e.worker
        return meta
    if isinstance(e, ev.CallAnswered):
        return {"answered": str(e.ts)}
    if isinstance(e, ev.CallEnded):
        return {"ended": str(e.ts), "end_reason": e.reason, "duration_s": f"{e.duration_s:.3f}", "status": "ended"}
    if isinstance(e, ev.NodeEntered):
        return {"last_node": e.node}
    if isinstance(e, ev.IntentMatched) and e.intent:
        return {"last_intent": e.intent}
    if isinstance(e, ev.TransferRequested):
        return {"transfer_target": e.target}
    if isinstance(e, ev.Emergency):
        return {"emergency": e.number}
    if isinstance(e, ev.Queued):
        return {"service": e.service}
    if isinstance(e, ev.AgentConnected):
        return {"agent": e.agent}
    return {}


def _decode_summary(call_id: str, row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call_id}
    for k, v in row.items():
        if k in ("started", "answered", "ended", "duration_s"):
            out[k] = float(v)
        else:
            out[k] = v
    return out
