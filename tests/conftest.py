"""Shared fixtures: a real Redis server on a free port, the repo paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (minutes each: cluster load and failover, the Docker image)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` are skipped unless ``--slow`` (``./scripts/test --slow``, ``.ci/run``)."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (./scripts/test --slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
