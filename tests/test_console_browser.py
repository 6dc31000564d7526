"""The console in a real Chromium (Debian's, driven by Playwright's async API).

An agent logs in through /login, goes available, and a call offered by "the switchboard"
(seeded in Redis as its worker would) appears without a reload; taking it writes the
answer the worker polls for; a callback is marked done. Also checks the page runs under
its strict CSP with no console error. Screenshot: test-results/console.png.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from aiohttp import web

from callbot import events as ev
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.presence import P, Presence
from callbot.switchboard.queue import CallQueue, Turn, WaitingCall
from tests.test_console import FAST, PW, make_app

async_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
              pytest.mark.timeout(60)]
RESULTS = Path(__file__).resolve().parent.parent / "test-results"


async def _until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_agent_takes_an_offered_call_without_reload(redis_url):
    store = EventStore(redis_url)
    await store.start()
    redis = store.redis
    accounts = Accounts(redis, hasher=FAST)
    await accounts.add("marie", "agent", PW, ["etat_civil"], display_name="Marie Dupont")
    await accounts.add("lea", "agent", PW, ["etat_civil"], display_name="Léa Martin")
    queue, presence, callbacks = CallQueue(redis), Presence(redis), Callbacks(redis)
    await presence.set("lea", "on_call")
    cb = await callbacks.add(service="etat_civil", number="06 44 44 44 44", call_id="c-old", slot="apres_midi",
                             reason="max_wait", summary="Demande de livret de famille")
    store.emit(ev.stamp(ev.TicketCreated(ticket_id="T-0001", kind="rappel",
                                         fields={"service": "etat_civil", "motif": "copie d'acte de mariage",
                                                 "telephone": "06 55 55 55 55"}), "c-tk"))
    await queue.enter(WaitingCall(call_id="c-wait", service="etat_civil", caller="06 22 22 22 22",
                                  intent="acte_naissance", summary="Veut un acte de naissance",
                                  entered=time.time() - 20))

    runner = web.AppRunner(make_app(store), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://127.0.0.1:%d" % runner.addresses[0][1]
    problems: list[str] = []
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="fr-FR")
            page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            expect = async_api.expect

            await page.goto(base + "/console")  # not logged in: the middleware sends us to /login
            assert "/login" in page.url
            await page.fill("#name", "marie")
            await page.fill("#password", PW)
            await page.click("button[type=submit]")
            await page.wait_for_url(base + "/console")
            await expect(page.locator(".top .name")).to_have_text("Marie Dupont")
            await expect(page.locator(".live")).to_have_text("En direct")

            await page.get_by_role("button", name="Disponible").click()
            assert await _until(lambda: _state_is(presence, "marie", "available"))
            await expect(page.get_by_role("button", name="Disponible")).to_have_attribute("aria-pressed", "true")

            # the switchboard picks marie and offers her a call (what waiting.py does)
            call = WaitingCall(
                call_id="c-offer", service="etat_civil", service_label="le service état civil", channel="sip",
                caller="06 11 22 33 44", intent="acte_naissance", entered=time.time() - 125,
                summary="Demande un acte de naissance pour son fils né à Nantes en 2015.",
                slots={"nom": "Durand", "prenom": "Lucas", "date_naissance": "12/03/2015"},
                transcript=[Turn(who="bot", text="Bonjour, mairie de Saint-Herblain, que puis-je pour vous ?"),
                            Turn(who="caller", text="Je voudrais un acte de naissance pour mon fils."),
                            Turn(who="bot", text="Je vous passe le service état civil, ne quittez pas.")])
            await queue.enter(call)
            await presence.set("marie", "ringing", call_id=call.call_id)
            await queue.offer(call, "marie", ring_s=20)

            card = page.get_by_test_id("offer")
            await expect(card).to_be_visible(timeout=5000)
            await expect(page.get_by_test_id("offer-caller")).to_have_text("06 11 22 33 44")
            await expect(page.get_by_test_id("offer-theme")).to_have_text("Un acte de naissance")
            await expect(page.get_by_test_id("offer-summary")).to_contain_text("né à Nantes")
            await expect(page.get_by_test_id("offer-transcript")).to_contain_text("pour mon fils")
            await expect(card.locator("dd")).to_have_text(["Durand", "Lucas", "12/03/2015"])
            await expect(page.locator(".sb-state")).to_have_text("Sonnerie")
            await expect(page.locator("body")).to_have_attribute("data-rings", "1")  # the console rings (WebAudio)
            await expect(card.locator(".offer-wait")).to_contain_text("2 min")
            await expect(page.locator(".queue tbody tr")).to_have_count(2)
            RESULTS.mkdir(exist_ok=True)
            await page.mouse.move(0, 0)  # no hover highlight in the picture
            await page.screenshot(path=str(RESULTS / "console.png"), full_page=True)

            await page.get_by_role("button", name="Prendre l'appel").click()
            assert await _until(lambda: _get(redis, f"{P}answer:c-offer")) == "accept"
            await expect(page.locator(".flash")).to_contain_text("Appel accepté")

            # the worker then withdraws the offer and puts marie on the call
            await queue.withdraw(call)
            await presence.set("marie", "on_call", call_id=call.call_id)
            await expect(card).to_be_hidden()
            await expect(page.locator(".sb-state")).to_have_text("En communication")

            item = page.locator(f"[data-callback='{cb.id}']")
            await item.get_by_role("textbox").fill("Livret envoyé par courrier")
            await item.get_by_role("button", name="Fait").click()
            await expect(item).to_have_count(0)
            done = await callbacks.get(cb.id)
            assert done.status == "done" and done.agent == "marie" and done.note == "Livret envoyé par courrier"
            await expect(page.locator(".tickets tbody tr")).to_have_count(1)

            await page.get_by_role("button", name="Se déconnecter").click()  # POST /logout with the CSRF token
            await page.wait_for_url("**/login**")
            assert (await page.request.get(base + "/api/console/state")).status == 401
            await browser.close()
    finally:
        await runner.cleanup()
        await store.close()
    problems = [m for m in problems if "/favicon.ico" not in m]  # the login page's (auth.py), not the console's
    assert not problems, problems  # CSP violations, Alpine expression errors and failed requests land here


async def _state_is(presence: Presence, name: str, state: str) -> bool:
    return (await presence.get(name)).state == state


async def _get(redis, key: str):
    return await redis.get(key)
