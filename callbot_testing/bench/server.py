"""A real ``callbot serve`` process for the benchmarks, and /proc readings of it.

The benchmarks measure what a caller hears, so they talk to the real server
(real Whisper, real pipeline) over loopback only. Unlike the e2e fixture this
helper needs no Redis: the server starts its embedded one in a temp dir.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from callbot.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
ACCOUNT_SID = "AC" + "be4c" * 8
TOKEN = "bench-secret-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class BenchServer:
    url: str
    rest_port: int
    sip_port: int
    proc: subprocess.Popen
    log_path: Path
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""  # API token of the ``bench`` ops user (the API needs one)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get_json(self, path: str, timeout: float = 5) -> dict:
        """GET ``path`` (``/api/calls?limit=50``) with the API token; the parsed JSON body."""
        req = urllib.request.Request(self.url + path, headers=self.api_headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


def start_server(tmp: Path | None = None, *, module: str = "callbot", **env_overrides: str) -> BenchServer:
    """Start ``python -m callbot serve`` on free loopback ports; wait for /healthz (models loaded).

    ``module``: what ``-m`` runs with ``serve``, e.g. ``callbot_testing.loopwatch`` (the server with its
    event loop's steps timed)."""
    tmp = Path(tmp or tempfile.mkdtemp(prefix="callbot-bench-"))
    port, rest_port, sip_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "CALLBOT_HTTP_HOST": "127.0.0.1",
        "CALLBOT_HTTP_PORT": str(port),
        "CALLBOT_SIP_HOST": "127.0.0.1",
        "CALLBOT_SIP_PORT": str(sip_port),
        "CALLBOT_DATA_DIR": str(tmp / "data"),
        "CALLBOT_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CALLBOT_TWILIO_AUTH_TOKEN": TOKEN,
        "CALLBOT_TWILIO_API_BASE_URL": f"http://127.0.0.1:{rest_port}",
        "CALLBOT_LOG_LEVEL": "INFO",
    })
    env.pop("CALLBOT_REDIS_URL", None)
    env.update(env_overrides)
    log_path = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", module, "serve"], cwd=ROOT, env=env,
                            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"callbot serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                healthy = r.status == 200
        except OSError:
            healthy = False
        if healthy:
            try:
                token = api_token(env, tmp)
            except Exception:
                proc.kill()
                raise
            return BenchServer(url, rest_port, sip_port, proc, log_path, tmp, env_overrides, token)
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"callbot did not become healthy in 180 s:\n{log_path.read_text()[-4000:]}")


def api_token(env: dict[str, str], tmp: Path) -> str:
    """An ops user ``bench`` (random password) and a new API token for it, made with ``callbot users`` on the
    Redis the server uses (the same environment finds it: redis_url, or data_dir/redis.url)."""
    password = tmp / "bench-password"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    password.chmod(0o600)
    out = ""
    for args in (["add", "bench", "--role", "ops", "--password-file", str(password), "--replace"], ["token", "bench"]):
        r = subprocess.run([sys.executable, "-m", "callbot", "users", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"callbot users {args[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
        out = r.stdout
    return out.strip().splitlines()[-1]


def stop_server(server: BenchServer, drain_secs: float = 2.0) -> None:
    """SIGTERM (the worker drains: calls in progress may finish), a second SIGTERM after ``drain_secs``
    (calls still up are ended), SIGKILL if it is still there 15 s later."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=drain_secs)
        return
    except subprocess.TimeoutExpired:
        server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_group(pid: int, tid: int, comm: str) -> str:
    """Which part of the server a thread is (names set by ``callbot.osthreads``)."""
    if tid == pid:
        return "event loop"
    if comm.startswith("whisper"):
        return "whisper"
    return "vad" if comm == "vad" else "other"


def cpu_by_thread_group(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread group (threads that ended are lost: sample a window)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended between listing and reading
            continue
        group = thread_group(pid, int(task.name), comm)
        out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class ProcSampler:
    """CPU % (whole process and per thread group) and RSS of the server over a measured window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.cpu0 = cpu_seconds(pid)
        self.groups0 = cpu_by_thread_group(pid)
        self.rss: list[float] = [rss_mb(pid)]
        self.cpu_samples: list[float] = []
        self._last = (self.t0, self.cpu0)

    def sample(self) -> None:
        now, cpu = time.monotonic(), cpu_seconds(self.pid)
        t, c = self._last
        if now - t > 0.2:
            self.cpu_samples.append(100 * (cpu - c) / (now - t))
        self._last = (now, cpu)
        self.rss.append(rss_mb(self.pid))

    def summary(self) -> dict[str, float]:
        self.sample()
        wall = time.monotonic() - self.t0
        groups = cpu_by_thread_group(self.pid)
        return {
            "cpu_pct_by_thread": {g: round(100 * (c - self.groups0.get(g, 0.0)) / wall, 1) if wall > 0 else 0.0
                                  for g, c in sorted(groups.items())},
            "cpu_pct_mean": round(100 * (cpu_seconds(self.pid) - self.cpu0) / wall, 1) if wall > 0 else 0.0,
            "cpu_pct_max": round(max(self.cpu_samples, default=0.0), 1),
            "rss_mb_start": round(self.rss[0], 1),
            "rss_mb_max": round(max(self.rss), 1),
        }


def pct(values: list[float], q: float) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return vals[min(len(vals) - 1, int(q * len(vals)))]


def stats(values: list[float | None]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None]
    return {"n": len(vals), "p50": pct(vals, 0.5), "p95": pct(vals, 0.95), "max": max(vals, default=None)}


def fmt_stats(name: str, values: list[float | None], unit_ms: bool = True) -> str:
    s = stats(values)
    if not s["n"]:
        return f"  {name:<22} -"
    f = (lambda v: f"{v * 1000:6.0f} ms") if unit_ms else (lambda v: f"{v:8.2f}")
    return f"  {name:<22} p50 {f(s['p50'])}  p95 {f(s['p95'])}  max {f(s['max'])}  (n={s['n']})"
