"""The agents' console API and live feed over a real Redis, behind the real auth middleware."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from callbot import events as ev
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.switchboard.callbacks import Callbacks
from callbot.switchboard.presence import LIVE, P, Presence
from callbot.switchboard.queue import CallQueue, Turn, WaitingCall
from callbot.web import api, console
from callbot.web.auth import accounts_on, setup_auth

FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # tests only
PW = "correct horse battery"


def fake_runtime(store: EventStore) -> SimpleNamespace:
    """What the console reads from the runtime: the store and the flow's service/intent labels."""
    spec = SimpleNamespace(
        services={"agent": SimpleNamespace(label="l'accueil de la mairie"),
                  "etat_civil": SimpleNamespace(label="le service état civil"),
                  "urbanisme": SimpleNamespace(label="le service urbanisme")},
        intents={"acte_naissance": SimpleNamespace(label="un acte de naissance"),
                 "permis": SimpleNamespace(label="un permis de construire")})
    flow = SimpleNamespace(name="mairie", version="abc", spec=spec)
    return SimpleNamespace(store=store, ready=True, active_calls={}, voice=SimpleNamespace(engine="pico", name="fr"),
                           flows=SimpleNamespace(current=flow))


def make_app(store: EventStore) -> web.Application:
    app = web.Application()
    app[api.RUNTIME] = fake_runtime(store)
    api.setup_routes(app)
    console.setup_routes(app)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis, hasher=FAST))
    return app


def waiting_call(call_id: str, service: str, caller: str, intent: str = "", entered_ago: float = 30.0,
                 **kw) -> WaitingCall:
    return WaitingCall(call_id=call_id, service=service, caller=caller, intent=intent, channel="sip",
                       summary=f"résumé {call_id}", entered=time.time() - entered_ago, **kw)


@pytest.fixture
async def env(redis_url):
    store = EventStore(redis_url)
    await store.start()
    redis = store.redis
    accounts = Accounts(redis, hasher=FAST)
    await accounts.add("marie", "agent", PW, ["etat_civil"], display_name="Marie D.", phone="+33600000001")
    await accounts.add("lea", "agent", PW, ["etat_civil", "agent"], display_name="Léa")
    await accounts.add("paul", "agent", PW, ["urbanisme"], display_name="Paul")
    await accounts.add("chef", "ops", PW)
    tokens = {n: await accounts.new_token(n) for n in ("marie", "paul", "chef")}
    client = TestClient(TestServer(make_app(store), host="127.0.0.1"))
    await client.start_server()
    try:
        yield SimpleNamespace(client=client, store=store, redis=redis, accounts=accounts, queue=CallQueue(redis),
                              presence=Presence(redis), callbacks=Callbacks(redis),
                              auth={n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()})
    finally:
        await client.close()
        await store.close()


async def _login(client: TestClient, name: str) -> str:
    """Log in through the form like a browser; returns the session's CSRF token."""
    resp = await client.post("/login", data={"name": name, "password": PW, "next": ""}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console"
    return (await (await client.get("/api/me")).json())["csrf"]


async def test_agents_see_their_services_ops_see_all(env):
    await env.queue.enter(waiting_call("c-ec1", "etat_civil", "0611111111", "acte_naissance", entered_ago=90))
    await env.queue.enter(waiting_call("c-ec2", "etat_civil", "0622222222", entered_ago=10))
    await env.queue.enter(waiting_call("c-urb", "urbanisme", "0633333333", "permis"))
    await env.callbacks.add(service="etat_civil", number="0644444444", slot="matin", reason="max_wait")
    await env.callbacks.add(service="urbanisme", number="0655555555")
    env.store.emit(ev.stamp(ev.TicketCreated(ticket_id="T1", kind="rappel",
                                             fields={"service": "urbanisme", "motif": "permis"}), "c-t1"))
    env.store.emit(ev.stamp(ev.TicketCreated(ticket_id="T2", kind="eclairage", fields={"lieu": "rue Haute"}), "c-t2"))
    await env.store.flush()
    await env.presence.set("lea", "available")

    q = (await (await env.client.get("/api/queue", headers=env.auth["marie"])).json())["calls"]
    assert [(c["call_id"], c["position"]) for c in q] == [("c-ec1", 1), ("c-ec2", 2)]
    assert q[0]["intent_label"] == "un acte de naissance" and q[0]["service_label"] == "le service état civil"
    assert q[0]["wait_s"] >= 89 and q[0]["state"] == "waiting" and "transcript" not in q[0]

    st = await (await env.client.get("/api/console/state", headers=env.auth["marie"])).json()
    assert st["me"]["name"] == "marie" and st["me"]["presence"] == "offline" and st["offer"] is None
    assert [c["call_id"] for c in st["queue"]] == ["c-ec1", "c-ec2"]
    assert [c["number"] for c in st["callbacks"]] == ["0644444444"]
    assert {a["name"]: a["state"] for a in st["agents"]} == {"marie": "offline", "lea": "available"}
    assert st["tickets"] == [] and [s["name"] for s in st["services"]] == ["etat_civil"]

    st = await (await env.client.get("/api/console/state", headers=env.auth["paul"])).json()
    assert [c["call_id"] for c in st["queue"]] == ["c-urb"]
    assert [t["call_id"] for t in st["tickets"]] == ["c-t1"]  # its service field names urbanisme

    st = await (await env.client.get("/api/console/state", headers=env.auth["chef"])).json()
    assert {c["call_id"] for c in st["queue"]} == {"c-ec1", "c-ec2", "c-urb"}
    assert {c["number"] for c in st["callbacks"]} == {"0644444444", "0655555555"}
    assert {a["name"] for a in st["agents"]} == {"marie", "lea", "paul"}  # ops without a service takes no calls
    assert {t["call_id"] for t in st["tickets"]} == {"c-t1", "c-t2"}
    assert (await env.client.get("/api/console/state")).status == 401


async def test_presence_switch_needs_csrf_and_a_settable_state(env):
    csrf = await _login(env.client, "marie")
    url = "/api/console/presence"
    assert (await env.client.post(url, json={"state": "available"})).status == 403  # no CSRF token
    resp = await env.client.post(url, json={"state": "available"}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json())["state"] == "available"
    assert (await env.presence.get("marie")).state == "available"
    for bad in ("on_call", "busy", None):
        resp = await env.client.post(url, json={"state": bad}, headers={"X-CSRF-Token": csrf})
        body = await resp.json()
        assert resp.status == 400 and body["error"] == "bad_state" and "available, away, offline" in body["message"]
    resp = await env.client.post(url, data=b"not json", headers={"X-CSRF-Token": csrf,
                                                                 "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_json"
    st = await (await env.client.get("/api/console/state")).json()
    assert st["me"]["presence"] == "available"


async def test_accept_decline_and_expired_offers(env):
    call = waiting_call("c-1", "etat_civil", "0611111111", "acte_naissance", slots={"nom": "Durand"},
                        transcript=[Turn(who="bot", text="Bonjour"), Turn(who="caller", text="un acte")])
    await env.queue.enter(call)
    await env.queue.offer(call, "marie", ring_s=20)
    st = await (await env.client.get("/api/console/state", headers=env.auth["marie"])).json()
    offer = st["offer"]
    assert offer["call_id"] == "c-1" and offer["caller"] == "0611111111" and offer["slots"] == {"nom": "Durand"}
    assert [t["who"] for t in offer["transcript"]] == ["bot", "caller"] and offer["position"] == 1
    assert 15 <= offer["ring_left_s"] <= 20 and offer["intent_label"] == "un acte de naissance"
    assert st["queue"][0]["state"] == "offered" and st["queue"][0]["agent"] == "marie"

    # not offered to paul, nor any other call to marie
    resp = await env.client.post("/api/console/offers/c-1/accept", headers=env.auth["paul"])
    assert resp.status == 409 and (await resp.json())["error"] == "offer_expired"
    assert (await env.client.post("/api/console/offers/c-x/accept", headers=env.auth["marie"])).status == 409
    assert await env.redis.get(f"{P}answer:c-1") is None

    resp = await env.client.post("/api/console/offers/c-1/accept", headers=env.auth["marie"])
    assert resp.status == 200 and await resp.json() == {"ok": True}
    assert await env.redis.get(f"{P}answer:c-1") == "accept"

    call2 = waiting_call("c-2", "etat_civil", "0622222222")
    await env.queue.enter(call2)
    await env.queue.offer(call2, "marie", ring_s=20)
    assert (await env.client.post("/api/console/offers/c-2/decline", headers=env.auth["marie"])).status == 200
    assert await env.redis.get(f"{P}answer:c-2") == "decline"

    await env.redis.delete(f"{P}offer:marie")  # the ring time ran out
    assert (await env.client.post("/api/console/offers/c-2/accept", headers=env.auth["marie"])).status == 409
    st = await (await env.client.get("/api/console/state", headers=env.auth["marie"])).json()
    assert st["offer"] is None


async def test_going_away_declines_the_ringing_offer(env):
    call = waiting_call("c-3", "etat_civil", "0611111111")
    await env.queue.enter(call)
    await env.queue.offer(call, "marie", ring_s=20)
    resp = await env.client.post("/api/console/presence", json={"state": "away"}, headers=env.auth["marie"])
    assert resp.status == 200
    assert await env.redis.get(f"{P}answer:c-3") == "decline"
    assert (await env.presence.get("marie")).state == "away"


async def test_callback_close_records_the_outcome(env):
    cb = await env.callbacks.add(service="etat_civil", number="0644444444", call_id="c-cb", slot="matin")
    other = await env.callbacks.add(service="urbanisme", number="0655555555")
    url = f"/api/callbacks/{cb.id}"
    resp = await env.client.post(url, json={"outcome": "no_answer"}, headers=env.auth["marie"])
    assert resp.status == 200 and (await resp.json())["callback"]["status"] == "open"
    resp = await env.client.post(url, json={"outcome": "done", "note": " rendez-vous pris "},
                                 headers=env.auth["marie"])
    assert resp.status == 200
    closed = await env.callbacks.get(cb.id)
    assert closed.status == "done" and closed.attempts == 2 and closed.agent == "marie"
    assert closed.note == "rendez-vous pris"
    await env.store.flush()
    events = (await env.store.get_call("c-cb"))["events"]
    assert [(e["type"], e["outcome"], e["agent"]) for e in events] == [
        ("callback_done", "no_answer", "marie"), ("callback_done", "done", "marie")]
    assert events[1]["note"] == "rendez-vous pris" and events[1]["callback_id"] == cb.id

    resp = await env.client.post(f"/api/callbacks/{other.id}", json={"outcome": "done"}, headers=env.auth["marie"])
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    assert (await env.client.post("/api/callbacks/R000000-XXXXXX", json={"outcome": "done"},
                                  headers=env.auth["marie"])).status == 404
    resp = await env.client.post(url, json={"outcome": "maybe"}, headers=env.auth["marie"])
    assert resp.status == 400 and (await resp.json())["error"] == "bad_outcome"
    # a callback without a call id is closed without an event (nothing to attach it to)
    assert (await env.client.post(f"/api/callbacks/{other.id}", json={"outcome": "done"},
                                  headers=env.auth["chef"])).status == 200


async def _next_event(resp, timeout: float = 5.0) -> tuple[str, dict]:
    name, data = "", None
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), timeout)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name:
            return name, data


async def _subscribers(redis) -> int:
    return dict(await redis.pubsub_numsub(LIVE)).get(LIVE, 0)


async def test_live_feed_sends_relevant_changes_and_unsubscribes(env):
    resp = await env.client.get("/api/console/events", headers=env.auth["marie"])
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert await _next_event(resp) == ("hello", {"user": "marie"})
    assert await _subscribers(env.redis) == 1
    await env.presence.set("paul", "available")  # another service: not for marie
    await env.queue.enter(waiting_call("c-u", "urbanisme", "0633333333"))  # idem
    await env.presence.set("lea", "away")  # a colleague
    name, data = await _next_event(resp)
    assert name == "refresh" and data["kind"] == "presence" and data["agent"] == "lea"
    await env.queue.enter(waiting_call("c-e", "etat_civil", "0611111111"))
    name, data = await _next_event(resp)
    assert name == "refresh" and data == {"kind": "queue", "service": "etat_civil"}
    resp.close()
    for _ in range(40):  # the handler notices the closed socket within its 1 s poll
        if await _subscribers(env.redis) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _subscribers(env.redis) == 0


def test_relevance_rules():
    visible, mates = {"etat_civil"}, {"marie", "lea"}
    assert console.relevant({"kind": "offer", "agent": "marie", "service": "urbanisme"}, "marie", visible, mates)
    assert console.relevant({"kind": "presence", "agent": "lea"}, "marie", visible, mates)
    assert not console.relevant({"kind": "presence", "agent": "paul"}, "marie", visible, mates)
    assert console.relevant({"kind": "callback", "service": "etat_civil"}, "marie", visible, mates)
    assert not console.relevant({"kind": "callback", "service": "urbanisme"}, "marie", visible, mates)
    assert console.relevant({"kind": "offer_end", "agent": "lea"}, "marie", visible, mates)
    assert not console.relevant({"kind": "offer_end", "agent": "paul"}, "marie", visible, mates)
    assert console.relevant({"kind": "presence", "agent": "paul"}, "chef", None, set())


async def test_console_page_is_protected_and_csp_strict(env):
    resp = await env.client.get("/console", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    await _login(env.client, "marie")
    resp = await env.client.get("/console")
    assert resp.status == 200 and "default-src 'self'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    assert 'x-data="switchboard"' in html and "__V__" not in html and "<script>" not in html
    for asset in ("/static/console.js", "/static/console.css", "/static/vendor/alpine-csp.min.js"):
        assert (await env.client.get(asset)).status == 200, asset
