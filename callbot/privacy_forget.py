"""Forget one caller on request (RGPD art. 17): ``forget_number`` deletes everything about a number.

Its calls, their stream entries, tickets and callbacks, queue contexts, the repeat-caller key and the
no-match texts that quote it go; other calls that merely mention it (dictated, read back, typed) get
those events blanked. The matching and blanking helpers are shared with retention (``privacy.py``).
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from callbot.privacy import (
    _LSET_IF, BATCH, DOCUMENTS, SB, P, Report, _batches, _call_ids, _dumps, _stream_pages, _xdel, blank_event,
    compact, e164, event_texts, mentions, needle_of,
)
from callbot.stats.facts import caller_key

async def forget_number(redis: aioredis.Redis, number: str, *, dry_run: bool = False) -> Report:
    """Delete everything about ``number``; ``dry_run`` only reports what would go.

    Gone: calls whose caller is the number (summary, events, index entry, stream entries, switchboard
    waiting/hand-off contexts), tickets and callbacks that hold the number or come from those calls,
    the stats repeat-caller key, no-match texts that contain it. Other calls that mention it (a
    callback number dictated from another phone) keep their shape: the events that mention it are
    blanked (``blank_event``) and their stream entries deleted. Counts already in the statistics stay
    (they hold no number)."""
    target, needle = e164(number), needle_of(number)
    rep = Report()
    lset_if = redis.register_script(_LSET_IF)
    calls: set[str] = set()
    async for batch in _batches(_call_ids(redis)):
        pipe = redis.pipeline(transaction=False)
        for cid in batch:
            pipe.hmget(f"{P}call:{cid}", "caller", "status")
            pipe.lrange(f"{P}call:{cid}:events", 0, -1)
        res = await pipe.execute()
        for i, cid in enumerate(batch):
            (caller, status), raws = res[2 * i], res[2 * i + 1]
            docs = [json.loads(r) for r in raws]
            starts = [d for d in docs if d.get("type") == "call_started"]
            if (caller and e164(caller) == target) or any(e164(d.get("caller", "")) == target for d in starts):
                calls.add(cid)
                rep.add("calls", cid)
                if status == "in_progress" and not any(d.get("type") == "call_ended" for d in docs):
                    rep.notes.append(f"call {cid} is still in progress: run this again once it has ended")
                continue
            hits = [(j, d) for j, d in enumerate(docs) if mentions(event_texts(d), needle) and blank_event(d)]
            if hits:
                rep.events += len(hits)
                rep.add("calls_redacted", cid)
            for j, d in hits if not dry_run else ():  # compare-and-set: an event is never half-written
                await lset_if(keys=[f"{P}call:{cid}:events"], args=[j, raws[j], _dumps(d)])
    ordered = sorted(calls)
    for k in range(0, len(ordered) if not dry_run else 0, BATCH):
        cids = ordered[k:k + BATCH]
        await redis.delete(*[f"{P}call:{c}{s}" for c in cids for s in ("", ":events")],
                           *[f"{P}twilio:after:{c}" for c in cids], *[f"{SB}answer:{c}" for c in cids])
        await redis.zrem(f"{P}calls", *cids)
    await _forget_documents(redis, rep, calls, needle, dry_run)
    await _forget_stream(redis, rep, calls, needle, dry_run)
    contained = f"{P}stats:contained:{caller_key(target)}"
    if await redis.exists(contained):
        rep.add("keys", contained)
        if not dry_run:
            await redis.delete(contained)
    async for key in redis.scan_iter(match=f"{P}stats:nomatch:*", count=1000):
        texts = [t for t in await redis.zrange(key, 0, -1) if mentions(t, needle)]
        if texts:
            rep.add("keys", key)
            if not dry_run:
                await redis.zrem(key, *texts)
    if not dry_run and rep.touched:
        rep.notes.append(await compact(redis))
    for ids in rep.ids.values():
        ids.sort()
    return rep


async def _forget_documents(redis: aioredis.Redis, rep: Report, calls: set[str], needle: str,
                            dry_run: bool) -> None:
    """Tickets, callbacks and switchboard contexts of the calls, or holding the number."""
    for pattern, kind, texts in DOCUMENTS:
        async for keys in _batches(redis.scan_iter(match=pattern, count=1000)):
            for key, raw in zip(keys, await redis.mget(keys)):
                try:
                    d = json.loads(raw) if raw else None
                except ValueError:
                    continue
                if not isinstance(d, dict) or not (d.get("call_id") in calls
                                                   or mentions([d.get(t) for t in texts], needle)):
                    continue
                ident = str(d.get("id") or key)
                rep.add(kind, ident)
                if dry_run:
                    continue
                await redis.delete(key)
                if kind == "tickets":
                    await redis.zrem(f"{P}tickets", ident)
                elif kind == "callbacks":
                    await redis.zrem(f"{SB}callbacks:{d.get('service', '')}", ident)
                elif d.get("service") and d.get("call_id"):
                    await redis.zrem(f"{SB}queue:{d['service']}", d["call_id"])


async def _forget_stream(redis: aioredis.Redis, rep: Report, calls: set[str], needle: str, dry_run: bool) -> None:
    async for entries in _stream_pages(redis):
        ids = []
        for entry_id, fields in entries:
            if fields.get("call_id") in calls:
                ids.append(entry_id)
                continue
            try:
                d = json.loads(fields.get("json", "{}"))
            except ValueError:
                continue
            if isinstance(d, dict) and mentions(event_texts(d), needle):
                ids.append(entry_id)
        rep.stream_entries += len(ids) if dry_run else await _xdel(redis, ids)
