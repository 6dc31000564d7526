"""Events -> store -> consumer group -> hourly/daily rollups -> /api/stats and /metrics, on a real Redis.

The reference is the pure computation (``kpis_from_calls``) over the same calls: the Redis path
must give exactly the same numbers, whatever the period is cut into.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callbot import events as ev
from callbot.stats import call_facts, kpis_from_calls
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups, period_keys
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.web import api, stats_api
from callbot.web.auth import accounts_on, setup_auth
from tests.test_console import FAST, PW, fake_runtime
from tests.test_stats_kpis import abandon, make_call, queue_callback, said, to_agent

DAY = datetime(2026, 3, 10).astimezone()  # a Tuesday


def calls_of_the_day() -> list[list[ev._Event]]:
    t = DAY.replace(hour=9).timestamp()
    return [
        make_call("c1", said("horaires"), t0=t, end="caller_hangup", dur=40, caller="+33611111111"),
        make_call("c2", to_agent(wait=12), t0=t + 600, end="transferred", caller="+33622222222"),
        make_call("c3", abandon(wait=40), t0=t + 1200, end="caller_hangup", caller="+33633333333"),
        make_call("c4", [], t0=t + 1800, end="caller_hangup", dur=3, caller="+33644444444"),  # short abandon
        make_call("c5", [ev.Overload(what="sip_busy")], t0=t + 2400, end="rejected", dur=0, answer=False),
        make_call("c6", queue_callback("cb6"), t0=t + 3600 * 5, end="bot_hangup", caller="+33666666666",
                  after=[ev.CallbackDone(callback_id="cb6", outcome="done", agent="alice")]),
        make_call("c7", said("horaires"), t0=t + 3600 * 6, end="bot_hangup", caller="+33611111111"),  # repeat of c1
        make_call("c8", to_agent(wait=45), t0=DAY.replace(hour=23, minute=59, second=50).timestamp(),
                  end="transferred", dur=120, caller="+33688888888"),  # ends the next day: counted on its start
    ]


@pytest.fixture
async def env(redis_url):
    store = EventStore(redis_url)
    await store.start()
    app = stats_app(store)
    rollups = app[stats_api.ROLLUPS]
    accounts = Accounts(store.redis, hasher=FAST)
    await accounts.add("chef", "ops", PW)
    await accounts.add("marie", "agent", PW, ["agent"])
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield SimpleNamespace(store=store, redis=store.redis, rollups=rollups, client=client,
                              ops={"Authorization": f"Bearer {await accounts.new_token('chef')}"},
                              agent={"Authorization": f"Bearer {await accounts.new_token('marie')}"})
    finally:
        await client.close()
        await store.close()


def stats_app(store: EventStore):
    from aiohttp import web

    app = web.Application()
    rt = fake_runtime(store)
    rt.settings = SimpleNamespace(stats_short_abandon_secs=5.0, stats_service_level_secs=20.0, retention_days=30)
    rt.switchboard = None
    app[api.RUNTIME] = rt
    api.setup_routes(app)
    stats_api.setup_routes(app)
    app[stats_api.ROLLUPS] = Rollups(store.redis)
    store.observers.append(app[stats_api.METRICS].observe)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis, hasher=FAST))
    return app


async def store_calls(env, calls: list[list[ev._Event]]) -> int:
    for events in calls:
        for e in events:
            env.store.emit(e)
    assert await env.store.flush()
    return await StatsConsumer(env.redis, env.rollups, consumer="test").run_once()


async def test_api_stats_equals_the_pure_computation_and_survives_replays(env):
    calls = calls_of_the_day()
    assert await store_calls(env, calls) == len(calls)
    expected = kpis_from_calls([call_facts(c) for c in calls])
    resp = await env.client.get("/api/stats?from=2026-03-10&to=2026-03-10", headers=env.ops)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    got = body["kpis"]
    for name in ("calls_offered", "pickup_rate", "bot_abandonment_rate", "queue_abandonment_rate", "service_level",
                 "average_speed_of_answer_s", "containment_rate", "deflection_rate", "transfer_rate",
                 "callback_rate", "callbacks_done_rate", "short_abandons", "rejected_calls", "v2v_p95_s"):
        assert got[name]["value"] == pytest.approx(expected[name].value), name
        assert got[name]["numerator"] == pytest.approx(expected[name].numerator), name
        assert got[name]["denominator"] == pytest.approx(expected[name].denominator), name
    assert got["calls_offered"]["value"] == 8 and got["rejected_calls"]["value"] == 1
    assert got["short_abandons"]["value"] == 1
    assert (got["service_level"]["numerator"], got["service_level"]["denominator"]) == (1, 4)  # c2 in 12 s of c2,c3,c6,c8
    assert got["containment_rate"]["numerator"] == 1  # c1 was followed by c7 within 24 h: only c7 counts
    assert got["callbacks_done_rate"]["value"] == 1.0
    assert sum(body["by_hour"]) == 8 and body["by_hour"][9] == 5 and body["by_hour"][23] == 1
    assert body["by_weekday"][1] == 8 and body["series"]["step"] == "hour"
    assert {row["intent"] for row in body["intents"]} >= {"horaires", "parler_agent"}
    # the same stream again (a worker restarted, another consumer claimed it): nothing counted twice
    await env.redis.xgroup_setid("callbot:events", "stats", id="0")
    assert await StatsConsumer(env.redis, env.rollups, consumer="other").run_once() == 0
    again = await (await env.client.get("/api/stats?from=2026-03-10", headers=env.ops)).json()
    assert again["kpis"] == got


async def test_periods_are_sums_of_their_buckets(env):
    await store_calls(env, calls_of_the_day())
    start = DAY.replace(hour=9, minute=30)
    split = DAY.replace(hour=14)
    end = DAY + timedelta(days=1)
    whole = await env.rollups.totals(start, end)
    halves = await env.rollups.totals(start, split), await env.rollups.totals(split, end)
    for name, value in whole.items():
        assert halves[0].get(name, 0) + halves[1].get(name, 0) == pytest.approx(value), name
    assert period_keys(DAY, DAY + timedelta(days=3)) == [f"callbot:stats:d:{(DAY + timedelta(days=i)):%Y%m%d}"
                                                         for i in range(3)]
    assert len(period_keys(DAY.replace(hour=22), DAY + timedelta(days=1, hours=2))) == 4  # 22, 23, 00, 01 h


async def test_stats_need_ops_and_a_valid_period(env):
    assert (await env.client.get("/api/stats")).status == 401
    assert (await env.client.get("/api/stats", headers=env.agent)).status == 403
    assert (await env.client.get("/metrics", headers=env.agent)).status == 403
    bad = await env.client.get("/api/stats?from=hier", headers=env.ops)
    assert bad.status == 400 and "from" in (await bad.json())["message"]
    assert (await env.client.get("/api/stats?from=2026-03-10&to=2026-03-01", headers=env.ops)).status == 400
    today = await (await env.client.get("/api/stats", headers=env.ops)).json()
    assert today["from"].startswith(datetime.now().date().isoformat())


async def test_metrics_count_what_this_worker_emitted(env):
    await store_calls(env, calls_of_the_day())
    text = await (await env.client.get("/metrics", headers=env.ops)).text()
    assert 'callbot_calls_total{channel="sip",reason="transferred"} 2.0' in text
    assert 'callbot_calls_total{channel="sip",reason="rejected"} 1.0' in text
    assert 'callbot_overload_total{what="sip_busy"} 1.0' in text
    assert 'callbot_queue_events_total{event="abandoned"} 1.0' in text
    assert "callbot_queue_wait_seconds_count 2.0" in text
    assert "callbot_agents{" in text or "callbot_queue_length" in text
