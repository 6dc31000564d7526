"""A real callbot server process (``callbot serve``) for end-to-end calls, shared by a test module.

Same helper as the benchmarks (``callbot_testing.bench.server``), pointed at the test session's Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot_testing.bench.server import ACCOUNT_SID, AUDIO, ROOT, TOKEN  # noqa: F401 - re-exported for the tests
from callbot_testing.bench.server import BenchServer as BotServer
from callbot_testing.bench.server import start_server, stop_server


def start_bot(tmp: Path, redis_url: str, **env_overrides: str) -> BotServer:
    return start_server(tmp, CALLBOT_REDIS_URL=redis_url, **env_overrides)


def stop_bot(bot: BotServer) -> None:
    stop_server(bot)


@pytest.fixture(scope="module")
def bot(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("bot"), redis_server.url)
    yield server
    stop_bot(server)
