"""KPI counters kept per hour and per day in Redis, so any period is a cheap sum.

When a call ends, its events become one ``CallFacts`` row and one dict of counters
(``counters.py``, pure); the counters are added to the bucket of the hour and of the day
the call **started** (local time), once for all calls and once for its service. A year is
365 day hashes; no query ever reads raw events.

Layout (prefix ``callbot:stats:``):
- ``h:{YYYYMMDDHH}``, ``d:{YYYYMMDD}`` (+ ``:s:{service}``)  counters (HINCRBYFLOAT); day buckets also
  hold ``hour:{HH}:offered`` for the volume-by-hour chart
- ``services``            the services seen
- ``done:{call_id}``      the call is counted (idempotence: a replayed stream adds nothing twice); set in
                          the same transaction as the counters, so a count cut short by a Redis failure
                          leaves neither and is simply done again
- ``contained:{hash}``    last contained call of a caller (24 h): a new call from the same number
                          within 24 h adds ``repeat_after_contained`` to that call's buckets
- ``nomatch:{YYYYMMDD}``  what callers said that the flow did not understand (sorted set, text -> count;
                          transcripts: expires with the retention period)

Aggregates hold no numbers and no transcripts (bar the no-match list, which expires): they are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from callbot import events as ev
from callbot.stats.counters import REPEAT_AFTER_CONTAINED, callback_done_counters, counters
from callbot.stats.facts import CallFacts, call_facts

log = logging.getLogger(__name__)

P = "callbot:stats:"
DONE_TTL_S = 400 * 86400
REPEAT_WINDOW_S = 86400.0
NOMATCH_PER_DAY = 1000


def local(ts: float, tz: tzinfo | None = None) -> datetime:
    """The town hall's local time of ``ts`` (the flow's time zone; the machine's when None)."""
    return datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts).astimezone()


def hour_key(t: datetime, service: str | None = None) -> str:
    return f"{P}h:{t:%Y%m%d%H}" + (f":s:{service}" if service else "")


def day_key(t: datetime, service: str | None = None) -> str:
    return f"{P}d:{t:%Y%m%d}" + (f":s:{service}" if service else "")


def next_day(t: datetime) -> datetime:
    """Midnight of the next calendar day (wall clock: a 23 h or 25 h DST day is still one day)."""
    return (t.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1, hours=2)).replace(hour=0)


def next_hour(t: datetime) -> datetime:
    return (t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, minutes=30)).replace(minute=0)


def period_keys(start: datetime, end: datetime, service: str | None = None) -> list[str]:
    """Buckets covering [start, end): whole days as day keys, the ragged edges as hour keys."""
    keys: list[str] = []
    t = start.replace(minute=0, second=0, microsecond=0)
    while t < end:
        tomorrow = next_day(t)
        if t.hour == 0 and tomorrow <= end:
            keys.append(day_key(t, service))
            t = tomorrow
        else:
            keys.append(hour_key(t, service))
            t = next_hour(t)
    return keys


def add(totals: dict[str, float], row: dict[str, str]) -> None:
    for k, v in row.items():
        try:
            totals[k] = totals.get(k, 0.0) + float(v)
        except ValueError:
            continue


class Rollups:
    def __init__(self, redis: aioredis.Redis, *, short_abandon_s: float = 5.0, sl_threshold_s: float = 20.0,
                 retention_days: int = 30, tz: tzinfo | None = None) -> None:
        self.redis = redis
        self.tz = tz  # buckets are the town hall's hours and days
        self.short_abandon_s = short_abandon_s
        self.sl_threshold_s = sl_threshold_s
        self.retention_s = retention_days * 86400

    # ---- writing
    async def add_call(self, events: list[ev._Event]) -> CallFacts | None:
        """Count one ended call (idempotent); None when it was counted already or has no start.

        The ``done`` marker, the counters and the repeat rule are one transaction (WATCH on the
        marker and the caller's last contained call): a Redis failure in the middle leaves nothing,
        a transaction applied whose reply was lost is seen as counted on the next try."""
        if not any(isinstance(e, ev.CallStarted) for e in events):
            return None
        f = call_facts(events, short_abandon_s=self.short_abandon_s)
        done = f"{P}done:{f.call_id}"
        contained = f"{P}contained:{f.caller_hash}" if f.caller_hash else None
        for _ in range(10):
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(done, *([contained] if contained else []))
                if await pipe.exists(done):
                    return None
                prior = await pipe.get(contained) if contained else None
                pipe.multi()
                pipe.set(done, "1", ex=DONE_TTL_S)
                self._count_ops(pipe, f)
                self._repeat_ops(pipe, f, prior)
                try:
                    await pipe.execute()
                except WatchError:  # another worker counted this call or this caller's last one; or the
                    continue  # line broke (applied or not): look again
                return f
        raise WatchError(f"could not count call {f.call_id}: its keys keep changing")

    def _count_ops(self, pipe, f: CallFacts) -> None:
        t = local(f.started, self.tz)
        incr = counters(f, sl_threshold_s=self.sl_threshold_s)
        for key in self._keys(t, f.service):
            for name, value in incr.items():
                if value:
                    pipe.hincrbyfloat(key, name, value)
        pipe.hincrbyfloat(day_key(t), f"hour:{t:%H}:offered", 1)
        if f.service:
            pipe.hincrbyfloat(day_key(t, f.service), f"hour:{t:%H}:offered", 1)
            pipe.sadd(f"{P}services", f.service)
        if f.no_match_texts:
            nm = f"{P}nomatch:{t:%Y%m%d}"
            for text in f.no_match_texts:
                pipe.zincrby(nm, 1, text[:200])
            pipe.zremrangebyrank(nm, 0, -(NOMATCH_PER_DAY + 1))
            pipe.expire(nm, self.retention_s)

    def _keys(self, t: datetime, service: str) -> list[str]:
        keys = [hour_key(t), day_key(t)]
        if service:
            keys += [hour_key(t, service), day_key(t, service)]
        return keys

    def _repeat_ops(self, pipe, f: CallFacts, raw: str | None) -> None:
        """Containment needs "no new call from the same number within 24 h": settle the caller's last one
        (``raw``: the caller's ``contained`` record, read under WATCH)."""
        if not f.caller_hash:
            return
        key = f"{P}contained:{f.caller_hash}"
        if raw:
            prior = json.loads(raw)
            if prior["call_id"] != f.call_id and 0 < f.started - prior["started"] <= REPEAT_WINDOW_S:
                t = local(prior["started"], self.tz)
                for k in self._keys(t, prior.get("service", "")):
                    pipe.hincrbyfloat(k, REPEAT_AFTER_CONTAINED, 1)
                pipe.delete(key)
        if f.outcome == "resolved_by_bot":  # (compared by start times: a replayed history counts the same)
            pipe.set(key, json.dumps({"call_id": f.call_id, "started": f.started, "service": f.service}),
                     ex=int(2 * REPEAT_WINDOW_S))

    async def add_callback_done(self, event: ev.CallbackDone) -> None:
        """A callback closed by an agent counts in the buckets of the call that asked for it."""
        # "done" counts once per request (an agent may press it twice); each "no answer" is an attempt
        # (marker and counters in one transaction, as in ``add_call``)
        marker = f"{P}done:cb:{event.callback_id}" + ("" if event.outcome == "done" else f":{event.ts}")
        started = await self.redis.hget(f"callbot:call:{event.call_id}", "started")
        service = await self.redis.hget(f"callbot:call:{event.call_id}", "service") or ""
        t = local(float(started) if started else event.ts, self.tz)
        for _ in range(10):
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(marker)
                if await pipe.exists(marker):
                    return
                pipe.multi()
                pipe.set(marker, "1", ex=DONE_TTL_S)
                for key in self._keys(t, service):
                    for name, value in callback_done_counters(event.outcome).items():
                        pipe.hincrbyfloat(key, name, value)
                try:
                    await pipe.execute()
                except WatchError:
                    continue
                return
        raise WatchError(f"could not count callback {event.callback_id}: its marker keeps changing")

    # ---- reading
    def here(self, t: datetime) -> datetime:
        return t.astimezone(self.tz) if self.tz else t

    async def totals(self, start: datetime, end: datetime, service: str | None = None) -> dict[str, float]:
        return await self._sum(period_keys(self.here(start), self.here(end), service))

    async def _sum(self, keys: Iterable[str]) -> dict[str, float]:
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        totals: dict[str, float] = {}
        for row in await pipe.execute():
            add(totals, row)
        return totals

    async def series(self, start: datetime, end: datetime, step: Literal["hour", "day"],
                     service: str | None = None,
                     fields: list[str] | None = None) -> list[tuple[datetime, dict[str, float]]]:
        """One row per hour or day; only ``fields`` when given (a year of days reads 365 small rows)."""
        start, end = self.here(start), self.here(end)
        points, t = [], start.replace(minute=0, second=0, microsecond=0)
        if step == "day":
            t = t.replace(hour=0)
        while t < end:
            points.append(t)
            t = next_day(t) if step == "day" else next_hour(t)
        pipe = self.redis.pipeline(transaction=False)
        for t in points:
            key = day_key(t, service) if step == "day" else hour_key(t, service)
            pipe.hmget(key, fields) if fields else pipe.hgetall(key)
        rows = await pipe.execute()
        if fields:
            return [(t, {k: float(v) for k, v in zip(fields, row) if v is not None}) for t, row in zip(points, rows)]
        return [(t, {k: float(v) for k, v in row.items()}) for t, row in zip(points, rows)]


    async def no_match(self, start: datetime, end: datetime, limit: int = 50) -> list[tuple[str, int]]:
        counts: dict[str, float] = {}
        start, end = self.here(start), self.here(end)
        t = start.replace(hour=0, minute=0, second=0, microsecond=0)
        keys = []
        while t < end:
            keys.append(f"{P}nomatch:{t:%Y%m%d}")
            t = next_day(t)
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.zrevrange(k, 0, limit * 4, withscores=True)
        for rows in await pipe.execute():
            for text, n in rows:
                counts[text] = counts.get(text, 0.0) + n
        return [(t, int(n)) for t, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]


def by_hour_and_weekday(series: list[tuple[datetime, dict[str, float]]],
                        step: Literal["hour", "day"]) -> tuple[list[float], list[float]]:
    """Calls offered per hour of day and per weekday (Monday first), from an hourly or a daily series
    (day buckets carry ``hour:HH:offered``)."""
    hours, weekdays = [0.0] * 24, [0.0] * 7
    for t, row in series:
        weekdays[t.weekday()] += row.get("offered", 0.0)
        if step == "hour":
            hours[t.hour] += row.get("offered", 0.0)
        else:
            for h in range(24):
                hours[h] += row.get(f"hour:{h:02d}:offered", 0.0)
    return hours, weekdays
