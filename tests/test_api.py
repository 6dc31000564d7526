"""The JSON/CSV API over a real Redis store (no models: the runtime's speech parts are not used)."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web
from argon2 import PasswordHasher
from aiohttp.test_utils import TestClient, TestServer

from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.store import EventStore
from callbot.switchboard.accounts import Accounts
from callbot.web import api
from callbot.web.auth import accounts_on, setup_auth


async def _client(store: EventStore, ready: bool = True) -> TestClient:
    app = web.Application()
    flow = SimpleNamespace(name="mairie", version="abc")
    app[api.RUNTIME] = SimpleNamespace(store=store, ready=ready, active_calls={},
                                       voice=SimpleNamespace(engine="pico", name="fr"),
                                       flows=SimpleNamespace(current=flow))
    api.setup_routes(app)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis), secret_getter=lambda a: b"test secret")
    accounts = Accounts(store.redis, hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    await accounts.add("ops", "ops", "ops password", replace=True)
    client = TestClient(TestServer(app, host="127.0.0.1"),
                        headers={"Authorization": f"Bearer {await accounts.new_token('ops')}"})
    await client.start_server()
    return client


async def test_calls_tickets_and_csv(redis_url):
    store = EventStore(redis_url)
    await store.start()
    rec = CallRecorder(store, "c42")
    rec.emit(ev.CallStarted(channel="sip", caller="0612345678"))
    rec.emit(ev.TicketCreated(kind="eclairage", fields={"lieu": "12 rue Victor Hugo; face à l'école",
                                                         "description": "clignote"}))
    rec.emit(ev.CallEnded(reason="bot_hangup"))
    await store.flush()
    client = await _client(store)
    try:
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["redis"] is True
        calls = (await (await client.get("/api/calls")).json())["calls"]
        assert calls[0]["id"] == "c42" and calls[0]["caller"] == "0612345678"
        call = await (await client.get("/api/calls/c42")).json()
        assert [e["type"] for e in call["events"]] == ["call_started", "ticket", "call_ended"]
        assert (await client.get("/api/calls/nope")).status == 404
        assert (await client.get("/api/calls?limit=abc")).status == 400
        assert (await client.get("/api/calls?limit=0")).status == 400
        tickets = (await (await client.get("/api/tickets")).json())["tickets"]
        assert tickets[0]["fields"]["description"] == "clignote"
        resp = await client.get("/api/tickets.csv")
        assert resp.content_type == "text/csv"
        text = (await resp.read()).decode("utf-8-sig")
        header, row = text.splitlines()[:2]
        assert header == "id;date;kind;status;call_id;node;description;lieu"
        assert '"12 rue Victor Hugo; face à l\'école"' in row and ";eclairage;open;c42;" in row
    finally:
        await client.close()
        await store.close()


async def test_health_is_503_while_starting(redis_url):
    store = EventStore(redis_url)
    client = await _client(store, ready=False)
    try:
        assert (await client.get("/healthz")).status == 503
    finally:
        await client.close()
        await store.redis.aclose()
