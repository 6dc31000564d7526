"""Flows reload in a running server (``callbot flows reload`` -> SIGHUP) without disturbing calls in progress."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from callbot_testing.twilio_caller import Hangup, Press, Wait, WaitForBot
from tests.e2e.conftest import ROOT, start_bot, stop_bot
from tests.e2e.test_twilio_call import _call, _call_record, _types

pytestmark = pytest.mark.e2e


def _health(bot) -> dict:
    with urllib.request.urlopen(bot.url + "/healthz", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def reload_bot(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reload")
    flow = tmp / "mairie.yaml"
    shutil.copy(ROOT / "flows" / "mairie.yaml", flow)
    bot = start_bot(tmp, redis_server.url, CALLBOT_FLOW=str(flow))
    bot.flow_path = flow
    bot.data_dir = tmp / "data"
    yield bot
    stop_bot(bot)


async def test_reload_keeps_calls_in_progress_on_their_version(reload_bot):
    bot = reload_bot
    old_version = _health(bot)["flow_version"]
    # a call that lasts across the reload: greeting, then (after the reload) a keypad choice
    call = asyncio.create_task(_call(bot, [WaitForBot(), Wait(3.0), Press("1"), WaitForBot(), Hangup()]))
    await asyncio.sleep(2.0)
    text = bot.flow_path.read_text(encoding="utf-8")
    bot.flow_path.write_text(text.replace("je suis l'assistant automatique", "je suis le standard automatique"),
                             encoding="utf-8")
    # through Redis, as for a worker on another machine (no pid file to read)
    env = dict(os.environ, CALLBOT_REDIS_URL=bot.env["CALLBOT_REDIS_URL"], CALLBOT_DATA_DIR=str(bot.data_dir / "x"))
    out = subprocess.run([sys.executable, "-m", "callbot", "flows", "reload"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "asked 1 callbot worker(s)" in out.stdout, out.stdout
    for _ in range(100):
        if _health(bot)["flow_version"] != old_version:
            break
        await asyncio.sleep(0.1)
    new_version = _health(bot)["flow_version"]
    assert new_version != old_version, "the flow was not reloaded"

    report, _ = await call
    record = await _call_record(bot, report.call_sid)
    assert record["flow_version"] == old_version
    assert "horaires" in [e["node"] for e in _types(record, "node")], "the call in progress was disturbed"

    report2, _ = await _call(bot, [WaitForBot(), Hangup()])
    record2 = await _call_record(bot, report2.call_sid)
    assert record2["flow_version"] == new_version
    assert "standard automatique" in _types(record2, "bot_said")[0]["text"]


async def test_a_broken_flow_is_refused_and_the_old_one_keeps_running(reload_bot):
    bot = reload_bot
    before = _health(bot)["flow_version"]
    bot.flow_path.write_text(bot.flow_path.read_text(encoding="utf-8") + "\n  - this: [is not valid\n",
                             encoding="utf-8")
    env = dict(os.environ, CALLBOT_DATA_DIR=str(bot.data_dir))
    subprocess.run([sys.executable, "-m", "callbot", "flows", "reload"], env=env, cwd=ROOT, timeout=30, check=True)
    await asyncio.sleep(1.5)
    assert _health(bot)["flow_version"] == before
    assert "flow reload failed" in bot.log()
    report, _ = await _call(bot, [WaitForBot(), Hangup()])
    assert report.greeting_latency is not None
