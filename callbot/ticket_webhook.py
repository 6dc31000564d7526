"""Push each new ticket (street-light fault, pothole, callback request…) to a town service's URL.

Reads the shared event stream with a Redis consumer group, so with several
workers each ticket is delivered once, and a ticket created while the
receiver is down is delivered when it comes back (at-least-once: the payload
carries the ticket id for de-duplication). Off unless ``ticket_webhook_url`` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

STREAM = "callbot:events"
GROUP = "ticket-webhook"


class TicketWebhook:
    def __init__(self, redis: aioredis.Redis, url: str, *, timeout: float = 10.0, retry_s: float = 5.0) -> None:
        self.redis = redis
        self.url = url
        self.timeout = timeout
        self.retry_s = retry_s
        self.consumer = f"{socket.gethostname()}-{id(self):x}"
        self.delivered = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        try:  # "$": tickets from now on; existing group keeps its position (and its pending tickets)
            await self.redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._task = asyncio.create_task(self._run(), name="ticket-webhook")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            backlog = True  # first our own unacknowledged entries (a crash mid-delivery), then new ones
            while True:
                try:
                    start = "0" if backlog else ">"
                    replies = await self.redis.xreadgroup(GROUP, self.consumer, {STREAM: start}, count=50, block=2000)
                    entries = replies[0][1] if replies else []
                    if backlog and not entries:
                        backlog = False
                        # adopt tickets a dead worker read but never delivered (idle for over a minute)
                        claimed = await self.redis.xautoclaim(STREAM, GROUP, self.consumer, min_idle_time=60_000,
                                                              start_id="0-0", count=50)
                        backlog = bool(claimed and claimed[1])
                        continue
                    for entry_id, fields in entries:
                        if await self._deliver(http, fields):
                            await self.redis.xack(STREAM, GROUP, entry_id)
                        else:
                            backlog = True  # retry from the first unacknowledged entry
                            await asyncio.sleep(self.retry_s)
                            break
                except (RedisError, OSError) as e:
                    log.warning("ticket webhook: Redis unavailable (%s); retrying", e)
                    await asyncio.sleep(self.retry_s)

    async def _deliver(self, http: aiohttp.ClientSession, fields: dict) -> bool:
        if _text(fields.get("type") or fields.get(b"type")) != "ticket":
            return True
        event = json.loads(_text(fields.get("json") or fields.get(b"json")))
        payload = {"id": event["ticket_id"], "kind": event["kind"], "call_id": event["call_id"],
                   "created": event["ts"], "node": event.get("node", ""), "fields": event.get("fields", {})}
        try:
            async with http.post(self.url, json=payload) as resp:
                if resp.status < 300:
                    self.delivered += 1
                    return True
                log.error("ticket webhook %s answered HTTP %s for ticket %s", self.url, resp.status, payload["id"])
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.error("ticket webhook %s unreachable for ticket %s: %s", self.url, payload["id"], e)
        return False


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
