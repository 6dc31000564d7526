"""A real callbot server process (``callbot serve``) for end-to-end calls, shared by a test module."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from callbot.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
ACCOUNT_SID = "AC" + "e2e0" * 8
TOKEN = "e2e-secret-token"


@dataclass
class BotServer:
    url: str
    rest_port: int
    sip_port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def start_bot(tmp: Path, redis_url: str, **env_overrides: str) -> BotServer:
    port, rest_port, sip_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "CALLBOT_HTTP_PORT": str(port),
        "CALLBOT_SIP_PORT": str(sip_port),
        "CALLBOT_DATA_DIR": str(tmp / "data"),
        "CALLBOT_REDIS_URL": redis_url,
        "CALLBOT_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CALLBOT_TWILIO_AUTH_TOKEN": TOKEN,
        "CALLBOT_TWILIO_API_BASE_URL": f"http://127.0.0.1:{rest_port}",
        "CALLBOT_LOG_LEVEL": "INFO",
    })
    env.update(env_overrides)
    log_path = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "callbot", "serve"], cwd=ROOT, env=env,
                            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"callbot serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return BotServer(url, rest_port, sip_port, proc, log_path)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"callbot did not become healthy in 180 s:\n{log_path.read_text()[-4000:]}")


def stop_bot(bot: BotServer) -> None:
    bot.proc.terminate()
    try:
        bot.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        bot.proc.kill()


@pytest.fixture(scope="module")
def bot(redis_server, tmp_path_factory):
    server = start_bot(tmp_path_factory.mktemp("bot"), redis_server.url)
    yield server
    stop_bot(server)
