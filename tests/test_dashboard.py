"""The ops dashboard's pages, call search, call page data and CSV exports, over a real Redis behind the real auth.

``seed_calls`` (also used by the browser test) writes four calls as the runtime would, as events
through ``EventStore``: answered by the bot, transferred and answered by an agent, abandoned in
the queue, and left the queue for a callback; ``StatsConsumer.run_once`` then aggregates them.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import date, datetime
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callbot import events as ev
from callbot.stats.consumer import StatsConsumer
from callbot.stats.rollup import Rollups
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.presence import Presence
from callbot.switchboard.queue import CallQueue
from callbot.web import api, console, dashboard, dashboard_api, stats_api
from callbot.web.auth import AUDIT_STREAM, accounts_on, setup_auth
from tests.test_console import FAST, PW

INTENTS = {"horaires": "les horaires d'ouverture", "acte_naissance": "un acte de naissance",
           "permis": "un permis de construire", "carte_identite": "une carte d'identité"}
SERVICES = {"agent": "l'accueil de la mairie", "etat_civil": "le service état civil",
            "urbanisme": "le service urbanisme"}


def fake_runtime(store: EventStore) -> SimpleNamespace:
    """What the dashboard, the stats API and the console read from the runtime."""
    spec = SimpleNamespace(services={n: SimpleNamespace(label=lab) for n, lab in SERVICES.items()},
                           intents={n: SimpleNamespace(label=lab) for n, lab in INTENTS.items()})
    redis = store.redis
    switchboard = SimpleNamespace(queue=CallQueue(redis), presence=Presence(redis), callbacks=Callbacks(redis),
                                  accounts=Accounts(redis, hasher=FAST))
    settings = SimpleNamespace(stats_short_abandon_secs=5.0, stats_service_level_secs=20.0, retention_days=90)
    return SimpleNamespace(store=store, ready=True, active_calls={}, settings=settings, switchboard=switchboard,
                           voice=SimpleNamespace(engine="pico", name="fr"),
                           flows=SimpleNamespace(current=SimpleNamespace(name="mairie", version="abc", spec=spec)))


def make_app(store: EventStore) -> web.Application:
    """The routes of ``server.create_app`` that the dashboard uses, in the same order."""
    app = web.Application()
    app[api.RUNTIME] = fake_runtime(store)
    api.setup_routes(app)
    console.setup_routes(app)
    dashboard.setup_routes(app)
    stats_api.setup_routes(app)
    app[stats_api.ROLLUPS] = Rollups(store.redis)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis, hasher=FAST))
    return app


def base_time() -> float:
    """Some minutes ago, but today (local), so that the default period (today) holds every seeded call."""
    now = time.time()
    midnight = datetime.combine(date.today(), datetime.min.time()).astimezone().timestamp()
    return max(midnight + 60, now - 900)


def _emit(store: EventStore, call_id: str, t0: float, steps: list[tuple[float, ev._Event]]) -> None:
    for dt, e in steps:
        store.emit(ev.stamp(e, call_id, t0 + dt))


async def seed_calls(store: EventStore, t0: float | None = None, callback_id: str = "") -> dict[str, str]:
    """Four finished calls; returns their ids by kind. ``callback_id``: the callback record's id, if any."""
    t0 = base_time() if t0 is None else t0
    ids = {"resolved": "c-resolu", "agent": "c-agent", "abandon": "c-abandon", "callback": "c-rappel"}
    _emit(store, ids["resolved"], t0, [
        (0, ev.CallStarted(channel="sip", caller="06 11 11 11 11", called="0240000000", flow="mairie")),
        (0.6, ev.CallAnswered(greeting_latency_ms=600)),
        (0.7, ev.BotSaid(text="Bonjour, mairie de Saint-Herblain, que puis-je pour vous ?")),
        (5, ev.Transcript(text="Je voudrais connaître les horaires de la piscine municipale")),
        (5.2, ev.IntentMatched(intent="horaires", confidence=0.91, text="les horaires de la piscine")),
        (6.4, ev.TurnLatency(voice_to_voice_ms=1200)),
        (6.5, ev.BotSaid(text="La piscine est ouverte de 9 h à 19 h du mardi au dimanche.")),
        (14, ev.TicketCreated(ticket_id="T-0042", kind="information", fields={"sujet": "piscine"})),
        (20, ev.SurveyAnswered(score=5)),
        (40, ev.CallEnded(reason="bot_hangup", duration_s=40)),
    ])
    _emit(store, ids["agent"], t0 + 120, [
        (0, ev.CallStarted(channel="sip", caller="06 22 22 22 22", called="0240000000")),
        (0.5, ev.CallAnswered(greeting_latency_ms=500)),
        (0.6, ev.BotSaid(text="Bonjour, mairie de Saint-Herblain, que puis-je pour vous ?")),
        (4, ev.Transcript(text="Il me faut un acte de naissance pour mon fils")),
        (4.1, ev.IntentMatched(intent="acte_naissance", confidence=0.88, text="acte de naissance")),
        (5.6, ev.TurnLatency(voice_to_voice_ms=1500)),
        (5.7, ev.BotSaid(text="Je vous passe le service état civil, ne quittez pas.")),
        (8, ev.TransferRequested(target="etat_civil", reason="acte_naissance")),
        (8.1, ev.Queued(service="etat_civil", position=1)),
        (8.2, ev.AgentOffered(agent="lea", service="etat_civil")),
        (13.2, ev.AgentDeclined(agent="lea", cause="timeout", ring_s=5)),
        (13.3, ev.AgentOffered(agent="marie", service="etat_civil")),
        (20.1, ev.AgentAnswered(agent="marie", service="etat_civil", wait_s=12, ring_s=6.8)),
        (21, ev.AgentConnected(agent="marie", service="etat_civil", talk_s=95)),
        (116, ev.CallEnded(reason="caller_hangup", duration_s=116)),
    ])
    _emit(store, ids["abandon"], t0 + 240, [
        (0, ev.CallStarted(channel="twilio", caller="+33633333333", called="0240000000")),
        (0.5, ev.CallAnswered(greeting_latency_ms=700)),
        (3, ev.Transcript(text="C'est pour mon permis de construire, je veux parler à l'urbanisme")),
        (3.1, ev.IntentMatched(intent="permis", confidence=0.8, text="permis de construire")),
        (5, ev.TransferRequested(target="urbanisme")),
        (5.1, ev.Queued(service="urbanisme", position=2)),
        (50, ev.Abandoned(service="urbanisme", wait_s=45, position=1)),
        (50.1, ev.CallEnded(reason="caller_hangup", duration_s=50)),
    ])
    _emit(store, ids["callback"], t0 + 360, [
        (0, ev.CallStarted(channel="sip", caller="06 44 44 44 44", called="0240000000")),
        (0.5, ev.CallAnswered(greeting_latency_ms=550)),
        (3, ev.Transcript(text="euh mon truc de la cantine")),
        (3.1, ev.IntentMatched(intent=None, text="euh mon truc de la cantine")),
        (6, ev.Transcript(text="une carte d'identité pour ma fille")),
        (6.1, ev.IntentMatched(intent="carte_identite", confidence=0.9, text="carte d'identité")),
        (8, ev.Queued(service="etat_civil", position=1)),
        (38, ev.QueueLeft(service="etat_civil", wait_s=30, cause="callback_key")),
        (38.1, ev.CallbackRequested(callback_id=callback_id or "R-0001", service="etat_civil",
                                    number="06 44 44 44 44", slot="matin")),
        (45, ev.CallEnded(reason="bot_hangup", duration_s=45)),
    ])
    assert await store.flush()
    return ids


@pytest.fixture
async def env(redis_url):
    store = EventStore(redis_url)
    await store.start()
    redis = store.redis
    accounts = Accounts(redis, hasher=FAST)
    await accounts.add("marie", "agent", PW, ["etat_civil"], display_name="Marie Dupont", phone="+33600000001")
    await accounts.add("lea", "agent", PW, ["etat_civil"], display_name="Léa Martin", phone="+33600000002")
    await accounts.add("chef", "ops", PW, display_name="Claire (DGS)")
    tokens = {n: await accounts.new_token(n) for n in ("marie", "chef")}
    client = TestClient(TestServer(make_app(store), host="127.0.0.1"))
    await client.start_server()
    try:
        yield SimpleNamespace(client=client, store=store, redis=redis,
                              auth={n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()})
    finally:
        await client.close()
        await store.close()


async def _seeded(env) -> dict[str, str]:
    ids = await seed_calls(env.store)
    assert await StatsConsumer(env.redis, Rollups(env.redis)).run_once() == 4
    return ids


def _csv(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode()), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))


async def _audit(redis) -> list[dict]:
    return [fields for _, fields in await redis.xrange(AUDIT_STREAM) if fields["action"] == "export"]


async def test_pages_are_for_ops_only(env):
    resp = await env.client.get("/dashboard", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    resp = await env.client.get("/dashboard", headers=env.auth["chef"])
    html = await resp.text()
    assert resp.status == 200 and "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert 'x-data="dashboard"' in html and "__V__" not in html and "<script>" not in html
    assert "/static/vendor/chart.umd.min.js" in html
    for asset in ("/static/dashboard.js", "/static/dashboard.css", "/static/call.js",
                  "/static/vendor/chart.umd.min.js", "/static/vendor/alpine-csp.min.js"):
        assert (await env.client.get(asset)).status == 200, asset
    resp = await env.client.get("/dashboard/calls/c-x", headers=env.auth["chef"])
    assert resp.status == 200 and 'x-data="callPage"' in await resp.text()

    for path in ("/dashboard", "/dashboard/calls/c-agent"):
        resp = await env.client.get(path, headers=env.auth["marie"])
        assert resp.status == 403 and 'href="/console"' in await resp.text()
    for path in ("/api/calls.csv", "/api/stats.csv", "/api/calls/search?q=06", "/api/dashboard/calls/c-agent",
                 "/api/dashboard/meta"):
        resp = await env.client.get(path, headers=env.auth["marie"])
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden", path
    assert await _audit(env.redis) == []


async def test_search_by_number_word_and_outcome(env):
    ids = await _seeded(env)
    get = env.client.get
    h = env.auth["chef"]

    body = await (await get("/api/calls/search", params={"q": "06 33 33"}, headers=h)).json()
    assert [c["id"] for c in body["calls"]] == [ids["abandon"]]  # +33633333333 read as 06 33 33 33 33
    row = body["calls"][0]
    assert row["outcome"] == "queue_abandoned" and row["href"] == f"/dashboard/calls/{ids['abandon']}"
    assert row["service"] == "urbanisme" and row["queue_wait_s"] == 45 and row["intent_label"] == INTENTS["permis"]

    body = await (await get("/api/calls/search", params={"q": "PISCINE"}, headers=h)).json()  # a transcript word
    assert [c["id"] for c in body["calls"]] == [ids["resolved"]]
    assert "piscine municipale" in body["calls"][0]["matched"]

    body = await (await get("/api/calls/search", params={"q": "etat civil"}, headers=h)).json()  # service label
    assert {c["id"] for c in body["calls"]} == {ids["agent"], ids["callback"]}
    body = await (await get("/api/calls/search", headers=h)).json()  # everything, newest first
    assert [c["id"] for c in body["calls"]] == [ids["callback"], ids["abandon"], ids["agent"], ids["resolved"]]
    assert body["scanned"] == 4 and body["truncated"] is False
    body = await (await get("/api/calls/search", params={"outcome": "callback"}, headers=h)).json()
    assert [c["id"] for c in body["calls"]] == [ids["callback"]]
    today = date.today().isoformat()
    body = await (await get("/api/calls/search", params={"q": "06", "from": today, "to": today, "limit": 2},
                            headers=h)).json()
    assert len(body["calls"]) == 2 and body["scanned"] == 2
    body = await (await get("/api/calls/search", params={"q": "06", "from": "2020-01-01", "to": "2020-01-31"},
                            headers=h)).json()
    assert body["calls"] == [] and body["scanned"] == 0

    for params, code in (({"from": "hier"}, "bad_date"), ({"from": today, "to": "2020-01-01"}, "bad_period"),
                         ({"outcome": "maybe"}, "bad_outcome"), ({"limit": "0"}, "bad_param")):
        resp = await get("/api/calls/search", params=params, headers=h)
        assert resp.status == 400 and (await resp.json())["error"] == code, params


async def test_calls_csv_one_row_per_call_and_audited(env):
    ids = await _seeded(env)
    resp = await env.client.get("/api/calls.csv", headers=env.auth["chef"])
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert f'filename="appels_{date.today().isoformat()}.csv"' in resp.headers["Content-Disposition"]
    rows = _csv(await resp.read())
    assert rows[0] == dashboard_api.CALLS_HEADER
    by_id = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert list(by_id) == [ids["resolved"], ids["agent"], ids["abandon"], ids["callback"]]  # oldest first
    agent = by_id[ids["agent"]]
    assert agent["appelant"] == "06 22 22 22 22" and agent["agent"] == "marie" and agent["attente_s"] == "12"
    assert agent["issue"] == "Mis en relation avec un agent" and agent["service"] == "etat_civil"
    assert agent["duree_s"] == "116" and agent["canal"] == "sip" and agent["theme"] == INTENTS["acte_naissance"]
    assert datetime.fromisoformat(agent["debut"]).tzinfo is not None
    assert by_id[ids["abandon"]]["issue"] == "Raccroché en attente d'un agent"
    assert by_id[ids["resolved"]]["attente_s"] == "" and by_id[ids["resolved"]]["motif_fin"] == "bot_hangup"
    audit = await _audit(env.redis)
    assert len(audit) == 1 and audit[0]["user"] == "chef" and audit[0]["detail"].startswith("calls.csv")
    assert audit[0]["detail"].endswith("4 rows")

    resp = await env.client.get("/api/calls.csv", params={"from": "2020-01-01", "to": "2020-01-02"},
                                headers=env.auth["chef"])
    assert _csv(await resp.read()) == [dashboard_api.CALLS_HEADER]
    assert 'filename="appels_2020-01-01_2020-01-02.csv"' in resp.headers["Content-Disposition"]
    resp = await env.client.get("/api/calls.csv", params={"from": "2020-13-01"}, headers=env.auth["chef"])
    assert resp.status == 400 and (await resp.json())["error"] == "bad_date"
    assert len(await _audit(env.redis)) == 2  # refused requests export nothing and are not audited


async def test_stats_csv_has_every_kpi_with_its_definition(env):
    await _seeded(env)
    resp = await env.client.get("/api/stats.csv", params={"service": "etat_civil"}, headers=env.auth["chef"])
    assert resp.status == 200
    assert f'indicateurs_{date.today().isoformat()}_etat_civil.csv' in resp.headers["Content-Disposition"]
    rows = _csv(await resp.read())
    assert rows[0] == dashboard_api.STATS_HEADER
    kpis = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert kpis["calls_offered"]["valeur"] == "2"  # the etat_civil calls: transferred + callback
    assert kpis["transfer_rate"]["valeur"] == "0,5"
    assert kpis["transfer_rate"]["numerateur"] == "1" and kpis["transfer_rate"]["denominateur"] == "2"
    assert kpis["transfer_rate"]["libelle"] and kpis["transfer_rate"]["definition"].endswith(".")
    assert all(k["definition"] for k in kpis.values())

    rows = _csv(await (await env.client.get("/api/stats.csv", headers=env.auth["chef"])).read())
    kpis = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert kpis["calls_offered"]["valeur"] == "4" and kpis["pickup_rate"]["valeur"] == "1"
    assert kpis["average_speed_of_answer_s"]["valeur"] == "12"
    details = [a["detail"] for a in await _audit(env.redis)]
    assert details[0].startswith("stats.csv") and "service=etat_civil" in details[0] and "service=*" in details[1]


async def test_call_page_data_tells_the_story(env):
    ids = await _seeded(env)
    view = await (await env.client.get(f"/api/dashboard/calls/{ids['agent']}", headers=env.auth["chef"])).json()
    assert view["outcome"] == "agent" and view["agent_name"] == "Marie Dupont"
    assert view["service_label"] == SERVICES["etat_civil"] and view["queue_wait_s"] == 12
    assert [s["label"] for s in view["transfer_path"]] == [
        "Transfert demandé vers le service état civil",
        "En attente pour le service état civil (position 1)",
        "Proposé à Léa Martin",
        "Léa Martin : pas de réponse à temps (sonnerie 5 s)",
        "Proposé à Marie Dupont",
        "Accepté par Marie Dupont après 12 s d'attente",
        "En communication avec Marie Dupont — 1 min 35 de conversation",
    ]
    assert [t["who"] for t in view["transcript"]] == ["bot", "caller", "bot"]
    first, last = view["timeline"][0], view["timeline"][-1]
    assert (first["at"], first["label"]) == ("+0:00", "Début de l'appel")
    assert (last["at"], last["label"]) == ("+1:56", "Fin de l'appel")
    assert last["detail"] == "l'appelant a raccroché · 1 min 56"
    assert any(e["technical"] and e["type"] == "latency" for e in view["timeline"])

    view = await (await env.client.get(f"/api/dashboard/calls/{ids['resolved']}", headers=env.auth["chef"])).json()
    assert view["tickets"] == [{"id": "T-0042", "kind": "information", "fields": {"sujet": "piscine"},
                                "status": "open", "at": "+0:14"}]
    assert view["survey"] == 5 and view["latency"]["turns"] == 1 and view["transfer_path"] == []
    view = await (await env.client.get(f"/api/dashboard/calls/{ids['callback']}", headers=env.auth["chef"])).json()
    assert view["callbacks"][0]["number"] == "06 44 44 44 44" and view["callbacks"][0]["slot"] == "le matin"
    assert view["transfer_path"][-1]["label"] == "Rappel demandé au 06 44 44 44 44"
    resp = await env.client.get("/api/dashboard/calls/nope", headers=env.auth["chef"])
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_meta_lists_services_and_outcomes(env):
    body = await (await env.client.get("/api/dashboard/meta", headers=env.auth["chef"])).json()
    assert body["me"]["display_name"] == "Claire (DGS)"
    assert [s["name"] for s in body["services"]] == ["agent", "etat_civil", "urbanisme"]  # by label
    assert {o["name"] for o in body["outcomes"]} >= {"resolved_by_bot", "agent", "callback", "queue_abandoned"}


def test_search_matching_rules():
    row = {"id": "c-1", "caller": "+33 6 12 34 56 78", "intent": "etat_civil", "intent_label": "", "service": "",
           "service_label": "", "agent": "", "end_reason": "bot_hangup", "outcome_label": "Rappel demandé",
           "emergency": ""}
    said = [{"type": "transcript", "text": "Ma poubelle n'a pas été ramassée"}]
    assert dashboard_api.match("06 12 34", row, said) == "+33 6 12 34 56 78"
    assert dashboard_api.match("0699", row, said) is None
    assert dashboard_api.match("poubelle RAMASSEE", row, said) == "Ma poubelle n'a pas été ramassée"
    assert dashboard_api.match("rappel", row, said) == ""  # the outcome, not a sentence
    assert dashboard_api.match("poubelle piscine", row, said) is None  # every word must match
    assert dashboard_api.match("", row, said) == ""
