"""Which ``callbot serve`` processes share this Redis, and what each is doing.

Several workers (behind Kamailio for SIP, behind a load balancer for Twilio) share one
Redis; ops, the console and the stats must see all of them, so no worker keeps its
identity to itself:

- ``Worker``: this process's id (``--worker-id``, ``CALLBOT_WORKER_ID``, else
  ``<hostname>-<pid>``), its state (``serving`` | ``draining``) and its calls in progress.
  Parts that must react to draining (the SIP listener answers 503) register a hook.
- ``WorkerRegistry``: writes ``callbot:workers:<id>`` (JSON) with a TTL, refreshed well within
  it, so a worker killed without a goodbye drops out of the list by itself after ``TTL_S``;
  the set ``callbot:workers`` indexes the ids so listing needs no SCAN of the keyspace.
- ``GET /api/workers`` (ops): the live workers.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from callbot import __version__
from callbot.web.appkeys import RUNTIME
from callbot.web.auth import require_role

log = logging.getLogger(__name__)

SERVING = "serving"
DRAINING = "draining"
INDEX = "callbot:workers"  # set of worker ids
KEY = "callbot:workers:"  # + id: the worker's record (JSON), expires after TTL_S without a refresh
TTL_S = 15
REFRESH_S = 5.0

StateHook = Callable[[str], "Awaitable[None] | None"]


def default_worker_id() -> str:
    """``<hostname>-<pid>``: unique among live processes (two workers on one host differ by pid, and a
    container's hostname is its id); a restarted worker is a new one, and its old record expires."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:50].strip(".-") or "host"
    return f"{host}-{os.getpid()}"


class Worker:
    """This process as the other workers and ops see it."""

    def __init__(self, worker_id: str, *, http_port: int | None = None, sip_port: int | None = None) -> None:
        self.id = worker_id
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self.http_port = http_port
        self.sip_port = sip_port
        self.state = SERVING
        self.active_calls: Callable[[], int] = lambda: 0  # set once the runtime exists (server.py)
        self._hooks: list[StateHook] = []
        self._hold_until = 0.0

    @property
    def draining(self) -> bool:
        return self.state == DRAINING

    def on_state(self, hook: StateHook) -> None:
        """``hook(state)`` (sync or async) runs on every state change, e.g. the SIP listener's 503 mode."""
        self._hooks.append(hook)

    async def set_state(self, state: str) -> None:
        if state == self.state:
            return
        log.warning("worker %s: %s -> %s (%d call(s) in progress)", self.id, self.state, state, self.active_calls())
        self.state = state
        for hook in list(self._hooks):
            try:
                result = hook(state)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one part failing to follow must not stop the others
                log.exception("worker %s: a %s hook failed", self.id, state)

    def expect_call(self, secs: float) -> None:
        """A call was accepted that has not started yet (Twilio opens its media stream just after the
        webhook): a drain waits ``secs`` for it instead of exiting under it."""
        self._hold_until = max(self._hold_until, time.monotonic() + secs)

    def idle(self) -> bool:
        """No call in progress and none expected: a draining worker may exit."""
        return self.active_calls() == 0 and time.monotonic() >= self._hold_until

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "started": self.started, "updated": time.time(),
                "state": self.state, "active_calls": self.active_calls(), "http_port": self.http_port,
                "sip_port": self.sip_port, "version": __version__}


class WorkerRegistry:
    """Keeps this worker's record in Redis while it lives; removes it on a clean stop."""

    def __init__(self, redis, worker: Worker, *, ttl_s: int = TTL_S, refresh_s: float = REFRESH_S) -> None:
        if refresh_s >= ttl_s:
            raise ValueError(f"refresh_s ({refresh_s}) must be below ttl_s ({ttl_s}) or the record flickers")
        self.redis = redis
        self.worker = worker
        self.ttl_s = ttl_s
        self.refresh_s = refresh_s
        self._task: asyncio.Task | None = None
        self._redis_ok = True
        self._stopped = False

    async def start(self) -> None:
        await self.publish()
        self.worker.on_state(lambda _state: self.publish())  # draining shows at once, not 5 s later
        self._task = asyncio.create_task(self._refresh(), name="worker-registry")

    async def publish(self) -> bool:
        """Write the record now; False (logged once per outage) when Redis is unreachable."""
        if self._stopped:  # a late state change must not bring the removed record back
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(KEY + self.worker.id, json.dumps(self.worker.record()), ex=self.ttl_s)
        pipe.sadd(INDEX, self.worker.id)
        try:
            await pipe.execute()
        except (RedisError, OSError) as e:
            if self._redis_ok:
                log.error("worker %s: cannot write its registry record (%s); retrying every %.0f s",
                          self.worker.id, e, self.refresh_s)
            self._redis_ok = False
            return False
        self._redis_ok = True
        return True

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.publish()

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(KEY + self.worker.id)
            pipe.srem(INDEX, self.worker.id)
            await pipe.execute()
        except (RedisError, OSError) as e:  # the record expires by itself
            log.warning("worker %s: could not remove its registry record (%s); it expires in %d s",
                        self.worker.id, e, self.ttl_s)


async def live_workers(redis) -> list[dict[str, Any]]:
    """Every worker whose record has not expired, by id; ids left by workers that died are pruned."""
    ids = sorted(await redis.smembers(INDEX))
    if not ids:
        return []
    raw = await redis.mget([KEY + i for i in ids])
    live, dead = [], []
    for worker_id, data in zip(ids, raw, strict=True):
        if data is None:
            dead.append(worker_id)
            continue
        try:
            live.append(json.loads(data))
        except ValueError:
            log.warning("worker registry: unreadable record for %s", worker_id)
    if dead:
        await redis.srem(INDEX, *dead)
    return live


# ---- HTTP
WORKER = web.AppKey("worker", Worker)


async def list_workers(request: web.Request) -> web.Response:
    """``GET /api/workers`` (ops): the live workers on this Redis, and which one answered."""
    require_role(request, "ops")
    rt = request.app.get(RUNTIME)
    if rt is None:
        return web.json_response({"error": "starting", "message": "the worker is still starting"}, status=503)
    try:
        workers = await live_workers(rt.store.redis)
    except (RedisError, OSError) as e:
        return web.json_response({"error": "redis_unavailable", "message": f"Redis is not reachable: {e}"},
                                 status=503)
    me = request.app.get(WORKER)
    return web.json_response({"workers": workers, "self": me.id if me else None})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/workers", list_workers)
