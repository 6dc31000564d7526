"""The agents' console: the page (``GET /console``) and its live feed (``GET /api/console/events``).

The page is one static HTML file plus a script and a stylesheet (no build step, no CDN:
town-hall networks are often closed), driven by the vendored CSP build of Alpine.js so
the page runs under ``Content-Security-Policy: default-src 'self'``. It loads
``/api/console/state`` and reloads it whenever the server says something changed.

Live feed: Server-Sent Events fed by the switchboard's Redis pub/sub channel
(``callbot:sb:live``), filtered to what concerns the user. One pub/sub connection per open
console is fine at town-hall scale (a handful of agents). aiohttp does not cancel a handler
when the browser goes away, so the loop wakes every second, pings every ``PING_S`` (a write
to a closed socket raises ``ConnectionResetError``) and always unsubscribes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from callbot.switchboard.presence import LIVE
from callbot.web import api, console_api
from callbot.web.auth import AUTH_INFO, current_user, visible_services

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PING_S = 10.0
RECHECK_S = 60.0  # re-read the session and colleagues: a removed user's console stops within a minute
SSE_STOP = web.AppKey("console_sse_stop", asyncio.Event)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


COMMON_ASSETS = ("common.js", "common.css")  # shared by the console, the dashboard and the call page


def asset_version(*names: str) -> str:
    """Changes with the named static files (plus the shared ones) so browsers fetch the new ones after an upgrade."""
    h = hashlib.sha256()
    for name in (*COMMON_ASSETS, *names):
        path = STATIC_DIR / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


def _asset_version() -> str:
    return asset_version("console.js", "console.css")


async def console_page(request: web.Request) -> web.Response:
    current_user(request)  # the middleware already redirected anonymous browsers to /login
    html = (STATIC_DIR / "console.html").read_text(encoding="utf-8").replace("__V__", _asset_version())
    return web.Response(text=html, content_type="text/html", headers=PAGE_HEADERS)


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


def relevant(msg: dict[str, Any], me: str, visible: set[str] | None, colleagues: set[str]) -> bool:
    """Whether a switchboard change may alter this user's console."""
    agent, service = msg.get("agent"), msg.get("service")
    if agent and agent == me:
        return True
    if msg.get("kind") == "presence":
        return visible is None or agent in colleagues
    if service:
        return visible is None or service in visible
    if agent:  # offer_end carries no service: a colleague's offer ending changes a shared queue
        return visible is None or agent in colleagues
    return True


async def _still_allowed(request: web.Request, accounts: Any, name: str) -> bool:
    info = request.get(AUTH_INFO)
    if info is not None and info.via == "session":
        return await accounts.session(info.sid) is not None
    return await accounts.get(name) is not None


async def console_events(request: web.Request) -> web.StreamResponse:
    """``event: refresh`` (data: the switchboard message) when something of the user's changes;
    ``event: ping`` every ``PING_S``; ``event: logout`` when the session ended."""
    user = current_user(request)
    visible = visible_services(request)
    s = console_api.sb(request)
    redis = request.app[api.RUNTIME].store.redis
    stop = request.app.get(SSE_STOP) or asyncio.Event()
    colleagues = {a["name"] for a in await console_api.colleagues(request, user, visible)}
    pubsub = redis.pubsub()
    await pubsub.subscribe(LIVE)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    loop = asyncio.get_running_loop()
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 3000\n\n" + sse("hello", {"user": user.name}))
        next_ping = next_check = loop.time()
        next_ping += PING_S
        next_check += RECHECK_S
        while not stop.is_set():
            if request.transport is None or request.transport.is_closing():
                break  # the browser left: stop now rather than at the next write
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg and msg.get("type") == "message":
                try:
                    data = json.loads(msg["data"])
                except (TypeError, ValueError):
                    data = None
                if isinstance(data, dict) and relevant(data, user.name, visible, colleagues):
                    await resp.write(sse("refresh", data))
            now = loop.time()
            if now >= next_ping:
                await resp.write(sse("ping", {}))
                next_ping = now + PING_S
            if now >= next_check:
                next_check = now + RECHECK_S
                if not await _still_allowed(request, s.accounts, user.name):
                    await resp.write(sse("logout", {}))
                    break
                colleagues = {a["name"] for a in await console_api.colleagues(request, user, visible)}
    except ConnectionResetError:
        pass  # the browser left (tab closed, network gone); EventSource reconnects by itself if it can
    except RedisError as e:
        log.warning("console live feed for %s stopped: Redis error %s", user.name, e)
    finally:
        try:
            await pubsub.unsubscribe()
            await pubsub.aclose()
        except (RedisError, OSError, RuntimeError) as e:
            log.debug("closing the console pub/sub: %s", e)
    return resp


async def _stop_streams(app: web.Application) -> None:
    """On shutdown: end the live feeds so a graceful stop does not wait for open consoles."""
    app[SSE_STOP].set()


def setup_routes(app: web.Application) -> None:
    """The console page, its API and live feed, and ``/static/`` (console assets, vendored libraries)."""
    console_api.setup_routes(app)
    app.router.add_get("/console", console_page)
    app.router.add_get("/api/console/events", console_events)
    if not any(getattr(r, "canonical", None) == "/static" for r in app.router.resources()):
        app.router.add_static("/static", STATIC_DIR)
    app[SSE_STOP] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
