"""Shared fixtures: a real Redis server on a free port, the repo paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), persist=True).start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server):
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    await client.flushdb()
    await client.aclose()
    return redis_server.url
