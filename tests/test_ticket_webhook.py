"""Tickets reach the town's webhook once, even when the receiver is down for a while."""

from __future__ import annotations

import asyncio

from aiohttp import web

from callbot import events as ev
from callbot.recorder import CallRecorder
from callbot.redis_server import free_port
from callbot.store import EventStore
from callbot.ticket_webhook import TicketWebhook


async def _receiver(port: int, received: list, status: list[int]) -> web.AppRunner:
    async def hook(request: web.Request) -> web.Response:
        if status[0] >= 300:
            return web.Response(status=status[0])
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_tickets_delivered_once_and_retried(redis_url):
    port = free_port()
    received: list = []
    status = [503]  # the receiver is failing at first
    runner = await _receiver(port, received, status)
    store = EventStore(redis_url)
    await store.start()
    hooks = [TicketWebhook(store.redis, f"http://127.0.0.1:{port}/hook", retry_s=0.2) for _ in range(2)]
    for h in hooks:  # two workers share the consumer group: each ticket goes out once
        await h.start()
    try:
        rec = CallRecorder(store, "call-w")
        rec.emit(ev.CallStarted(channel="twilio"))
        rec.emit(ev.TicketCreated(kind="voirie", fields={"lieu": "rue des Tilleuls", "description": "nid de poule"}))
        rec.emit(ev.TicketCreated(kind="eclairage", fields={"lieu": "place du Marché"}))
        await store.flush()
        await asyncio.sleep(0.6)
        assert received == []
        status[0] = 200
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert [r["kind"] for r in received] == ["voirie", "eclairage"]
        assert received[0]["fields"]["description"] == "nid de poule" and received[0]["call_id"] == "call-w"
        assert received[0]["id"].startswith("T")
    finally:
        for h in hooks:
            await h.stop()
        await store.close()
        await runner.cleanup()
