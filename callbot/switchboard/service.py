"""The switchboard's shared parts, built once per process (``Runtime.switchboard``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo
from typing import Any

import redis.asyncio as aioredis

from callbot.flows.conditions import is_open
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.hold_music import hold_music
from callbot.switchboard.policy import QueueRules
from callbot.switchboard.presence import P, Presence
from callbot.switchboard.queue import CallQueue, WaitingCall

HANDOFF_TTL_S = 4 * 3600


def local_now() -> datetime:
    return datetime.now().astimezone()


@dataclass
class Switchboard:
    redis: aioredis.Redis
    rules: QueueRules
    render: Callable[[str], bytes]  # text -> 16-bit PCM at ``rate`` (the prompt cache; blocking)
    flows: Any  # runtime.FlowLibrary: opening hours and holidays come from the current flow
    wrapup_s: float = 30.0
    clock: Callable[[], datetime] = local_now  # injectable: tests decide whether the town hall is open
    rate: int = 8000
    music: bytes = field(default_factory=hold_music)

    def __post_init__(self) -> None:
        self.queue = CallQueue(self.redis)
        self.presence = Presence(self.redis, wrapup_s=self.wrapup_s)
        self.callbacks = Callbacks(self.redis)
        self.accounts = Accounts(self.redis)

    async def agent_names(self, service: str) -> list[str]:
        """Accounts that take calls for ``service``: a phone to ring and the service (or ``*``) in their list."""
        return [u.name for u in await self.accounts.list()
                if u.phone and (service in u.services or "*" in u.services)]

    async def has_agents(self, service: str) -> bool:
        return bool(await self.agent_names(service))

    def is_open(self, service: str) -> bool:
        """The service's opening hours (``hours.{service}``, else the town hall's); no table = always open."""
        spec = self.flows.current.spec
        table = spec.hours.get(service) or spec.hours.get("mairie") or next(iter(spec.hours.values()), None)
        if table is None:
            return True
        return is_open(table, self.clock(), tuple(spec.closed_dates), self.flows.current.settings.holidays_subdiv)

    async def remember_handoff(self, call: WaitingCall) -> None:
        """Keep the context when the provider connects the call: a failed agent leg comes back (Twilio)."""
        await self.redis.set(f"{P}handoff:{call.call_id}", call.model_dump_json(), ex=HANDOFF_TTL_S)

    async def handoff(self, call_id: str) -> WaitingCall | None:
        raw = await self.redis.get(f"{P}handoff:{call_id}")
        return WaitingCall.model_validate_json(raw) if raw else None


def settings_clock(iso: str | None, tz: tzinfo | None = None) -> Callable[[], datetime]:
    """The town hall's clock (``tz``: the flow's zone), or one that starts at ``iso`` and runs
    (``CALLBOT_CLOCK``, demos and tests)."""
    def now() -> datetime:
        return datetime.now(tz) if tz else local_now()

    if not iso:
        return now
    start = datetime.fromisoformat(iso)
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz) if tz else start.astimezone()
    t0 = now()
    return lambda: start + (now() - t0)


def build_switchboard(settings: Any, redis: aioredis.Redis, flows: Any, render: Callable[[str], bytes],
                      rate: int) -> Switchboard:
    rules = QueueRules(announce_every_s=settings.queue_announce_secs, max_wait_s=settings.queue_max_wait_secs,
                       ring_s=settings.agent_ring_secs, callback_key=settings.queue_callback_key,
                       priorities=tuple(settings.queue_priorities.items()))
    tz = ZoneInfo(flows.current.settings.timezone)
    return Switchboard(redis, rules, render, flows, wrapup_s=settings.agent_wrapup_secs,
                       clock=settings_clock(settings.clock, tz), rate=rate)
