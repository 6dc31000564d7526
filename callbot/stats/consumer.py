"""The stats consumer: a Redis consumer group on the event stream feeding the rollups.

Every worker runs one consumer of the group ``stats``; Redis gives each stream entry to one
of them, so a city's workers share the counting and any of them answers ``/api/stats``.
Entries are acknowledged after they are counted; a worker that dies leaves its pending
entries to be claimed by another after ``CLAIM_IDLE_MS`` (``XAUTOCLAIM``); a worker that
only lost Redis for a while counts its own pending entries again as soon as it is back
(``XREADGROUP`` from ``0``); the rollups' ``done:`` markers make a replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from callbot import events as ev
from callbot.stats.rollup import Rollups

log = logging.getLogger(__name__)

STREAM = "callbot:events"
GROUP = "stats"
BATCH = 500
CLAIM_IDLE_MS = 60_000


class StatsConsumer:
    def __init__(self, redis: aioredis.Redis, rollups: Rollups, *, consumer: str | None = None,
                 block_ms: int = 2000) -> None:
        self.redis = redis
        self.rollups = rollups
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self.block_ms = block_ms
        self.calls_counted = 0
        self.errors = 0
        self._recover = True  # (re)read the entries delivered to this consumer and not acknowledged
        self._task: asyncio.Task | None = None

    async def ensure_group(self) -> None:
        """Create the group at the stream's start: a first start counts the history already stored."""
        try:
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def run_once(self) -> int:
        """Count everything new (and anything pending for too long); returns the calls counted."""
        before = self.calls_counted
        try:
            await self.ensure_group()
            if self._recover:
                await self._own_pending()
                self._recover = False
            await self._claim_stale()
            while True:
                batch = await self.redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=BATCH)
                entries = batch[0][1] if batch else []
                if not entries:
                    break
                await self._handle(entries)
        except (RedisError, OSError):
            self._recover = True
            raise
        return self.calls_counted - before

    async def _own_pending(self) -> None:
        """Entries this consumer was given but did not acknowledge (Redis failed mid-count): now, not
        after ``CLAIM_IDLE_MS``."""
        start = "0"
        while True:
            batch = await self.redis.xreadgroup(GROUP, self.consumer, {STREAM: start}, count=BATCH)
            entries = batch[0][1] if batch else []
            if not entries:
                return
            live = [e for e in entries if e[1]]
            if live:
                await self._handle(live)
            gone = [e[0] for e in entries if not e[1]]  # deleted from the stream since (privacy)
            if gone:
                await self.redis.xack(STREAM, GROUP, *gone)
            start = entries[-1][0]

    async def _claim_stale(self) -> None:
        start = "0-0"
        while True:
            res = await self.redis.xautoclaim(STREAM, GROUP, self.consumer, CLAIM_IDLE_MS, start, count=BATCH)
            start, entries = res[0], res[1]
            if entries:
                await self._handle([e for e in entries if e and e[1]])
            if not entries or start in ("0-0", b"0-0"):
                return

    async def _handle(self, entries: list) -> None:
        for entry_id, fields in entries:
            try:
                await self._count(fields)
            except (RedisError, OSError):
                raise  # not acknowledged: counted on the next round
            except Exception:  # a malformed entry must not block the stream
                self.errors += 1
                log.exception("stats: entry %s not counted (%s)", entry_id, fields.get("type"))
        await self.redis.xack(STREAM, GROUP, *[e[0] for e in entries])

    async def _count(self, fields: dict[str, str]) -> None:
        kind = fields.get("type")
        if kind == "call_ended":
            call_id = fields["call_id"]
            raw = await self.redis.lrange(f"callbot:call:{call_id}:events", 0, -1)
            events = [ev.from_json(r) for r in raw]
            if not events:  # the call's keys are gone (forgotten): its stream entry alone is not enough
                return
            if await self.rollups.add_call(events) is not None:
                self.calls_counted += 1
        elif kind == "callback_done":
            await self.rollups.add_callback_done(ev.from_json(fields["json"]))

    # ---- background
    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="stats-consumer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.run_once()
                batch = await self.redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=BATCH,
                                                    block=self.block_ms)
                if batch and batch[0][1]:
                    await self._handle(batch[0][1])
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self._recover = True
                log.warning("stats consumer: Redis unavailable (%s); retrying", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
