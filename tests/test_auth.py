"""Accounts, login, sessions, tokens, CSRF, rate limiting, audit and ``callbot users`` over a real Redis."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from callbot.config import Settings
from callbot.redis_server import RedisServer
from callbot.store import EventStore
from callbot.switchboard.accounts import AccountError, Accounts, User
from callbot.web import api
from callbot.web.auth import (AUDIT_STREAM, AUTH, SESSION_COOKIE, accounts_on, current_user, is_api, require_role,
                              setup_auth, visible_services)

FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # tests only: production keeps the defaults
PW = "correct horse battery"


def _runtime(store: EventStore) -> SimpleNamespace:
    return SimpleNamespace(store=store, ready=True, active_calls={}, voice=SimpleNamespace(engine="pico", name="fr"),
                           flows=SimpleNamespace(current=SimpleNamespace(name="mairie", version="abc")))


async def ops_only(request: web.Request) -> web.Response:
    require_role(request, "ops")
    return web.json_response({"ok": True})


async def echo(request: web.Request) -> web.Response:
    services = visible_services(request)
    return web.json_response({"user": current_user(request).name,
                              "services": sorted(services) if services is not None else None})


@pytest.fixture
async def env(redis_url):
    """An app like the server's (api routes + test routes + auth), a client, and the accounts."""
    store = EventStore(redis_url)
    app = web.Application()
    app[api.RUNTIME] = _runtime(store)
    api.setup_routes(app)
    app.router.add_get("/api/ops-only", ops_only)
    app.router.add_post("/api/echo", echo)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis, hasher=FAST))
    accounts = Accounts(store.redis, hasher=FAST)
    await accounts.add("Marie", "agent", PW, ["etat_civil"], display_name="Marie D.")
    await accounts.add("chef", "ops", PW)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield SimpleNamespace(client=client, accounts=accounts, redis=store.redis, app=app)
    finally:
        await client.close()
        await store.redis.aclose()


async def _login(client: TestClient, name: str, password: str = PW, next_path: str = ""):
    return await client.post("/login", data={"name": name, "password": password, "next": next_path},
                             allow_redirects=False)


async def test_every_route_of_the_server_needs_a_login(redis_url, tmp_path):
    """Walks the real app's routes: a route added later that forgets auth fails here."""
    from callbot.server import create_app

    app = create_app(Settings(data_dir=tmp_path, redis_url=redis_url, sip_enabled=False))
    app.cleanup_ctx.clear()  # no models: a fake runtime over the test Redis
    store = EventStore(redis_url)
    app[api.RUNTIME] = _runtime(store)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    open_routes, checked = set(), 0
    try:
        for route in app.router.routes():
            resource = route.resource
            if isinstance(resource, web.StaticResource):
                continue
            canonical = resource.canonical
            if canonical in ("/healthz", "/login") or canonical.startswith("/twilio/"):
                open_routes.add(canonical)
                continue
            method = "GET" if route.method == "*" else route.method
            path = re.sub(r"\{[^}]+\}", "x1", canonical)
            resp = await client.request(method, path, allow_redirects=False)
            if is_api(path):
                assert resp.status == 401, (method, path, resp.status)
                assert resp.headers["WWW-Authenticate"] == "Bearer"
                if method != "HEAD":
                    assert (await resp.json())["error"] == "unauthorized"
            else:
                assert resp.status == 302, (method, path, resp.status)
                assert resp.headers["Location"].startswith("/login?next=/"), resp.headers["Location"]
            checked += 1
        assert checked >= 5 and "/api/calls/{call_id}" not in open_routes
        assert {"/healthz", "/login", "/twilio/voice"} <= open_routes
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/login")).status == 200
        assert (await client.get("/nothing-here", allow_redirects=False)).status == 302  # 404s don't leak
        assert (await client.get("/api/nothing", allow_redirects=False)).status == 401
    finally:
        await client.close()
        await store.redis.aclose()


async def test_login_sets_a_strict_httponly_cookie_and_redirects_home(env):
    page = await env.client.get("/login?next=/console")
    text = await page.text()
    assert 'name="password"' in text and 'value="/console"' in text and "<script" not in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    resp = await _login(env.client, "MARIE")  # names are case-insensitive
    assert resp.status == 302 and resp.headers["Location"] == "/console"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie and "Max-Age=36000" in cookie and "Secure" not in cookie
    me = await (await env.client.get("/api/me")).json()
    assert me["name"] == "marie" and me["role"] == "agent" and me["services"] == ["etat_civil"] and me["csrf"]
    assert (await env.client.get("/api/calls")).status == 200
    sid = env.client.session.cookie_jar.filter_cookies(env.client.make_url("/"))[SESSION_COOKIE].value.split(".")[0]
    assert 35000 < await env.redis.ttl(f"callbot:sb:session:{sid}") <= 36000

    other = TestClient(env.client.server)
    try:
        assert (await _login(other, "chef")).headers["Location"] == "/dashboard"
        assert (await _login(other, "chef", next_path="/api/tickets")).headers["Location"] == "/api/tickets"
        for evil in ("//evil.example/x", "https://evil.example", "/\\evil.example", "/login"):
            assert (await _login(other, "chef", next_path=evil)).headers["Location"] == "/dashboard", evil
        env.app[AUTH].cookie_secure = True  # session_cookie_secure: behind HTTPS
        assert "; Secure" in (await _login(other, "chef")).headers["Set-Cookie"]
    finally:
        await other.close()


async def test_wrong_password_then_rate_limit(env):
    resp = await _login(env.client, "marie", "wrong password")
    assert resp.status == 401 and "Identifiant ou mot de passe incorrect" in await resp.text()
    assert SESSION_COOKIE not in resp.cookies
    assert (await _login(env.client, "nobody", "whatever!")).status == 401  # same answer for unknown names
    for _ in range(3):
        assert (await _login(env.client, "marie", "wrong password")).status == 401
    # 5 failures from this IP: the 6th try is refused, even with the right password
    resp = await _login(env.client, "marie")
    assert resp.status == 429 and 0 < int(resp.headers["Retry-After"]) <= 300
    assert (await _login(env.client, "chef")).status == 429  # per IP too
    await env.redis.delete("callbot:sb:login_fail:ip:127.0.0.1")
    assert (await _login(env.client, "chef")).status == 302
    assert (await _login(env.client, "marie")).status == 302  # 4 failures on the name: not blocked yet


async def test_tampered_cookie_and_bearer_tokens(env):
    await _login(env.client, "marie")
    cookie = env.client.session.cookie_jar.filter_cookies(env.client.make_url("/"))[SESSION_COOKIE].value
    sid, sig = cookie.split(".")
    tampered = TestClient(env.client.server, cookies={SESSION_COOKIE: f"{sid}.{'0' * len(sig)}"})
    unsigned = TestClient(env.client.server, cookies={SESSION_COOKIE: sid})
    token = await env.accounts.new_token("marie")
    bearer = TestClient(env.client.server, headers={"Authorization": f"Bearer {token}"})
    wrong = TestClient(env.client.server, headers={"Authorization": "Bearer " + "x" * 43})
    try:
        assert (await tampered.get("/api/me")).status == 401
        assert (await unsigned.get("/api/me")).status == 401
        assert (await wrong.get("/api/calls")).status == 401
        me = await (await bearer.get("/api/me")).json()
        assert me["name"] == "marie" and "csrf" not in me
        assert (await bearer.post("/api/echo")).status == 200  # no CSRF for bearer tokens
        assert token not in str(await env.redis.keys("callbot:sb:*"))  # stored hashed only
        assert (await env.client.get("/api/me")).status == 200
        assert await env.accounts.remove("marie")
        assert (await bearer.get("/api/me")).status == 401  # at once
        assert (await env.client.get("/api/me")).status == 401
        assert (await env.client.get("/console", allow_redirects=False)).headers["Location"] == \
            "/login?next=/console"
    finally:
        for c in (tampered, unsigned, bearer, wrong):
            await c.close()


async def test_roles(env):
    agent = TestClient(env.client.server, headers={"Authorization": f"Bearer {await env.accounts.new_token('marie')}"})
    ops = TestClient(env.client.server, headers={"Authorization": f"Bearer {await env.accounts.new_token('chef')}"})
    try:
        resp = await agent.get("/api/ops-only")
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
        assert (await ops.get("/api/ops-only")).status == 200
        assert (await (await agent.post("/api/echo")).json())["services"] == ["etat_civil"]
        assert (await (await ops.post("/api/echo")).json())["services"] is None
    finally:
        await agent.close()
        await ops.close()
    user = User(name="a", role="agent", services=["urbanisme"], created=0)
    assert user.can_see("urbanisme") and not user.can_see("etat_civil")
    assert User(name="b", role="agent", services=["*"], created=0).can_see("etat_civil")
    assert User(name="c", role="ops", created=0).can_see("etat_civil")


async def test_csrf_on_cookie_sessions(env):
    await _login(env.client, "marie")
    csrf = (await (await env.client.get("/api/me")).json())["csrf"]
    resp = await env.client.post("/api/echo")
    assert resp.status == 403 and "CSRF" in (await resp.json())["message"]
    assert (await env.client.post("/api/echo", headers={"X-CSRF-Token": ""})).status == 403
    assert (await env.client.post("/api/echo", headers={"X-CSRF-Token": csrf + "x"})).status == 403
    assert (await env.client.post("/api/echo", headers={"X-CSRF-Token": csrf})).status == 200
    assert (await env.client.post("/api/echo", data={"csrf": csrf})).status == 200
    host = env.client.make_url("/").authority
    assert (await env.client.post("/api/echo", headers={"X-CSRF-Token": csrf, "Origin": f"http://{host}"})).status \
        == 200
    resp = await env.client.post("/api/echo", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert resp.status == 403 and "Origin" in (await resp.json())["message"]
    assert (await env.client.post("/logout", allow_redirects=False)).status == 403
    resp = await env.client.post("/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    assert (await env.client.get("/api/me")).status == 401


async def test_audit_stream(env):
    await _login(env.client, "marie", "wrong password")
    await _login(env.client, "chef")
    assert (await env.client.get("/api/tickets.csv")).status == 200
    csrf = (await (await env.client.get("/api/me")).json())["csrf"]
    await env.client.post("/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    entries = [f for _, f in await env.redis.xrange(AUDIT_STREAM)]
    assert [(e["action"], e["user"]) for e in entries] == [
        ("login_failed", "marie"), ("login", "chef"), ("export", "chef"), ("logout", "chef")]
    assert all(e["ip"] == "127.0.0.1" and float(e["ts"]) > 0 for e in entries)
    assert entries[2]["detail"].startswith("tickets.csv")


async def test_accounts_rules(redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        accounts = Accounts(redis, hasher=FAST)
        with pytest.raises(AccountError, match="too short"):
            await accounts.add("x", "agent", "short")
        with pytest.raises(AccountError, match="invalid user name"):
            await accounts.add("no spaces", "agent", PW)
        await accounts.add("x", "agent", PW)
        with pytest.raises(AccountError, match="already exists"):
            await accounts.add("x", "ops", PW)
        await accounts.add("x", "ops", PW, replace=True)
        assert (await accounts.get("x")).role == "ops" and [u.name for u in await accounts.list()] == ["x"]
        assert await accounts.verify("x", "wrong password") is None and await accounts.verify("zz", PW) is None
        stored = await redis.hget("callbot:sb:user:x", "password_hash")
        stronger = Accounts(redis, hasher=PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1))
        assert (await stronger.verify("x", PW)).name == "x"
        rehashed = await redis.hget("callbot:sb:user:x", "password_hash")
        assert rehashed != stored and "t=2" in rehashed  # rehashed at login after a parameter change
        sid, _ = await accounts.new_session("x")
        await accounts.set_password("x", "another password")
        assert await accounts.session(sid) is None  # a password reset ends the sessions
        assert (await accounts.verify("x", "another password")).name == "x"
    finally:
        await redis.aclose()


# ---- the CLI
def _cli(*argv: str) -> int:
    from callbot.cli import main

    return main(list(argv))


@pytest.fixture
def cli_env(monkeypatch):
    for name in ("CALLBOT_CONFIG", "CALLBOT_REDIS_URL", "CALLBOT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_cli_users_against_redis_url(redis_url, cli_env, tmp_path, capsys):
    cli_env.setenv("CALLBOT_REDIS_URL", redis_url)
    cli_env.setenv("CALLBOT_DATA_DIR", str(tmp_path / "data"))
    pw = tmp_path / "pw"
    pw.write_text("s3cret password\nignored\n")
    assert await asyncio.to_thread(_cli, "users", "add", "Paul", "--role", "agent", "--services", "urbanisme, agent",
                                   "--phone", "sip:paul@10.0.0.5", "--password-file", str(pw)) == 0
    assert await asyncio.to_thread(_cli, "users", "add", "paul", "--role", "agent", "--password-file", str(pw)) == 2
    assert "already exists" in capsys.readouterr().err
    cli_env.setattr(sys, "stdin", io.StringIO(""))
    assert await asyncio.to_thread(_cli, "users", "add", "bob", "--role", "agent") == 2
    assert "--password-file" in capsys.readouterr().err
    assert await asyncio.to_thread(_cli, "users", "token", "paul") == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert await asyncio.to_thread(_cli, "users", "list") == 0
    listing = capsys.readouterr().out
    assert re.search(r"paul\s+agent\s+urbanisme,agent\s+sip:paul@10.0.0.5", listing), listing

    store = EventStore(redis_url)
    app = web.Application()
    app[api.RUNTIME] = _runtime(store)
    api.setup_routes(app)
    setup_auth(app, accounts_on(lambda a: a[api.RUNTIME].store.redis))
    client = TestClient(TestServer(app, host="127.0.0.1"), headers={"Authorization": f"Bearer {token}"})
    await client.start_server()
    try:
        assert (await (await client.get("/api/me")).json())["name"] == "paul"
        resp = await client.post("/login", data={"name": "paul", "password": "s3cret password"},
                                 allow_redirects=False)
        assert resp.status == 302  # the password is the file's first line, stripped
        pw.write_text("new password 2\n")
        assert await asyncio.to_thread(_cli, "users", "passwd", "paul", "--password-file", str(pw)) == 0
        assert await asyncio.to_thread(_cli, "users", "remove", "paul") == 0
        assert (await client.get("/api/me")).status == 401
        assert await asyncio.to_thread(_cli, "users", "remove", "paul") == 1
    finally:
        await client.close()
        await store.redis.aclose()


def test_cli_users_on_the_embedded_redis(cli_env, tmp_path, capsys):
    """No redis_url: the data dir's Redis, started for the command (twice: the user persisted) or the server's."""
    data = tmp_path / "data"
    cli_env.setenv("CALLBOT_DATA_DIR", str(data))
    pw = tmp_path / "pw"
    pw.write_text("embedded password\n")
    assert _cli("users", "add", "carol", "--role", "ops", "--password-file", str(pw)) == 0
    assert _cli("users", "list") == 0
    assert re.search(r"^carol\s+ops", capsys.readouterr().out, re.M)

    server = RedisServer(data / "redis").start()  # as a running `callbot serve` does
    try:
        (data / "redis.url").write_text(server.url + "\n")
        assert _cli("users", "add", "dave", "--role", "agent", "--password-file", str(pw)) == 0

        async def names() -> set[str]:
            redis = aioredis.from_url(server.url, decode_responses=True)
            try:
                return set(await redis.smembers("callbot:sb:users"))
            finally:
                await redis.aclose()

        assert asyncio.run(names()) == {"carol", "dave"}  # written into the running server's Redis
    finally:
        server.stop()
    capsys.readouterr()
    assert _cli("users", "list") == 0  # stale redis.url: starts its own again
    out = capsys.readouterr().out
    assert re.search(r"^carol\s+ops", out, re.M) and re.search(r"^dave\s+agent", out, re.M)
