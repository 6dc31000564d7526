"""Stopping a worker without cutting anyone off: SIGTERM drains, a second SIGTERM stops.

A restart (deploy, ``systemctl stop``, ``docker stop``) must not hang up on callers. On
the first SIGTERM (or SIGINT: Ctrl-C behaves the same, so a developer's stop and a
service manager's stop follow one path) the worker goes ``draining``:

- new calls are refused where a proxy or load balancer retries elsewhere: SIP INVITE and
  OPTIONS get 503 (Kamailio's dispatcher probe takes the worker out of rotation),
  ``POST /twilio/voice`` gets 503, ``/healthz`` answers 503 ``{"state": "draining"}``;
- calls in progress go on as usual (in-dialog SIP requests, Twilio media streams);
- when the last one has ended the process exits 0, its events flushed to Redis.

``drain_timeout_secs`` bounds the wait (a call may last long, but not for ever), and a
second signal stops at once: the calls still up are then ended by the bot (BYE), each
recorded as ``call_ended`` ``error`` with ``worker_shutdown`` in its detail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from callbot.workers import DRAINING, Worker

log = logging.getLogger(__name__)

POLL_S = 0.2
FORCED_END_WAIT_S = 5.0  # for the cancelled calls to hang up and record their end


class Drain:
    """The worker's stop sequence; ``wait()`` returns when the process may exit."""

    def __init__(self, worker: Worker, timeout_s: float) -> None:
        self.worker = worker
        self.timeout_s = timeout_s
        self.reason = ""  # why calls were ended by force, "" while none was
        self.on_force: list[Callable[[str], None]] = []  # told why, before the calls are cancelled
        self._calls: set[asyncio.Task] = set()
        self._done = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._force_task: asyncio.Task | None = None

    @contextmanager
    def call(self) -> Iterator[None]:
        """Wrap each call's handler: a forced stop cancels the calls still running."""
        task = asyncio.current_task()
        if task is not None:
            self._calls.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._calls.discard(task)

    def request(self, why: str) -> None:
        """A stop signal: the first drains, the next stops now. Safe from a signal handler."""
        if self._task is None:
            log.warning("worker %s: %s: draining (no new calls; up to %.0f s for the %d in progress)",
                        self.worker.id, why, self.timeout_s, self.worker.active_calls())
            self._task = asyncio.create_task(self._drain(), name="drain")
        elif not self._done.is_set() and self._force_task is None:
            self._force_task = asyncio.create_task(self._force(f"{why} while draining"), name="drain-force")

    async def wait(self) -> None:
        await self._done.wait()

    async def _drain(self) -> None:
        await self.worker.set_state(DRAINING)
        deadline = time.monotonic() + self.timeout_s
        while not self.worker.idle():
            if self.reason:  # a second signal ended the calls
                return
            if time.monotonic() >= deadline:
                await self._force(f"drain timeout ({self.timeout_s:.0f} s)")
                return
            await asyncio.sleep(POLL_S)
        log.warning("worker %s: drained: no call in progress, stopping", self.worker.id)
        self._done.set()

    async def _force(self, why: str) -> None:
        if self.reason:
            return
        self.reason = why
        for hook in self.on_force:
            hook(why)
        calls = [t for t in self._calls if not t.done()]
        log.warning("worker %s: %s: ending %d call(s) now", self.worker.id, why, len(calls))
        for task in calls:
            task.cancel(f"worker_shutdown: {why}")
        if calls:
            await asyncio.wait(calls, timeout=FORCED_END_WAIT_S)
        self._done.set()


DRAIN = web.AppKey("drain", Drain)
