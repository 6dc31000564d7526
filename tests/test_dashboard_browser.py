"""The ops dashboard in a real Chromium (Debian's, driven by Playwright's async API).

Four calls are seeded as real events (``tests/test_dashboard.seed_calls``: answered by the bot,
answered by an agent after a declined offer, abandoned in the queue, callback) and counted by
``StatsConsumer.run_once``; one more call is in progress and one waits in a queue. The ops user
logs in and sees the live tiles, the KPI cards with their numerator / denominator and their
definitions, three drawn charts, the per-intent table and the no-match list; finds a call by a
word, opens its page (timeline, transfer path), downloads a CSV. An agent is refused. The pages
run under their strict CSP with no console error. Screenshots: test-results/dashboard.png,
test-results/call-page.png.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
from pathlib import Path

import pytest
from aiohttp import web

from callbot import events as ev
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.presence import Presence
from callbot.switchboard.queue import CallQueue, WaitingCall
from tests.test_console import FAST, PW
from tests.test_dashboard import make_app, seed_calls

async_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
              pytest.mark.timeout(90)]
RESULTS = Path(__file__).resolve().parent.parent / "test-results"

# what the cards must show for the seeded calls (fr-FR formats of dashboard.js)
EXPECTED = {
    "calls_offered": "4",
    "pickup_rate": "100 %",
    "bot_abandonment_rate": "0 %",
    "queue_abandonment_rate": "33,3 %",  # 1 abandon / 3 queued
    "service_level": "33,3 %",  # 1 answered within 20 s / 3 queued
    "average_speed_of_answer_s": "12 s",
    "containment_rate": "25 %",  # the piscine call / 4 answered
    "transfer_rate": "25 %",
    "callback_rate": "25 %",
    "satisfaction_avg": "5 / 5",
}
PIXELS_JS = """id => {
  const c = document.getElementById(id);
  const chart = Chart.getChart(c);
  const data = chart.data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + (b || 0), 0), 0);
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
  return {data, painted, width: c.width, height: c.height};
}"""


async def _login(page, base: str, name: str) -> None:
    await page.fill("#name", name)
    await page.fill("#password", PW)
    await page.click("button[type=submit]")


async def test_ops_dashboard_end_to_end(redis_url):
    store = EventStore(redis_url)
    await store.start()
    redis = store.redis
    accounts = Accounts(redis, hasher=FAST)
    await accounts.add("chef", "ops", PW, display_name="Claire Morel")
    await accounts.add("marie", "agent", PW, ["etat_civil"], display_name="Marie Dupont", phone="+33600000001")
    await accounts.add("lea", "agent", PW, ["etat_civil"], display_name="Léa Martin", phone="+33600000002")
    await Presence(redis).set("marie", "available")
    await Presence(redis).set("lea", "on_call")
    cb = await Callbacks(redis).add(service="etat_civil", number="06 44 44 44 44", call_id="c-rappel", slot="matin",
                                    reason="callback_key")
    ids = await seed_calls(store, callback_id=cb.id)
    assert await StatsConsumer(redis, Rollups(redis)).run_once() == 4
    store.emit(ev.stamp(ev.CallStarted(channel="sip", caller="06 55 55 55 55"), "c-en-cours"))
    assert await store.flush()
    await CallQueue(redis).enter(WaitingCall(call_id="c-en-cours", service="etat_civil", caller="06 55 55 55 55",
                                             entered=time.time() - 75))

    runner = web.AppRunner(make_app(store), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = "http://127.0.0.1:%d" % runner.addresses[0][1]
    problems: list[str] = []
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            context = await browser.new_context(viewport={"width": 1360, "height": 900}, locale="fr-FR",
                                                accept_downloads=True)
            page = await context.new_page()
            page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            expect = async_api.expect

            await page.goto(base + "/dashboard")  # anonymous: sent to /login, then back
            assert "/login" in page.url
            await _login(page, base, "chef")
            await page.wait_for_url(base + "/dashboard**")
            await expect(page.locator(".services")).to_contain_text("Claire Morel")

            # live tiles (polled from /api/live)
            await expect(page.get_by_test_id("live-in-progress").locator(".tile-value")).to_have_text("1")
            await expect(page.get_by_test_id("live-waiting").locator(".tile-value")).to_have_text("1")
            await expect(page.get_by_test_id("live-available").locator(".tile-value")).to_have_text("1")
            longest = re.compile(r"la plus longue attente : 1 min \d\d")
            await expect(page.get_by_test_id("live-waiting")).to_contain_text(longest)
            await expect(page.get_by_test_id("live-agents")).to_contain_text("En communication 1")
            await expect(page.locator(".live")).to_have_text("En direct")

            # KPI cards: value, numerator / denominator, the definition from the API, on screen
            stats = await (await page.request.get(base + "/api/stats")).json()
            for key, text in EXPECTED.items():
                card = page.locator(f"article[data-kpi={key}]")
                await expect(card.locator(".kpi-main .kpi-value")).to_have_text(text)
                await expect(card.locator(":scope > .kpi-def")).to_have_text(stats["kpis"][key]["definition"])
                await expect(card.locator(":scope > .kpi-def")).to_be_visible()
            def card(key: str, inner: str):
                return page.locator(f"article[data-kpi={key}] {inner}")

            await expect(card("queue_abandonment_rate", ".kpi-main .kpi-parts")).to_have_text("1 / 3")
            await expect(card("average_speed_of_answer_s", ".kpi-main .kpi-parts")).to_have_text("12 s / 1")
            await expect(card("service_level", "h3")).to_have_text("Niveau de service (80 % en 20 s)")
            await expect(card("containment_rate", ".kpi-extra")).to_contain_text("Déviation brute")
            await expect(page.locator("article[data-kpi=v2v_p50_s] .kpi-extra")).to_contain_text("p95")
            await expect(page.get_by_test_id("scope")).to_contain_text("tous les services")
            await expect(page.locator(".how")).to_contain_text("moins de 5 s")

            # charts drawn by dashboard.js with the period's data
            for cid in ("chart-series", "chart-hours", "chart-weekdays"):
                drawn = await page.evaluate(PIXELS_JS, cid)
                assert drawn["data"] >= 4 and drawn["width"] > 300 and drawn["painted"] > 2000, (cid, drawn)

            rows = page.get_by_test_id("intents").locator("tbody tr")
            await expect(rows).to_have_count(4)
            await expect(page.get_by_test_id("intents")).to_contain_text("Un acte de naissance")
            await expect(page.get_by_test_id("nomatch")).to_contain_text("« euh mon truc de la cantine »")

            # search by a word the caller said (its page is opened further down)
            await page.get_by_test_id("search-q").fill("naissance")
            await page.get_by_role("button", name="Rechercher").click()
            results = page.get_by_test_id("search-results").locator("tbody tr")
            await expect(results).to_have_count(1)
            await expect(results).to_contain_text("06 22 22 22 22")
            await expect(results).to_contain_text("Mis en relation avec un agent")
            await expect(page.get_by_test_id("search-summary")).to_contain_text("1 appel trouvé")
            RESULTS.mkdir(exist_ok=True)
            await page.mouse.move(0, 0)
            await page.screenshot(path=str(RESULTS / "dashboard.png"), full_page=True)

            # CSV export: a real download, audited
            async with page.expect_download() as dl_info:
                await page.get_by_test_id("export-calls").click()
            download = await dl_info.value
            assert download.suggested_filename.startswith("appels_") and download.suggested_filename.endswith(".csv")
            text = Path(await download.path()).read_text(encoding="utf-8-sig")
            table = list(csv.reader(io.StringIO(text), delimiter=";"))
            assert table[0][0] == "id" and {r[0] for r in table[1:]} == {*ids.values(), "c-en-cours"}
            assert [f["action"] for _, f in await redis.xrange("callbot:audit")].count("export") == 1

            # filters: one service, then the last 7 days (the series goes per day)
            await page.get_by_test_id("service").select_option("etat_civil")
            await expect(page.locator("article[data-kpi=calls_offered] .kpi-main .kpi-value")).to_have_text("2")
            await expect(page.get_by_test_id("scope")).to_contain_text("service : Le service état civil")
            await expect(page.get_by_test_id("export-stats")).to_have_attribute("href",
                                                                                re.compile("service=etat_civil"))
            await page.get_by_role("button", name="7 derniers jours").click()
            await expect(page.get_by_test_id("scope")).to_contain_text(re.compile(r"^Du .* au "))
            assert "period=7d" in page.url and "service=etat_civil" in page.url
            await expect(page.locator("article[data-kpi=calls_offered] .kpi-main .kpi-value")).to_have_text("2")
            labels = await page.evaluate("() => Chart.getChart(document.getElementById('chart-series')).data.labels")
            assert len(labels) == 7, labels
            await page.get_by_test_id("service").select_option("")
            await expect(page.locator("article[data-kpi=calls_offered] .kpi-main .kpi-value")).to_have_text("4")

            # the call page, from the search result
            await results.get_by_role("link", name="Voir l'appel").click()
            await page.wait_for_url(base + f"/dashboard/calls/{ids['agent']}")
            await expect(page.get_by_test_id("call-caller")).to_have_text("06 22 22 22 22")
            timeline = page.get_by_test_id("call-timeline")
            await expect(timeline).to_contain_text("Début de l'appel")
            await expect(timeline).to_contain_text("Accepté par l'agent")
            await expect(timeline.locator("tbody tr").last).to_contain_text("Fin de l'appel")
            await expect(page.get_by_test_id("call-path")).to_contain_text("Accepté par Marie Dupont après 12 s")
            await expect(page.get_by_test_id("call-transcript")).to_contain_text("acte de naissance pour mon fils")
            await page.screenshot(path=str(RESULTS / "call-page.png"), full_page=True)

            # an agent cannot open the dashboard
            agent_ctx = await browser.new_context(locale="fr-FR")
            agent_page = await agent_ctx.new_page()
            await agent_page.goto(base + "/login")
            await _login(agent_page, base, "marie")
            await agent_page.wait_for_url(base + "/console")
            resp = await agent_page.goto(base + "/dashboard")
            assert resp.status == 403
            await expect(agent_page.locator("h1")).to_have_text("Accès réservé à la supervision")
            await expect(agent_page.get_by_role("link", name="Aller à la console des agents")).to_be_visible()
            await browser.close()
    finally:
        await runner.cleanup()
        await store.close()
    problems = [m for m in problems if "/favicon.ico" not in m]  # the login page's (auth.py)
    assert not problems, problems  # CSP violations, Alpine expression errors and failed requests land here
