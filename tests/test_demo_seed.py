"""``callbot demo seed`` into a real Redis, and the flow's AI disclosure said first on every call."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from callbot import events as ev
from callbot.demo import DemoError, generate, outcomes, seed
from callbot.errors import FlowError
from callbot.flows.loader import load_flow
from callbot.flows.types import CallContext
from tests.conftest import ROOT

FLOW = ROOT / "flows" / "mairie.yaml"
PARIS = ZoneInfo("Europe/Paris")
WED_EVENING = datetime(2025, 3, 12, 18, 30, tzinfo=PARIS)  # two days = Tuesday and Wednesday


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW)


async def snapshot(r: aioredis.Redis) -> dict[str, list[str]]:
    return {cid: await r.lrange(f"callbot:call:{cid}:events", 0, -1) for cid in await r.zrange("callbot:calls", 0, -1)}


async def test_seed_writes_real_calls_through_the_store(redis_url, flow):
    report = await seed(redis_url, flow, days=2, calls_per_day=50, rng_seed=7, now=WED_EVENING)
    assert 70 <= report.calls <= 130 and report.events > 15 * report.calls
    assert (report.first_day.isoformat(), report.last_day.isoformat()) == ("2025-03-11", "2025-03-12")
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        ids = await r.zrange("callbot:calls", 0, -1, withscores=True)
        assert len(ids) == report.calls
        assert all(WED_EVENING.timestamp() - 2 * 86400 < ts <= WED_EVENING.timestamp() for _, ts in ids)
        stream = await r.xrange("callbot:events")
        assert len(stream) == report.events and {f["call_id"] for _, f in stream} == {cid for cid, _ in ids}
        calls = await snapshot(r)
        for cid, raw in calls.items():
            events = [ev.from_json(e) for e in raw]
            types = [e.type for e in events]
            assert types[0] == "call_started" and types.count("call_ended") == 1, cid
            ended = types.index("call_ended")
            assert set(types[ended + 1:]) <= {"callback_done"}, cid  # only an agent's later callback after it
            assert [e.ts for e in events[:ended + 1]] == sorted(e.ts for e in events[:ended + 1])
            summary = await r.hgetall(f"callbot:call:{cid}")
            assert summary["status"] == "ended" and summary["flow_version"] == flow.version
        tickets = await r.zcard("callbot:tickets")
        assert tickets == report.tickets > 0
        callbacks = await r.zrange("callbot:sb:callbacks:agent", 0, -1)
        assert len(callbacks) == report.callbacks and all(c.startswith("R2503") for c in callbacks)
        assert sum(report.outcomes.values()) == report.calls
        assert max(report.outcomes, key=report.outcomes.get) == "resolved_by_bot"

        # the server's stats consumer counts every one of them
        from callbot.stats.consumer import StatsConsumer
        from callbot.stats.rollup import Rollups

        assert await StatsConsumer(r, Rollups(r)).run_once() == report.calls

        # deterministic: the same seed writes the same calls; writing it twice is refused
        with pytest.raises(DemoError, match="already in this Redis"):
            await seed(redis_url, flow, days=2, calls_per_day=50, rng_seed=7, now=WED_EVENING)
        await r.flushdb()
        again = await seed(redis_url, flow, days=2, calls_per_day=50, rng_seed=7, now=WED_EVENING)
        assert again == report and await snapshot(r) == calls
    finally:
        await r.aclose()


def test_a_week_looks_like_a_town_hall(flow):
    calls = generate(flow, days=7, calls_per_day=300, rng_seed=1, now=WED_EVENING)
    assert 1300 <= len(calls) <= 1900
    share = {k: v / len(calls) for k, v in outcomes(calls).items()}
    assert 0.48 <= share["resolved_by_bot"] <= 0.62 and 0.15 <= share["agent"] <= 0.25
    assert 0.04 <= share["queue_abandoned"] <= 0.08 and 0.05 <= share["bot_abandoned"] + share["short_abandon"] <= 0.11
    assert 0.03 <= share["callback"] <= 0.08 and 0 < share["emergency"] < 0.03 and 0 < share["rejected"] < 0.04
    local = [datetime.fromtimestamp(c.started, PARIS) for c in calls]
    hours = Counter(t.hour for t in local if t.weekday() < 5)
    assert hours[10] > 5 * hours[19] and hours[15] > 2 * hours[12] and hours[3] < hours[10] / 50
    days = Counter(t.weekday() for t in local)
    assert days[0] == max(days.values()) and days[6] < days[5] / 5 and days[5] < days[1] / 2
    saturday = [t.hour for t in local if t.weekday() == 5]
    assert sum(h < 12 for h in saturday) > 0.8 * len(saturday)
    events = [e for c in calls for e in c.events]
    v2v = [e.voice_to_voice_ms for e in events if isinstance(e, ev.TurnLatency)]
    assert v2v and 900 <= min(v2v) and max(v2v) <= 2500
    waits = [e.wait_s for e in events if isinstance(e, ev.AgentAnswered)]
    assert 5 <= min(waits) and max(waits) <= 120
    assert sum(isinstance(e, ev.SurveyAnswered) for e in events) > 100
    no_match = [e.text for e in events if isinstance(e, ev.IntentMatched) and e.intent is None]
    assert "je voudrais une place de crèche pour mon chien" in no_match
    callers = Counter(e.caller for e in events if isinstance(e, ev.CallStarted) and e.caller.startswith("+"))
    assert sum(n > 1 for n in callers.values()) > 20  # repeat callers
    first = [c.events for c in calls if c.plan != "rejected"][0]
    assert first[2].type == "bot_said" and "assistant automatique" in first[2].text  # the disclosure first

    same = generate(flow, days=7, calls_per_day=300, rng_seed=1, now=WED_EVENING)
    assert [e.model_dump_json() for c in same for e in c.events] == [e.model_dump_json() for e in events]
    other = generate(flow, days=7, calls_per_day=300, rng_seed=2, now=WED_EVENING)
    assert [c.call_id for c in other] != [c.call_id for c in calls]


def test_the_disclosure_is_said_first(flow):
    turn = flow.new_session(CallContext(caller="+33612345678", channel="test", now=WED_EVENING)).start()
    assert turn.node == flow.settings.start and turn.listen is not None
    assert turn.say[0].text == "Bonjour, mairie de Saint-Aubin-les-Prés, je suis l'assistant automatique."
    assert turn.say[0].static and turn.say[1].text == "Que puis-je faire pour vous ?"
    assert turn.say[0].text in flow.static_prompts()  # pre-rendered like every fixed prompt


def test_recording_notice_and_checks(tmp_path, flow):
    text = FLOW.read_text(encoding="utf-8")
    path = tmp_path / "m.yaml"
    path.write_text(text.replace("  # recording_notice: Cet appel", "  recording_notice: Cet appel"), encoding="utf-8")
    with_notice = load_flow(path)
    said = [p.text for p in with_notice.new_session(CallContext(channel="test", now=WED_EVENING)).start().say]
    assert said[0].startswith("Bonjour") and said[1].startswith("Cet appel peut être enregistré") and len(said) == 3
    assert said[1] in with_notice.static_prompts()

    path.write_text(text.replace("disclosure: Bonjour, mairie de {town.name}, je suis l'assistant automatique.",
                                 'disclosure: ""'), encoding="utf-8")
    said = [p.text for p in load_flow(path).new_session(CallContext(channel="test", now=WED_EVENING)).start().say]
    assert said == ["Que puis-je faire pour vous ?"]

    path.write_text(text.replace("{town.name}, je suis", "{caller}, je suis"), encoding="utf-8")
    with pytest.raises(FlowError, match=r"m.yaml:\d+: settings.disclosure may only use"):
        load_flow(path)


def _run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callbot", *cmd], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


async def test_cli_seed_help_and_users(redis_url, tmp_path):
    out = await asyncio.to_thread(_run, ["demo", "seed", "--help"])
    assert out.returncode == 0 and "--calls-per-day" in out.stdout and "Monday busiest" in out.stdout
    env = {**os.environ, "CALLBOT_REDIS_URL": redis_url, "CALLBOT_DATA_DIR": str(tmp_path)}
    env.pop("CALLBOT_TICKET_WEBHOOK_URL", None)
    cmd = ["demo", "seed", "--days", "3", "--calls-per-day", "40", "--seed", "3"]
    out = await asyncio.to_thread(_run, [*cmd, "--with-users"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("demo seed 3: ") and "resolved_by_bot" in out.stdout
    passwords = dict(line.split() for line in out.stdout.splitlines() if line.startswith("  demo-"))
    assert set(passwords) == {"demo-agent", "demo-police", "demo-ops"} and len(set(passwords.values())) == 3
    assert all(len(p) >= 12 for p in passwords.values())

    r = aioredis.from_url(redis_url, decode_responses=True)
    roles = {n: await r.hget(f"callbot:sb:user:{n}", "role") for n in passwords}
    await r.aclose()
    assert roles == {"demo-agent": "agent", "demo-police": "agent", "demo-ops": "ops"}
    out = await asyncio.to_thread(_run, cmd, {**env, "CALLBOT_TICKET_WEBHOOK_URL": "http://town.example/hook"})
    assert out.returncode == 2 and "ticket_webhook_url is set" in out.stderr
    out = await asyncio.to_thread(_run, cmd, env)
    assert out.returncode == 2 and "already in this Redis" in out.stderr
