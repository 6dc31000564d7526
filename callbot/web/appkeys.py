"""Application keys shared by the web modules (one place, so route modules never import each other for them)."""

from __future__ import annotations

from aiohttp import web

from callbot.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
