"""Retention and "forget a caller" against a real Redis, with calls written by the real event store."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from callbot import events as ev
from callbot.flows.text import fold, words_to_digits
from callbot.privacy import ERASED, Retention, anonymise_older_than
from callbot.privacy_forget import forget_number
from callbot.stats.facts import caller_key
from callbot.store import EventStore
from callbot.switchboard.callbacks import Callback
from tests.conftest import ROOT

NUMBER = "+33612345678"
VARIANTS = ("+33612345678", "0612345678", "06 12 34 56 78", "33612345678", "612345678")
OTHER = "+33698765432"
DAY = 86400.0


def call_events(call_id: str, caller: str, *, dictated: str = "", callback_id: str = "") -> list[ev._Event]:
    """A call that reports a broken street light and leaves a number (``dictated``, else its own)."""
    number = dictated or caller
    out = [
        ev.CallStarted(channel="sip", caller=caller, called="+33240000000", flow="mairie", flow_version="v1"),
        ev.CallAnswered(greeting_latency_ms=420.0),
        ev.NodeEntered(node="accueil", kind="ask"),
        ev.BotSaid(text="Bonjour, mairie de Saint-Aubin-les-Prés, je suis l'assistant automatique.", cached=True),
        ev.Transcript(text=f"le lampadaire du 3 rue Victor Hugo est cassé, rappelez-moi au {number}", node="accueil",
                      asr_ms=410.0),
        ev.IntentMatched(intent="eclairage", confidence=0.87, text="le lampadaire est cassé", node="accueil"),
        ev.TurnLatency(voice_to_voice_ms=1240.0, asr_ms=410.0, flow_ms=12.0, tts_ms=0.0),
        ev.SlotFilled(slot="telephone", value=number, confirmed=True, node="rappel_numero"),
        ev.BotSaid(text="J'ai noté le zéro six, douze, trente-quatre, cinquante-six, soixante-dix-huit.",
                   node="rappel_numero", cached=False) if number == NUMBER or "06" in number else
        ev.BotSaid(text="J'ai noté votre numéro.", node="rappel_numero", cached=False),
        ev.DigitsPressed(digits=re.sub(r"\D", "", number)[-10:], node="rappel_numero"),
        ev.DigitsPressed(digits="1", node="menu"),
        ev.TicketCreated(ticket_id=f"T-{call_id}", kind="eclairage", node="signal_ticket",
                         fields={"lieu": "3 rue Victor Hugo", "telephone": number, "service": "services_techniques",
                                 "caller": caller}),
        ev.SurveyAnswered(score=4, node="enquete"),
        ev.CallEnded(reason="bot_hangup", duration_s=64.0),
    ]
    if callback_id:
        out.insert(-1, ev.CallbackRequested(callback_id=callback_id, service="agent", number=number, reason="flow"))
    return out


async def write(redis_url: str, calls: list[tuple[str, float, list[ev._Event]]]) -> None:
    """Through the real store: stream, call index, per-call keys and tickets, as live calls."""
    store = EventStore(redis_url)
    await store.start()
    for call_id, t0, events in calls:
        for i, e in enumerate(events):
            store.emit(ev.stamp(e, call_id, t0 + 2.0 * i))
    assert await store.flush(10)
    await store.close()


async def add_callback(r: aioredis.Redis, cb_id: str, call_id: str, number: str, created: float) -> None:
    cb = Callback(id=cb_id, service="agent", number=number, call_id=call_id, reason="flow",
                  summary=f"rappeler au {number} pour le lampadaire", note="laissé un message au 06 11 22 33 44",
                  created=created, updated=created)
    await r.set(f"callbot:sb:callback:{cb_id}", cb.model_dump_json())
    await r.zadd("callbot:sb:callbacks:agent", {cb_id: created})
    await r.sadd("callbot:sb:callback_services", "agent")


@pytest.fixture
async def r(redis_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def fake_stats(redis_url: str) -> dict[str, tuple[bytes, int]]:
    """A few aggregate keys like the rollup's, and their exact bytes (DUMP) and TTL."""
    raw = aioredis.from_url(redis_url)
    await raw.hset("callbot:stats:h:2025010110", mapping={"offered": 12, "resolved_by_bot": 7, "v2v_ms_sum": 14500.5})
    await raw.hset("callbot:stats:d:20250101", mapping={"offered": 80, "hour:10:offered": 12})
    await raw.hset("callbot:stats:d:20250101:s:etat_civil", mapping={"offered": 9})
    await raw.zadd("callbot:stats:nomatch:20250101", {"une place de crèche pour mon chien": 2})
    out = {}
    for key in await raw.keys("callbot:stats:*"):
        out[key.decode()] = (await raw.dump(key), await raw.ttl(key))
    await raw.aclose()
    return out


async def dump_stats(redis_url: str) -> dict[str, tuple[bytes, int]]:
    raw = aioredis.from_url(redis_url)
    out = {k.decode(): (await raw.dump(k), await raw.ttl(k)) for k in await raw.keys("callbot:stats:*")}
    await raw.aclose()
    return out


async def test_retention_blanks_old_calls_and_keeps_recent_ones_and_stats(redis_url, r):
    now = time.time()
    old, recent = now - 40 * DAY, now - 1 * DAY
    await write(redis_url, [("old", old, call_events("old", NUMBER, callback_id="R-old")),
                            ("recent", recent, call_events("recent", OTHER, callback_id="R-recent"))])
    await add_callback(r, "R-old", "old", NUMBER, old + 20)
    await add_callback(r, "R-recent", "recent", OTHER, recent + 20)
    await r.xgroup_create("callbot:events", "stats", id="$")  # the stats consumer has read everything
    stats = await fake_stats(redis_url)
    recent_before = (await r.hgetall("callbot:call:recent"), await r.lrange("callbot:call:recent:events", 0, -1),
                     await r.get("callbot:ticket:T-recent"), await r.get("callbot:sb:callback:R-recent"))
    old_types = [json.loads(e)["type"] for e in await r.lrange("callbot:call:old:events", 0, -1)]

    rep = await anonymise_older_than(r, now - 30 * DAY)
    assert (rep.calls, rep.tickets, rep.callbacks) == (1, 1, 1)
    assert rep.events == 8 and rep.stream_entries == len(old_types) and not rep.notes

    summary = await r.hgetall("callbot:call:old")
    assert summary["caller"] == "" and summary["called"] == ""
    assert (summary["end_reason"], summary["last_intent"], summary["flow"]) == ("bot_hangup", "eclairage", "mairie")
    events = [json.loads(e) for e in await r.lrange("callbot:call:old:events", 0, -1)]
    assert [e["type"] for e in events] == old_types
    parsed = [ev.from_json(e) for e in events]  # still valid typed events
    by_type = {}
    for e in parsed:
        by_type.setdefault(e.type, []).append(e)
    assert by_type["transcript"][0].text == "" and by_type["transcript"][0].asr_ms == 410.0
    intent = by_type["intent"][0]
    assert (intent.intent, intent.confidence, intent.text) == ("eclairage", 0.87, "")
    slot = by_type["slot"][0]
    assert (slot.slot, slot.value, slot.confirmed) == ("telephone", ERASED, True)
    said = by_type["bot_said"]
    assert said[0].text.startswith("Bonjour") and said[1].text == ""  # fixed prompts stay, read-backs go
    assert [d.digits for d in by_type["digits"]] == ["", "1"]  # a typed number goes, a menu key stays
    assert by_type["ticket"][0].fields == {"lieu": "", "telephone": "", "service": "services_techniques",
                                           "caller": ""}
    assert by_type["callback_requested"][0].number == "" and by_type["survey"][0].score == 4
    assert by_type["latency"][0].voice_to_voice_ms == 1240.0 and by_type["call_ended"][0].duration_s == 64.0
    assert all(e.ts > 0 for e in parsed)

    ticket = json.loads(await r.get("callbot:ticket:T-old"))
    assert ticket["kind"] == "eclairage" and ticket["status"] == "open" and ticket["ts"] > 0
    assert ticket["fields"] == {"lieu": "", "telephone": "", "service": "services_techniques", "caller": ""}
    cb = json.loads(await r.get("callbot:sb:callback:R-old"))
    assert (cb["number"], cb["summary"], cb["note"]) == ("", "", "") and cb["service"] == "agent"

    stream = await r.xrange("callbot:events")
    assert {f["call_id"] for _, f in stream} == {"recent"} and len(stream) == len(recent_before[1])
    assert recent_before == (await r.hgetall("callbot:call:recent"),
                             await r.lrange("callbot:call:recent:events", 0, -1),
                             await r.get("callbot:ticket:T-recent"), await r.get("callbot:sb:callback:R-recent"))
    assert await dump_stats(redis_url) == stats
    for key in ("callbot:call:old", "callbot:call:old:events", "callbot:ticket:T-old", "callbot:sb:callback:R-old"):
        text = json.dumps(await _values(r, key), ensure_ascii=False)
        assert not any(v in text for v in VARIANTS[:4]), key

    again = await anonymise_older_than(r, now - 30 * DAY)  # idempotent, and cheap: nothing read again
    assert again.touched == 0
    # an agent closes the old callback today: the note lands in the old call and is blanked next time
    await write(redis_url, [("old", now, [ev.CallbackDone(callback_id="R-old", outcome="done", agent="marie",
                                                           note="rappelé au 06 12 34 56 78")])])
    rep = await anonymise_older_than(r, now - 30 * DAY)
    assert (rep.calls, rep.events) == (1, 1)
    assert ev.from_json((await r.lrange("callbot:call:old:events", -1, -1))[0]).note == ""
    assert await dump_stats(redis_url) == stats


async def test_retention_keeps_stream_entries_no_consumer_has_read(redis_url, r):
    now = time.time()
    await r.xgroup_create("callbot:events", "stats", id="0", mkstream=True)  # created, nothing read yet
    await write(redis_url, [("old", now - 40 * DAY, call_events("old", NUMBER))])
    rep = await anonymise_older_than(r, now - 30 * DAY)
    assert rep.stream_entries == 0 and rep.calls == 1 and "no consumer group has read" in rep.notes[0]
    assert await r.xlen("callbot:events") == len(call_events("old", NUMBER))


async def test_retention_task_runs_once_per_period_across_workers(redis_url, r):
    now = time.time()
    await write(redis_url, [("old", now - 40 * DAY, call_events("old", NUMBER))])
    a, b = Retention(r, 30, first_s=0.05, every_s=3600), Retention(r, 30, first_s=0.05, every_s=3600)
    await a.start()
    await b.start()
    for _ in range(100):
        if a.last or b.last:
            break
        await asyncio.sleep(0.05)
    await a.stop()
    await b.stop()
    assert [x.last.calls for x in (a, b) if x.last] == [1]  # one worker did it, the other found the lock
    assert (await r.hgetall("callbot:call:old"))["caller"] == ""


async def _values(r: aioredis.Redis, key: str) -> list:
    kind = await r.type(key)
    if kind == "string":
        return [await r.get(key)]
    if kind == "hash":
        return [x for kv in (await r.hgetall(key)).items() for x in kv]
    if kind == "list":
        return await r.lrange(key, 0, -1)
    if kind == "set":
        return list(await r.smembers(key))
    if kind == "zset":
        return [x for m, s in await r.zrange(key, 0, -1, withscores=True) for x in (m, str(s))]
    if kind == "stream":
        return [x for i, f in await r.xrange(key) for x in (i, *f.keys(), *f.values())]
    return []


def _leaves(value):
    """Every string inside a value, JSON documents opened (so ids and times do not run into each other)."""
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except ValueError:
            inner = None
        if isinstance(inner, (dict, list)):
            yield from _leaves(inner)
        else:
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


async def traces(r: aioredis.Redis, key_hashes: tuple[str, ...] = ()) -> list[str]:
    """Every key or value anywhere in Redis that holds the number, however written (even in words)."""
    found = []
    async for key in r.scan_iter(count=1000):
        if any(h in key for h in key_hashes):
            found.append(key)
        for raw in [key, *await _values(r, key)]:
            if any(v in raw for v in VARIANTS):
                found.append(f"{key}: {raw[:120]}")
                continue
            for leaf in _leaves(raw):
                spoken = re.sub(r"\D", "", words_to_digits(fold(leaf)))
                if "612345678" in re.sub(r"\D", "", leaf) or "612345678" in spoken:
                    found.append(f"{key}: {leaf[:120]}")
    return found


async def forget_fixture(redis_url: str, r: aioredis.Redis) -> float:
    now = time.time()
    await write(redis_url, [
        ("c-mine-1", now - 3 * DAY, call_events("c-mine-1", "0612345678", callback_id="R-mine")),
        ("c-mine-2", now - 600, call_events("c-mine-2", NUMBER)),
        ("c-wife", now - 2 * DAY, call_events("c-wife", OTHER, dictated="06 12 34 56 78")),  # gives my number
        ("c-else", now - DAY, call_events("c-else", "+33155667788", dictated="+33155667788", callback_id="R-else")),
    ])
    await add_callback(r, "R-mine", "c-mine-1", "0612345678", now - 3 * DAY)
    await add_callback(r, "R-else", "c-else", "+33155667788", now - DAY)
    await add_callback(r, "R-wife", "c-wife", "33612345678", now - 2 * DAY)
    waiting = {"call_id": "c-mine-2", "service": "etat_civil", "caller": NUMBER, "summary": "acte de naissance",
               "transcript": [{"who": "caller", "text": "je suis au 06 12 34 56 78"}]}
    await r.set("callbot:sb:waiting:c-mine-2", json.dumps(waiting), ex=90)
    await r.zadd("callbot:sb:queue:etat_civil", {"c-mine-2": 1.0})
    await r.set("callbot:sb:handoff:c-mine-1", json.dumps({**waiting, "call_id": "c-mine-1"}), ex=3600)
    await r.set(f"callbot:stats:contained:{caller_key(NUMBER)}", json.dumps({"call_id": "c-mine-2",
                                                                             "started": now - 600}), ex=86400)
    await r.zadd("callbot:stats:nomatch:20250101", {"mon numéro c'est le 06 12 34 56 78": 1, "un chien": 3})
    await r.hset("callbot:stats:d:20250101", mapping={"offered": 4})
    return now


async def test_forget_number_leaves_no_trace(redis_url, r):
    await forget_fixture(redis_url, r)
    assert len(await traces(r)) > 10  # the checker does see the number

    before = {k: await _values(r, k) async for k in r.scan_iter()}
    dry = await forget_number(r, "06 12 34 56 78", dry_run=True)
    assert {k: await _values(r, k) async for k in r.scan_iter()} == before  # a dry run changes nothing
    rep = await forget_number(r, "06 12 34 56 78")
    assert (dry.calls, dry.tickets, dry.callbacks, dry.stream_entries) == (
        rep.calls, rep.tickets, rep.callbacks, rep.stream_entries)

    assert sorted(rep.ids["calls"]) == ["c-mine-1", "c-mine-2"] and rep.calls == 2
    assert sorted(rep.ids["tickets"]) == ["T-c-mine-1", "T-c-mine-2", "T-c-wife"]
    assert sorted(rep.ids["callbacks"]) == ["R-mine", "R-wife"]
    assert rep.ids["calls_redacted"] == ["c-wife"] and rep.events >= 5
    assert f"callbot:stats:contained:{caller_key(NUMBER)}" in rep.ids["keys"]
    assert rep.stream_entries == 2 * len(call_events("x", NUMBER)) + 1 + rep.events
    assert await traces(r, (caller_key(NUMBER),)) == []

    # the rest is intact: other callers, the wife's call (blanked where it said my number), statistics
    assert await r.zrange("callbot:calls", 0, -1) == ["c-wife", "c-else"]
    assert (await r.hgetall("callbot:call:c-wife"))["caller"] == OTHER
    assert await r.llen("callbot:call:c-wife:events") == len(call_events("c-wife", OTHER))
    assert json.loads(await r.get("callbot:ticket:T-c-else"))["fields"]["telephone"] == "+33155667788"
    assert await r.exists("callbot:sb:callback:R-else") and not await r.exists("callbot:sb:waiting:c-mine-2")
    assert await r.zrange("callbot:sb:queue:etat_civil", 0, -1) == []
    assert await r.zrange("callbot:stats:nomatch:20250101", 0, -1) == ["un chien"]
    assert await r.hget("callbot:stats:d:20250101", "offered") == "4"

    assert (await forget_number(r, NUMBER)).touched == 0  # nothing left to find


async def test_forget_rejects_what_is_not_a_number(r):
    from callbot.privacy import PrivacyError

    with pytest.raises(PrivacyError, match="not a phone number"):
        await forget_number(r, "12")


def _cli(redis_url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALLBOT_REDIS_URL": redis_url, "CALLBOT_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "callbot", "privacy", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def test_cli_forget_and_retention(redis_url, r, tmp_path):
    await forget_fixture(redis_url, r)
    await write(redis_url, [("c-old", time.time() - 60 * DAY, call_events("c-old", "+33155667788"))])

    out = await asyncio.to_thread(_cli, redis_url, tmp_path, "forget", "+33612345678", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "simulation" in out.stdout and "appels supprimés : 2 (c-mine-1, c-mine-2)" in out.stdout
    assert await r.exists("callbot:call:c-mine-1")

    out = await asyncio.to_thread(_cli, redis_url, tmp_path, "forget", "33612345678")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "numéro : 33612345678"
    assert "appels supprimés : 2 (c-mine-1, c-mine-2)" in lines
    assert "demandes de rappel supprimées : 2 (R-mine, R-wife)" in lines
    assert any(x.startswith("tickets supprimés : 3 (") for x in lines)
    assert not await r.exists("callbot:call:c-mine-1")

    out = await asyncio.to_thread(_cli, redis_url, tmp_path, "retention", "--days", "30")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rétention : 30 jours") and "appels anonymisés : 1" in out.stdout
    assert (await r.hgetall("callbot:call:c-old"))["caller"] == ""

    out = await asyncio.to_thread(_cli, redis_url, tmp_path, "forget", "hello")
    assert out.returncode == 2 and "not a phone number" in out.stderr
