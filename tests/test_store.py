"""The event store against a real Redis server, including a Redis restart mid-call."""

from __future__ import annotations

import asyncio

from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.redis_server import RedisServer
from callbot.store import EventStore


async def test_events_round_trip(redis_url):
    store = EventStore(redis_url)
    await store.start()
    rec = CallRecorder(store, "call-1")
    rec.emit(ev.CallStarted(channel="twilio", caller="+33612345678", flow="mairie"))
    rec.emit(ev.NodeEntered(node="accueil", kind="menu"))
    rec.emit(ev.IntentMatched(intent="horaires", confidence=0.91, text="vos horaires", node="accueil"))
    rec.emit(ev.TicketCreated(kind="eclairage", fields={"lieu": "12 rue Victor Hugo"}))
    rec.emit(ev.CallEnded(reason="bot_hangup", duration_s=12.5))
    assert await store.flush(5)

    calls = await store.list_calls()
    assert [c["id"] for c in calls] == ["call-1"]
    assert calls[0]["caller"] == "+33612345678"
    assert calls[0]["end_reason"] == "bot_hangup"
    assert calls[0]["last_intent"] == "horaires"

    call = await store.get_call("call-1")
    assert [e["type"] for e in call["events"]] == ["call_started", "node", "intent", "ticket", "call_ended"]
    parsed = [ev.from_json(e) for e in call["events"]]
    assert isinstance(parsed[2], ev.IntentMatched) and parsed[2].intent == "horaires"

    tickets = await store.list_tickets()
    assert tickets[0]["kind"] == "eclairage" and tickets[0]["fields"]["lieu"] == "12 rue Victor Hugo"
    assert tickets[0]["id"].startswith("T") and tickets[0]["call_id"] == "call-1"
    assert await store.get_call("nope") is None
    await store.close()


async def test_emit_requires_a_stamped_event(redis_url):
    store = EventStore(redis_url)
    try:
        store.emit(ev.NodeEntered(node="x"))
    except ValueError as e:
        assert "call_id" in str(e)
    else:
        raise AssertionError("unstamped event accepted")
    await store.redis.aclose()


async def test_no_event_lost_when_redis_restarts(tmp_path):
    """Redis goes away mid-call and comes back on the same port: every event lands, in order."""
    server = RedisServer(tmp_path / "r").start()
    store = EventStore(server.url)
    await store.start()
    rec = CallRecorder(store, "call-r")
    rec.emit(ev.CallStarted(channel="sip", caller="100"))
    assert await store.flush(5)
    server.stop()
    for i in range(50):
        rec.emit(ev.Transcript(text=f"phrase {i}"))
    await asyncio.sleep(0.5)
    assert store.pending == 50 and not store.redis_ok
    server = RedisServer(tmp_path / "r", port=server.port).start()
    rec.emit(ev.CallEnded(reason="caller_hangup"))
    assert await store.flush(15), f"{store.pending} events still pending"
    call = await store.get_call("call-r")
    texts = [e["text"] for e in call["events"] if e["type"] == "transcript"]
    assert texts == [f"phrase {i}" for i in range(50)]
    assert call["events"][-1]["type"] == "call_ended"
    await store.close()
    server.stop()
