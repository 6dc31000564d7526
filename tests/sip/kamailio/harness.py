"""Kamailio (Debian package) in front of callbot SIP workers, for tests. Loopback only.

- ``Kamailio``: runs the production config, ``deploy/kamailio/kamailio.cfg``, as is (its site values
  given with ``-A``, lists and control socket in a temp dir) with ``kamailio -DD -E`` in the foreground
  in its own process group, talks to it with ``kamcmd`` over the ``ctl`` unix socket, and kills the
  whole group on ``stop()``: what the tests prove is what operations deploy.
- ``ToneWorker``: ``python -m callbot_testing.sip_testbot`` in a subprocess (one
  SIP engine per process: libre's state is process-global); its ``CALL {json}``
  stdout lines say which worker handled which call.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
LOOPBACK = "127.0.0.1"


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies (even on a crash), so
    an aborted run cannot leave workers or Kamailio holding ports (Linux prctl)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def module_dir() -> str | None:
    """Where the Debian package put its modules (``dpkg -L kamailio | grep dispatcher.so``)."""
    for d in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
              "/usr/lib/kamailio/modules"):
        if Path(d, "dispatcher.so").exists():
            return d + "/"
    try:
        out = subprocess.run(["dpkg", "-L", "kamailio"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.endswith("/dispatcher.so"):
            return line.rsplit("/", 1)[0] + "/"
    return None


def available() -> bool:
    return bool(shutil.which("kamailio") and shutil.which("kamcmd") and module_dir())


def config_defines(*, port: int, run_dir: Path, dispatcher_list: Path, ping_interval: int,
                   address_list: Path | None = None, auth: tuple[str, str] = ("", "")) -> list[str]:
    """``kamailio -A`` arguments that put the deploy config on loopback with its files in a temp dir.
    One failed probe takes a worker out (production waits for two): the tests stay fast."""
    values = {"LISTEN_IP": LOOPBACK, "LISTEN_PORT": str(port), "PROBE_INTERVAL": str(ping_interval),
              "PROBE_THRESHOLD": "1", "CHILDREN": "2", "CTL_SOCKET": f'"unix:{run_dir / "kamailio_ctl"}"',
              "DISPATCHER_LIST": f'"{dispatcher_list}"'}
    if address_list is not None:
        values["ADDRESS_LIST"] = f'"{address_list}"'
    if auth[0]:
        values.update(AUTH_USER=f'"{auth[0]}"', AUTH_PASSWORD=f'"{auth[1]}"')
    args = []
    for name, value in values.items():
        args += ["-A", f"{name}={value}"]
    return args


class Kamailio:
    def __init__(self, workdir: Path, workers: list[str], *, port: int, ping_interval: int = 1,
                 defines: tuple[str, ...] = (), trusted: list[str] = (), auth: tuple[str, str] = ("", "")) -> None:
        self.dir = Path(workdir)
        self.workers = list(workers)  # dispatcher URIs, with a user part (the OPTIONS pings go there)
        self.port = port
        self.ping_interval = ping_interval
        self.defines = defines
        self.trusted = list(trusted)
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "kamailio.log"

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def ctl(self) -> str:
        return f"unix:{self.dir / 'run' / 'kamailio_ctl'}"

    def start(self, timeout: float = 10.0) -> Kamailio:
        run = self.dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        ds = self.dir / "dispatcher.list"
        ds.write_text("# setid destination flags priority attrs\n" + "".join(
            f"1 {uri} 0 0 weight=50;name=bot{i + 1}\n" for i, uri in enumerate(self.workers)))
        trusted = self.dir / "address.list"
        # permissions address file: group ip mask port tag
        trusted.write_text("".join(f"1 {net.split('/')[0]} {net.split('/')[1] if '/' in net else 32} 0\n"
                                   for net in self.trusted))
        cmd = ["kamailio", "-f", str(CONFIG), "-L", module_dir(), "-DD", "-E", "-Y", str(run),
               "-P", str(run / "kamailio.pid"), "-m", "32", "-M", "4", "-w", str(self.dir),
               *config_defines(port=self.port, run_dir=run, dispatcher_list=ds, ping_interval=self.ping_interval,
                               address_list=trusted, auth=self.auth)]
        for d in self.defines:
            cmd += ["-A", d]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True,  # own group: children go with it
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if "URI" in self.rpc("dispatcher.list"):
                    return self
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio not ready in {timeout} s:\n{self.log()}")

    def rpc(self, *args: str) -> str:
        return subprocess.run(["kamcmd", "-s", self.ctl, *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout

    def destinations(self) -> dict[str, dict]:
        """Dispatcher URI -> {"flags": "AP" (active, probing) | "IP" (inactive) | "DX" (disabled) ...,
        "ping_timeouts": int, "ping_avg_ms": float} (latency stats of the OPTIONS pings)."""
        out: dict[str, dict] = {}
        uri = None
        for line in self.rpc("dispatcher.list").splitlines():
            key, _, val = line.strip().partition(":")
            val = val.strip()
            if key == "URI":
                uri = val
                out[uri] = {}
            elif uri and key == "FLAGS":
                out[uri]["flags"] = val
            elif uri and key == "TIMEOUT":
                out[uri]["ping_timeouts"] = int(val)
            elif uri and key == "AVG":
                out[uri]["ping_avg_ms"] = float(val)
        return out

    def wait_flags(self, uri: str, flags: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.destinations().get(uri, {}).get("flags") == flags:
                return True
            time.sleep(0.1)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # stragglers of our own group (the attendant normally takes its children down)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.proc = None


def capture_sip(port: int, secs: float) -> str | None:
    """ASCII dump of the SIP datagrams to/from ``port`` on ``lo`` for ``secs`` (tcpdump; None if unusable)."""
    if not shutil.which("tcpdump"):
        return None
    try:
        p = subprocess.run(["timeout", "-s", "INT", str(secs), "tcpdump", "-i", "lo", "-n", "-l", "-A", "-s", "0",
                            f"udp port {port}"], capture_output=True, text=True, timeout=secs + 5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if "listening on" in p.stderr else None


class ToneWorker:
    """The tone test bot as a separate process (``python -m callbot_testing.sip_testbot``)."""

    def __init__(self, workdir: Path, name: str, port: int, max_calls: int = 20) -> None:
        self.dir = Path(workdir)
        self.name = name
        self.port = port
        self.max_calls = max_calls  # beyond: 503 + Retry-After
        self.proc: subprocess.Popen | None = None
        self.out = self.dir / f"{name}.out"
        self.err = self.dir / f"{name}.log"

    @property
    def uri(self) -> str:
        return f"sip:callbot@{LOOPBACK}:{self.port}"

    def start(self) -> ToneWorker:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callbot_testing.sip_testbot", "--port", str(self.port), "--name", self.name,
             "--max-calls", str(self.max_calls)],
            cwd=ROOT, stdout=open(self.out, "ab"), stderr=open(self.err, "ab"), start_new_session=True,
            preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        mark = f":{self.port}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()}")
            if self.out.exists() and any(line.startswith("tone bot on") and line.endswith(mark)
                                         for line in self.out.read_text().splitlines()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker {self.name} not ready:\n{self.log()}")

    def calls(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line[5:]) for line in self.out.read_text().splitlines() if line.startswith("CALL ")]

    def log(self) -> str:
        return self.err.read_text(errors="replace")[-4000:] if self.err.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crashed worker (no BYE, no unregistration)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
