"""How fast are the stats? ``/api/stats`` over a year with 1 million calls stored, and the consumer's pace.

1. Rollups of a year: ``--calls`` calls (default 1 000 000) spread over 365 days with a town hall's
   hourly profile, each call one of a few hundred realistic shapes (outcomes, queues, latencies) whose
   counters come from the real pure code (``call_facts`` -> ``counters``). The hour and day buckets are
   written as the consumer would leave them (summed per bucket: writing 1 M calls one by one would take
   an hour and prove nothing more about reading).
2. ``GET /api/stats`` through the real aiohttp handler (auth included) for a day, 30 days and a year:
   p50/p95 over ``--repeat`` requests, plus Redis memory of the rollups.
3. The consumer group: ``--stored`` real calls (default 5 000) written through ``EventStore`` and
   counted by ``StatsConsumer.run_once()``: calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from callbot import events as ev
from callbot_testing.bench.nlu import cpu_flags
from callbot.understanding.evaluate import pct
from callbot.redis_server import RedisServer
from callbot.stats import call_facts, counters
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups, day_key, hour_key

HOURLY = [0, 0, 0, 0, 0, 0, 1, 3, 9, 14, 13, 11, 6, 5, 12, 13, 11, 7, 3, 2, 1, 1, 0, 0]
WEEKDAY = [1.3, 1.0, 1.1, 1.0, 1.0, 0.35, 0.05]
INTENTS = ["horaires", "acte_naissance", "carte_identite", "passeport", "eclairage", "encombrants", "etat_civil",
           "inscription_ecole", "urbanisme", "cantine", "cimetiere", "dechets"]


def shape(rng: random.Random, cid: str, t0: float) -> list[ev._Event]:
    """One plausible call (the mix of the demo week)."""
    out: list[ev._Event] = [ev.CallStarted(channel=rng.choice(["sip", "twilio"]), caller=f"+336{rng.randrange(10**8):08d}")]
    r = rng.random()
    if r < 0.02:
        out += [ev.Overload(what="sip_busy"), ev.CallEnded(reason="rejected")]
    else:
        out.append(ev.CallAnswered(greeting_latency_ms=rng.uniform(300, 900)))
        intent = rng.choice(INTENTS)
        out += [ev.Transcript(text="bla", asr_ms=rng.uniform(200, 900)),
                ev.IntentMatched(intent=intent if r > 0.1 else None, confidence=0.8, text="bla"),
                ev.TurnLatency(voice_to_voice_ms=rng.uniform(900, 2600))]
        if r < 0.06:
            out.append(ev.CallEnded(reason="caller_hangup", duration_s=rng.uniform(1, 30)))
        elif r < 0.62:
            out += [ev.SurveyAnswered(score=rng.randint(1, 5))] if rng.random() < 0.3 else []
            out.append(ev.CallEnded(reason=rng.choice(["bot_hangup", "caller_hangup"]), duration_s=60))
        else:
            wait = rng.expovariate(1 / 40)
            out += [ev.IntentMatched(intent="parler_agent", confidence=0.9, text="un agent"),
                    ev.TransferRequested(target="agent"), ev.Queued(service="agent", position=rng.randint(1, 4))]
            if r < 0.88:
                out += [ev.AgentOffered(agent="a"), ev.AgentAnswered(agent="a", service="agent", wait_s=wait),
                        ev.AgentConnected(agent="a", service="agent", talk_s=rng.uniform(60, 400)),
                        ev.CallEnded(reason="transferred", duration_s=wait + 200)]
            elif r < 0.94:
                out += [ev.Abandoned(service="agent", wait_s=wait), ev.CallEnded(reason="caller_hangup")]
            else:
                out += [ev.QueueLeft(service="agent", wait_s=wait, cause="callback_key"),
                        ev.CallbackRequested(callback_id=f"R{cid}", service="agent", number="0600000000"),
                        ev.CallEnded(reason="bot_hangup")]
    return [ev.stamp(e, cid, t0 + i) for i, e in enumerate(out)]


def templates(n: int, rng: random.Random) -> tuple[list[str], np.ndarray, list[str]]:
    rows = [counters(call_facts(shape(rng, f"t{i}", 0.0))) for i in range(n)]
    names = sorted({k for r in rows for k in r})
    services = ["agent" if any(k.startswith("outcome:agent") or k == "queued" for k in r) else "" for r in rows]
    return names, np.array([[r.get(k, 0.0) for k in names] for r in rows]), services


async def write_year(redis, start: datetime, calls: int, rng: random.Random) -> float:
    names, matrix, _ = templates(300, rng)
    weights = np.array([HOURLY[h] * WEEKDAY[(start + timedelta(days=d)).weekday()]
                        for d in range(365) for h in range(24)], dtype=float)
    per_hour = np.random.default_rng(1).multinomial(calls, weights / weights.sum())
    t0 = time.perf_counter()
    pipe = redis.pipeline(transaction=False)
    day_rows: dict[str, np.ndarray] = {}
    for i, n in enumerate(per_hour):
        if not n:
            continue
        t = start + timedelta(hours=int(i))
        mix = np.random.default_rng(i).multinomial(int(n), np.full(len(matrix), 1 / len(matrix)))
        row = mix @ matrix
        pipe.hset(hour_key(t), mapping={k: float(v) for k, v in zip(names, row) if v})
        dk = day_key(t)
        day_rows[dk] = day_rows.get(dk, 0) + row
        pipe.hset(dk, f"hour:{t:%H}:offered", float(n))
        if len(pipe) > 2000:
            await pipe.execute()
    for dk, row in day_rows.items():
        pipe.hset(dk, mapping={k: float(v) for k, v in zip(names, row) if v})
    await pipe.execute()
    return time.perf_counter() - t0


async def time_api(url: str, headers: dict, query: str, repeat: int) -> list[float]:
    import aiohttp

    times = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(repeat):
            t0 = time.perf_counter()
            async with http.get(url + "/api/stats?" + query) as r:
                assert r.status == 200, await r.text()
                await r.read()
            times.append((time.perf_counter() - t0) * 1000)
    return times


async def main_async(args: argparse.Namespace) -> int:
    from aiohttp import web

    from callbot.store import EventStore
    from callbot.switchboard.accounts import Accounts
    from callbot.web import api, stats_api
    from callbot.web.auth import accounts_on, setup_auth
    from tests.test_console import FAST, fake_runtime  # the same small runtime the API tests use

    print("command:", " ".join(sys.argv))
    print(f"cpu: {cpu_flags()}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), persist=False).start()
        store = EventStore(server.url)
        await store.start()
        runner = None
        try:
            redis = store.redis
            start = datetime(2025, 1, 1).astimezone()
            secs = await write_year(redis, start, args.calls, rng)
            mem = (await redis.info("memory"))["used_memory"] / 1e6
            print(f"1. rollups of {args.calls:,} calls over 365 days written in {secs:.1f} s; "
                  f"Redis used_memory {mem:.1f} MB (rollups only, no per-call data)")
            app = web.Application()
            rt = fake_runtime(store)
            rt.settings = argparse.Namespace(stats_short_abandon_secs=5.0, stats_service_level_secs=20.0,
                                             retention_days=30)
            rt.switchboard = None
            app[api.RUNTIME] = rt
            stats_api.setup_routes(app)
            app[stats_api.ROLLUPS] = Rollups(redis)
            setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis, hasher=FAST))
            accounts = Accounts(redis, hasher=FAST)
            await accounts.add("bench", "ops", "motdepasse-bench")
            headers = {"Authorization": f"Bearer {await accounts.new_token('bench')}"}
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            print(f"2. GET /api/stats (real handler, bearer auth, {args.repeat} requests each)")
            for label, query in (("one day", "from=2025-06-10&to=2025-06-10"),
                                 ("30 days", "from=2025-06-01&to=2025-06-30"),
                                 ("a year", "from=2025-01-01&to=2025-12-31")):
                times = await time_api(url, headers, query, args.repeat)
                print(f"  {label:8s} p50 {pct(times, 0.5):7.1f} ms  p95 {pct(times, 0.95):7.1f} ms  max {max(times):7.1f} ms")
            body = await _get_json(url, headers, "from=2025-01-01&to=2025-12-31")
            print(f"  a year: calls_offered = {body['kpis']['calls_offered']['value']:,.0f}, "
                  f"pickup_rate = {body['kpis']['pickup_rate']['value']:.3f}, "
                  f"v2v_p95_s = {body['kpis']['v2v_p95_s']['value']:.2f}")
            t_day = datetime(2026, 1, 5, 8).astimezone().timestamp()
            for i in range(args.stored):
                for e in shape(rng, f"s{i}", t_day + i * 7):
                    store.emit(e)
            await store.flush(120)
            consumer = StatsConsumer(redis, Rollups(redis), consumer="bench")
            t0 = time.perf_counter()
            n = await consumer.run_once()
            secs = time.perf_counter() - t0
            print(f"3. consumer group: {n:,} stored calls counted in {secs:.1f} s = {n / secs:,.0f} calls/s "
                  f"(one consumer; each worker adds one)")
            ok = n == args.stored and body["kpis"]["calls_offered"]["value"] == args.calls
            print("result:", "OK" if ok else "FAILED")
            return 0 if ok else 1
        finally:
            if runner is not None:
                await runner.cleanup()
            await store.close()
            server.stop()


async def _get_json(url: str, headers: dict, query: str):
    import aiohttp

    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(url + "/api/stats?" + query) as r:
            return await r.json()


def main() -> int:
    p = argparse.ArgumentParser(prog="bench-stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--stored", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
