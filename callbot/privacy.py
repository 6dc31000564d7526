"""Personal data in Redis: keep call details ``retention_days`` (forgetting one caller on request:
``privacy_forget.py``, built on the helpers here).

Why: a call holds the caller's number, what they said and what the bot read back (numbers,
addresses, complaints). The town needs that for a few weeks (callbacks, tickets, the call log),
not forever, and anyone may ask to be forgotten (RGPD art. 17). The statistics
(``callbot:stats:*``: counts, no numbers, no transcripts) are never touched by retention.

- ``anonymise_older_than``: old calls keep their shape (types, times, nodes, intents, confidences,
  slot names) with free texts and numbers blanked, also in their tickets and callbacks; old stream
  entries are deleted. ``Retention`` runs it hourly.
- ``forget_number``: everything about one number is deleted; other calls that merely mention it
  (dictated, read back, typed) get those events blanked.

Functions want a ``decode_responses=True`` client (the store's). They work in batches, are
idempotent and safe while calls run: rewrites are compare-and-set (Lua), so a concurrent write by
a call, a console or another worker is never undone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from callbot.errors import CallbotError
from callbot.flows.text import fold, words_to_digits

log = logging.getLogger(__name__)

P = "callbot:"
SB = "callbot:sb:"
STREAM = f"{P}events"
ERASED = "<effacé>"
BATCH = 500
STREAM_BATCH = 1000
KEEP_TICKET_FIELDS = frozenset({"service"})  # a category the flow sets, not something the caller said
TEXT_FIELDS: dict[str, tuple[str, ...]] = {  # event type -> fields that may hold what a caller said (-> "")
    "call_started": ("caller", "called"), "transcript": ("text",), "intent": ("text",), "emergency": ("text",),
    "callback_requested": ("number",), "callback_done": ("note",), "error": ("message",)}
CALLBACK_TEXT = ("number", "summary", "note")
# JSON documents forget_number looks into: key pattern -> (report kind, fields that may hold the number)
DOCUMENTS = ((f"{P}ticket:*", "tickets", ("fields",)), (f"{SB}callback:*", "callbacks", CALLBACK_TEXT),
             (f"{SB}waiting:*", "keys", ("caller", "summary", "slots", "transcript")),
             (f"{SB}handoff:*", "keys", ("caller", "summary", "slots", "transcript")))

# Rewrite one call: LSET the changed events (never past the list's end), blank the summary's numbers
# and remember how many events are done. Nothing is written to a call that is gone (forgotten).
_REWRITE_CALL = """
local n = redis.call('LLEN', KEYS[2])
for i = 2, #ARGV, 2 do
  if tonumber(ARGV[i]) < n then redis.call('LSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'caller', '', 'called', '', 'anonymised', ARGV[1])
end
"""
# Compare-and-set of a JSON document (ticket, callback) and of one list item: a concurrent change wins.
_CAS = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end"
_LSET_IF = ("if redis.call('LINDEX', KEYS[1], ARGV[1]) == ARGV[2] then "
            "redis.call('LSET', KEYS[1], ARGV[1], ARGV[3]) end")


class PrivacyError(CallbotError):
    code = "privacy_error"


@dataclass
class Report:
    """What one run touched: counts, and for ``forget_number`` the ids (``ids[kind]``, kind as the counts;
    ``calls_redacted``: other calls that mentioned the number, ``keys``: other keys)."""

    calls: int = 0
    events: int = 0
    stream_entries: int = 0
    tickets: int = 0
    callbacks: int = 0
    other_keys: int = 0
    calls_redacted: int = 0
    ids: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, ident: str) -> None:
        self.ids.setdefault(kind, []).append(ident)
        counter = {"keys": "other_keys"}.get(kind, kind)
        setattr(self, counter, getattr(self, counter) + 1)

    @property
    def touched(self) -> int:
        return sum((self.calls, self.events, self.stream_entries, self.tickets, self.callbacks, self.other_keys,
                    self.calls_redacted))


# ---- numbers and texts
def e164(number: str) -> str:
    """``+33612345678`` for any way a French number is written (else the digits with ``+``); "" if none."""
    raw = re.sub(r"[\s.\-()/]", "", (number or "").strip())
    if raw.startswith("sip:"):
        raw = raw[4:].split("@", 1)[0]
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        return "+" + (digits[:2] + digits[3:] if digits.startswith("330") else digits)
    if digits.startswith("00"):
        return "+" + digits[2:]
    if re.fullmatch(r"0[1-9]\d{8}", digits):
        return "+33" + digits[1:]
    if re.fullmatch(r"33[1-9]\d{8}", digits):
        return "+" + digits
    return "+" + digits if digits else ""


def needle_of(number: str) -> str:
    """The digits that identify the number inside any text: ``612345678`` for a French number (so
    ``06 12 34 56 78``, ``+33 6 12…`` and "zéro six douze…" all match), else all its digits."""
    n = e164(number)
    if not 8 <= len(n) - 1 <= 15:
        raise PrivacyError(f"{number!r} is not a phone number (expected e.g. +33612345678 or 06 12 34 56 78)")
    return n[3:] if n.startswith("+33") and len(n) == 12 else n[1:]


def mentions(value: Any, needle: str) -> bool:
    """Whether a string (or any string inside a dict/list) contains the number, in digits or in words."""
    if isinstance(value, (dict, list)):
        return any(mentions(v, needle) for v in (value.values() if isinstance(value, dict) else value))
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)  # words only when "zéro" may start a dictated number
        return needle in re.sub(r"\D", "", text) or ("z" in text.lower() and needle in re.sub(
            r"\D", "", words_to_digits(fold(text))))
    return False


def event_texts(d: dict) -> list[Any]:
    """The values of one event (a JSON dict) that may hold what a caller said, dictated or typed."""
    kind = d.get("type")
    extra = {"slot": "value", "bot_said": "text", "digits": "digits", "ticket": "fields"}.get(kind)
    return [d.get(name) for name in (*TEXT_FIELDS.get(kind, ()), *((extra,) if extra else ()))]


def blank_event(d: dict) -> bool:
    """Blank what a caller said or dictated in one event (a JSON dict, changed in place); True if changed.
    Kept: type, times, nodes, intent names, confidences, slot names, yes/no answers, pre-rendered prompts
    (``bot_said`` with ``cached``: the flow's fixed texts), menu keys."""
    before = json.dumps(d, sort_keys=True)
    kind = d.get("type")
    for name in TEXT_FIELDS.get(kind, ()):
        if d.get(name):
            d[name] = ""
    if kind == "slot" and not isinstance(d.get("value"), bool) and d.get("value") not in (None, ""):
        d["value"] = ERASED
    elif kind == "bot_said" and not d.get("cached"):
        d["text"] = ""
    elif kind == "digits" and len(d.get("digits", "")) > 2:  # a number typed on the keypad, not a menu key
        d["digits"] = ""
    elif kind == "ticket":
        d["fields"] = _blank_fields(d.get("fields") or {})
    return json.dumps(d, sort_keys=True) != before


def _blank_fields(fields: dict) -> dict:
    return {k: (v if k in KEEP_TICKET_FIELDS else "") for k, v in fields.items()}


def _dumps(d: dict) -> str:
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))  # as pydantic writes events


def _sid(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _batches(it: AsyncIterator[str], size: int = BATCH) -> AsyncIterator[list[str]]:
    batch: list[str] = []
    async for item in it:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _pipelined(redis: aioredis.Redis, commands: list[tuple]) -> list:
    pipe = redis.pipeline(transaction=False)
    for name, *args in commands:
        getattr(pipe, name)(*args)
    return await pipe.execute() if commands else []


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # no start time known: left alone


async def _call_ids(redis: aioredis.Redis) -> AsyncIterator[str]:
    """Every call with keys (``call:{id}`` or ``call:{id}:events``), also those the recent-calls index
    dropped (it keeps ``call_log_max``; their keys live on until their TTL)."""
    seen: set[str] = set()
    async for key in redis.scan_iter(match=f"{P}call:*", count=1000):
        cid = key[len(P) + 5:].removesuffix(":events")
        if cid not in seen:
            seen.add(cid)
            yield cid


async def _stream_pages(redis: aioredis.Redis) -> AsyncIterator[list[tuple[str, dict]]]:
    start = "-"
    while True:
        try:
            entries = await redis.xrange(STREAM, min=start, max="+", count=STREAM_BATCH)
        except ResponseError:  # not a stream (yet)
            return
        if not entries:
            return
        yield entries
        ms, seq = _sid(entries[-1][0])
        start = f"{ms}-{seq + 1}"  # exclusive ranges "(" need Redis 6.2


async def _xdel(redis: aioredis.Redis, ids: list[str]) -> int:
    done = 0
    for i in range(0, len(ids), STREAM_BATCH):
        done += await redis.xdel(STREAM, *ids[i:i + STREAM_BATCH])
    return done


# ---- retention
async def anonymise_older_than(redis: aioredis.Redis, cutoff_ts: float) -> Report:
    """Blank numbers and free texts of everything started before ``cutoff_ts`` (epoch seconds).

    Calls (summary ``caller``/``called``, text fields of every event), their tickets (fields but
    ``service``), callbacks (number, summary, note: one still open after the whole period loses its
    number too). Stream entries whose event ``ts`` is older are
    deleted (XDEL), not rewritten: the stats consumer read them long ago and the hourly/daily buckets
    hold their counts; an entry no consumer group has been given yet is kept (counted in ``notes``)
    so stopping the server for a while never loses statistics. Idempotent: a call remembers how many
    of its events are done (summary field ``anonymised``), so a later run only reads new ones
    (a ``callback_done`` stored under an old call) and an hourly run costs one SCAN of the call keys.
    """
    rep = Report()
    rewrite, cas = redis.register_script(_REWRITE_CALL), redis.register_script(_CAS)
    async for batch in _batches(_call_ids(redis)):
        await _anonymise_calls(redis, rewrite, batch, cutoff_ts, rep)
    tickets = [f"{P}ticket:{t}" for t in await redis.zrangebyscore(f"{P}tickets", "-inf", f"({cutoff_ts}")]
    rep.tickets = await _cas_blank(redis, cas, tickets,
                                   lambda d: d.update(fields=_blank_fields(d.get("fields") or {})))
    callbacks = [f"{SB}callback:{c}" for service in sorted(await redis.smembers(f"{SB}callback_services"))
                 for c in await redis.zrangebyscore(f"{SB}callbacks:{service}", "-inf", f"({cutoff_ts}")]
    rep.callbacks = await _cas_blank(redis, cas, callbacks, lambda d: d.update({k: "" for k in CALLBACK_TEXT}))
    await _expire_stream(redis, cutoff_ts, rep)
    return rep


async def _anonymise_calls(redis: aioredis.Redis, rewrite, batch: list[str], cutoff: float, rep: Report) -> None:
    """One batch of calls: three pipelined round trips, the last one a Lua rewrite per call that needs it."""
    pipe = redis.pipeline(transaction=False)
    for cid in batch:
        pipe.hmget(f"{P}call:{cid}", "started", "caller", "called", "anonymised")
        pipe.llen(f"{P}call:{cid}:events")
    res = await pipe.execute()
    rows = {cid: (*res[2 * i], res[2 * i + 1]) for i, cid in enumerate(batch)}
    no_start = [cid for cid, row in rows.items() if not row[0]]  # no summary: the first event's time
    firsts = await _pipelined(redis, [("lindex", f"{P}call:{cid}:events", 0) for cid in no_start])
    starts = {cid: _float(row[0]) for cid, row in rows.items()}
    starts.update({cid: _float(json.loads(first).get("ts")) if first else None
                   for cid, first in zip(no_start, firsts)})
    todo: list[tuple[str, int, int]] = []
    for cid, (_, caller, called, done, n) in rows.items():
        done_n = int(done or 0) if int(done or 0) <= n else 0  # a list shorter than the mark: start over
        if starts[cid] is not None and starts[cid] < cutoff and (caller or called or n > done_n):
            todo.append((cid, done_n, n))
    lists = await _pipelined(redis, [("lrange", f"{P}call:{cid}:events", d, n - 1) for cid, d, n in todo])
    pipe = redis.pipeline(transaction=False)
    for (cid, done_n, _), raws in zip(todo, lists):
        changes: list[Any] = []
        for j, raw in enumerate(raws):
            d = json.loads(raw)
            if isinstance(d, dict) and blank_event(d):
                changes += [done_n + j, _dumps(d)]
        await rewrite(keys=[f"{P}call:{cid}", f"{P}call:{cid}:events"], args=[done_n + len(raws), *changes],
                      client=pipe)
        rep.calls += 1
        rep.events += len(changes) // 2
    if todo:
        await pipe.execute()


async def _cas_blank(redis: aioredis.Redis, cas, keys: list[str], blank: Callable[[dict], None]) -> int:
    """Blank JSON documents (tickets, callbacks) by batches, compare-and-set; the count changed."""
    n = 0
    for i in range(0, len(keys), BATCH):
        pipe = redis.pipeline(transaction=False)
        for key, raw in zip(keys[i:i + BATCH], await redis.mget(keys[i:i + BATCH])):
            if not raw:
                continue
            d = json.loads(raw)
            blank(d)
            if d == json.loads(raw):
                continue
            new = json.dumps(d, ensure_ascii=False) if key.startswith(f"{P}ticket:") else _dumps(d)  # as written
            await cas(keys=[key], args=[raw, new], client=pipe)
            n += 1
        await pipe.execute()
    return n


async def _expire_stream(redis: aioredis.Redis, cutoff: float, rep: Report) -> None:
    try:
        groups = await redis.xinfo_groups(STREAM)
    except ResponseError:  # no stream
        return
    bound = min((_sid(g["last-delivered-id"]) for g in groups), default=(2 ** 63, 0))
    undelivered = 0
    async for entries in _stream_pages(redis):
        old: list[str] = []
        for entry_id, fields in entries:
            try:
                ts = float(json.loads(fields["json"])["ts"])
            except (KeyError, ValueError, TypeError):
                continue
            if ts < cutoff:
                if _sid(entry_id) <= bound:
                    old.append(entry_id)
                else:
                    undelivered += 1
        rep.stream_entries += await _xdel(redis, old)
    if undelivered:
        rep.notes.append(f"{undelivered} old stream entries kept: no consumer group has read them yet")


class Retention:
    """Anonymise calls older than ``retention_days``, every ``every_s`` (first run ``first_s`` after start).

    Several workers may run one each: a Redis lock lets one of them work per period. After a run
    that changed something, the append-only file is compacted (at most daily) so the blanked texts
    leave the disk too, not only the memory."""

    LOCK = f"{P}privacy:retention_lock"

    def __init__(self, redis: aioredis.Redis, retention_days: int, *, every_s: float = 3600.0,
                 first_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.retention_days = retention_days
        self.every_s = every_s
        self.first_s = first_s
        self.clock = clock
        self.last: Report | None = None
        self._compacted = 0.0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run_once(self) -> Report | None:
        """One pass now; None when another worker holds this period's lock."""
        if not await self.redis.set(self.LOCK, secrets.token_hex(8), nx=True, ex=max(1, int(self.every_s * 0.9))):
            return None
        rep = await anonymise_older_than(self.redis, self.clock() - self.retention_days * 86400)
        self.last = rep
        if rep.touched:
            log.info("retention (%d days): %d calls, %d events, %d stream entries, %d tickets, %d callbacks "
                     "anonymised", self.retention_days, rep.calls, rep.events, rep.stream_entries, rep.tickets,
                     rep.callbacks)
            if self.clock() - self._compacted > 86400:
                self._compacted = self.clock()
                log.info("retention: %s", await compact(self.redis))
        for note in rep.notes:
            log.warning("retention: %s", note)
        return rep

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_s)
        while True:
            try:
                await self.run_once()
            except (RedisError, OSError) as e:
                log.error("retention run failed (Redis: %s); next try in %.0f s", e, self.every_s)
            except Exception:  # a bad document must not stop retention for good
                log.exception("retention run failed; next try in %.0f s", self.every_s)
            await asyncio.sleep(self.every_s)


async def compact(redis: aioredis.Redis) -> str:
    """Rewrite Redis's append-only file: deleted and blanked data otherwise stays in it on disk."""
    try:
        if (await redis.config_get("appendonly")).get("appendonly") != "yes":
            return "no append-only file to compact"
        await redis.bgrewriteaof()
        return "append-only file rewrite started"
    except ResponseError as e:  # CONFIG disabled (managed Redis) or a rewrite already running
        return f"append-only file not compacted ({e}): run BGREWRITEAOF on the Redis server"


# ---- forgetting a number
