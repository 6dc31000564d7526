"""Calls left open by a worker that died: ended in the log by a worker that is alive.

A worker killed without a goodbye (SIGKILL, power cut, OOM) cannot write ``call_ended`` for the
calls it was carrying: their callers were cut off, but the log would show them "in progress"
forever, the live view would count them and the stats would never see them. Every worker runs
this sweeper; one at a time (a Redis lock) ends the in-progress calls whose worker has been
missing from the registry (``callbot/workers.py``) for ``grace_s`` — long enough that a worker
only briefly cut off from Redis is not taken for dead (its record expires after 15 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from callbot import events as ev
from callbot.store import EventStore
from callbot.workers import live_workers

log = logging.getLogger(__name__)

P = "callbot:"
LOCK = P + "orphans:lock"
SWEEP_S = 20.0
GRACE_S = 60.0
LOOKBACK_S = 24 * 3600  # only calls started in the last day can still be in progress
DETAIL = "worker_lost"


class OrphanSweeper:
    def __init__(self, store: EventStore, me: str, *, every_s: float = SWEEP_S, grace_s: float = GRACE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.me = me
        self.every_s = every_s
        self.grace_s = grace_s
        self.clock = clock
        self._missing_since: dict[str, float] = {}  # worker id -> when this sweeper first saw it gone
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="orphan-sweeper")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep()
            except (RedisError, OSError) as e:  # Redis down: the next sweep will do
                log.debug("orphan sweep skipped: %s", e)

    async def sweep(self) -> list[str]:
        """End the orphaned calls now (if this worker holds the lock); their ids."""
        redis = self.store.redis
        if not await redis.set(LOCK, self.me, nx=True, ex=max(1, int(self.every_s))):
            return []
        now = self.clock()
        live = {w.get("id") for w in await live_workers(redis)} | {self.me}
        ids = await redis.zrangebyscore(P + "calls", now - LOOKBACK_S, "+inf")
        if not ids:
            return []
        pipe = redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hmget(f"{P}call:{cid}", "status", "worker", "started")
        rows = await pipe.execute()
        ended: list[str] = []
        gone_now: set[str] = set()
        for cid, (status, worker, started) in zip(ids, rows, strict=True):
            if status != "in_progress" or not worker or worker in live:
                continue
            gone_now.add(worker)
            since = self._missing_since.setdefault(worker, now)
            if now - since < self.grace_s:
                continue
            duration = max(0.0, now - float(started or now))
            self.store.emit(ev.CallEnded(call_id=cid, ts=now, reason="error", duration_s=duration,
                                         detail=f"{DETAIL}: worker {worker} stopped without ending the call"))
            ended.append(cid)
        self._missing_since = {w: t for w, t in self._missing_since.items() if w in gone_now}
        if ended:
            log.warning("ended %d call(s) left open by worker(s) gone from the registry: %s",
                        len(ended), ", ".join(sorted(gone_now)))
        return ended
