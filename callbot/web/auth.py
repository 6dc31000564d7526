"""Authentication for every route of the web app: login page, signed session cookie, API tokens, CSRF, audit.

Calls, transcripts and tickets hold callers' personal data, so the default is closed:
``setup_auth`` adds a middleware that lets through only ``/healthz``, ``/login``,
``/static/...`` and the Twilio webhooks (which check Twilio's signature themselves);
everything else needs either

- the ``callbot_session`` cookie (browsers): ``{sid}.{hmac-sha256(secret, sid)}``, the
  session itself in Redis (``Accounts.session``) so removing a user logs them out at once;
  changing requests (POST/PUT/PATCH/DELETE) must also carry the session's CSRF token
  (header ``X-CSRF-Token`` or form field ``csrf``) and a same-host ``Origin``;
- or ``Authorization: Bearer <token>`` (scripts, tests; ``callbot users token NAME``).

Openness is decided on the *matched route* (not the raw path) so ``/twilio/../api/calls``
cannot slip through. Refusals: ``/api/...`` and ``/metrics`` get 401 JSON, pages a
redirect to ``/login?next=...``. Failed logins are counted in Redis per IP and per name
(shared by every worker); logins, failures, logouts and exports go to the
``callbot:audit`` stream.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import inspect
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from callbot.switchboard.accounts import P, SESSION_MAX_AGE, Accounts, User, shared_secret

log = logging.getLogger(__name__)

SESSION_COOKIE = "callbot_session"
OPEN_PATHS = frozenset({"/healthz", "/login"})
OPEN_PREFIXES = ("/static/", "/twilio/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROLE_RANK = {"agent": 0, "ops": 1}
MAX_LOGIN_FAILURES = 5  # per IP and per name within LOGIN_FAIL_WINDOW_S; the next try gets 429
LOGIN_FAIL_WINDOW_S = 300
AUDIT_STREAM = "callbot:audit"
AUDIT_MAXLEN = 1_000_000

AccountsGetter = Callable[[web.Application], Accounts]
SecretGetter = Callable[[web.Application], bytes | Awaitable[bytes]]


@dataclass
class AuthConfig:
    accounts: AccountsGetter
    secret: SecretGetter
    cookie_secure: bool = False
    secret_cache: bytes | None = None


@dataclass(frozen=True)
class AuthInfo:
    via: str  # "session" | "token"
    csrf: str = ""
    sid: str = ""


AUTH = web.AppKey("auth", AuthConfig)
USER = web.RequestKey("user", User)  # request[USER]: the authenticated User (prefer current_user(request))
AUTH_INFO = web.RequestKey("auth", AuthInfo)  # request[AUTH_INFO]: how it authenticated


# ---- what handlers call
def current_user(request: web.Request) -> User:
    """The authenticated user; a handler on an open route that asks for one gets 401."""
    user = request.get(USER)
    if user is None:
        raise _json_error(web.HTTPUnauthorized, "unauthorized", "log in first", {"WWW-Authenticate": "Bearer"})
    return user


def require_role(request: web.Request, role: str) -> User:
    """403 unless the user has ``role`` or a higher one (ops > agent)."""
    user = current_user(request)
    if ROLE_RANK[user.role] < ROLE_RANK[role]:
        raise _json_error(web.HTTPForbidden, "forbidden",
                          f"this needs the {role!r} role; {user.name!r} is {user.role!r}")
    return user


def visible_services(request: web.Request) -> set[str] | None:
    """Services whose calls and tickets the user may see; None = all (ops, or an agent with ``*``)."""
    user = current_user(request)
    if user.role == "ops" or "*" in user.services:
        return None
    return set(user.services)


async def audit(redis: aioredis.Redis, action: str, user: str, ip: str, detail: str = "") -> None:
    """Append to the ``callbot:audit`` stream (login, login_failed, logout, export); never fails the request."""
    fields = {"ts": f"{time.time():.3f}", "action": action, "user": user, "ip": ip or "", "detail": detail}
    try:
        await redis.xadd(AUDIT_STREAM, fields, maxlen=AUDIT_MAXLEN, approximate=True)
    except RedisError as e:
        log.error("audit entry not written (%s): %s", e, fields)


# ---- wiring
def accounts_on(redis_of: Callable[[web.Application], aioredis.Redis], **kwargs) -> AccountsGetter:
    """An accounts getter over ``redis_of(app)``, resolved per request: the runtime's Redis only exists
    once the app's cleanup_ctx has run. One ``Accounts`` is kept while that Redis client stays the same."""
    holder: list[Accounts] = []

    def get(app: web.Application) -> Accounts:
        redis = redis_of(app)
        if not holder or holder[0].redis is not redis:
            holder[:] = [Accounts(redis, **kwargs)]
        return holder[0]

    return get


async def redis_secret(app: web.Application) -> bytes:
    """The cookie-signing secret shared by every worker through Redis (``callbot:sb:secret``)."""
    return await shared_secret(app[AUTH].accounts(app).redis)


def setup_auth(app: web.Application, accounts_getter: AccountsGetter, *, secret_getter: SecretGetter = redis_secret,
               cookie_secure: bool = False) -> None:
    """Guard every route of ``app`` and add ``GET/POST /login``, ``POST /logout``, ``GET /api/me``."""
    app[AUTH] = AuthConfig(accounts_getter, secret_getter, cookie_secure)
    app.middlewares.append(auth_middleware)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/me", me)


# ---- the middleware
def is_open(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    if resource is None:  # no route (404/405): answer as for a protected one, don't reveal what exists
        return False
    canonical = resource.canonical
    return canonical in OPEN_PATHS or any(canonical.startswith(p) or canonical + "/" == p for p in OPEN_PREFIXES)


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/") or path.startswith("/metrics")


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if is_open(request):
        return await handler(request)
    try:
        user, info = await _authenticate(request)
    except RedisError as e:
        log.error("accounts store unreachable: %s", e)
        raise _json_error(web.HTTPServiceUnavailable, "unavailable", "accounts store unreachable, try again") from e
    if user is None:
        if is_api(request.path):
            return web.json_response({"error": "unauthorized",
                                      "message": "log in, or send Authorization: Bearer <token> "
                                                 "(callbot users token NAME)"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        raise web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
    request[USER] = user
    request[AUTH_INFO] = info
    if info.via == "session" and request.method in UNSAFE_METHODS:
        await _check_csrf(request, info.csrf)
    return await handler(request)


async def _authenticate(request: web.Request) -> tuple[User | None, AuthInfo | None]:
    cfg = request.app[AUTH]
    accounts = cfg.accounts(request.app)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":  # other schemes (a proxy's Basic) are not ours: fall through to the cookie
        user = await accounts.user_for_token(token.strip())
        return user, AuthInfo("token") if user else None
    sid = _unsign(request.cookies.get(SESSION_COOKIE, ""), await _secret(request.app))
    found = await accounts.session(sid) if sid else None
    if found is None:
        return None, None
    return found[0], AuthInfo("session", csrf=found[1], sid=sid)


async def _check_csrf(request: web.Request, expected: str) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise _json_error(web.HTTPForbidden, "csrf", f"cross-site request refused: Origin {origin!r} is not this "
                                                     f"server ({request.host!r})")
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        token = str((await request.post()).get("csrf", ""))
    if not expected or not token or not secrets.compare_digest(token.encode(), expected.encode()):
        raise _json_error(web.HTTPForbidden, "csrf", "missing or wrong CSRF token: send the X-CSRF-Token header "
                                                     "(the csrf of GET /api/me) or a csrf form field")


async def _secret(app: web.Application) -> bytes:
    cfg = app[AUTH]
    if cfg.secret_cache is None:
        value = cfg.secret(app)
        value = await value if inspect.isawaitable(value) else value
        cfg.secret_cache = value.encode() if isinstance(value, str) else value
    return cfg.secret_cache


def _sign(sid: str, secret: bytes) -> str:
    return f"{sid}.{hmac.new(secret, sid.encode(), hashlib.sha256).hexdigest()}"


def _unsign(value: str, secret: bytes) -> str:
    sid, _, _sig = value.rpartition(".")
    if not sid or not secrets.compare_digest(_sign(sid, secret).encode(), value.encode()):
        return ""
    return sid


def _json_error(cls: type[web.HTTPException], error: str, message: str,
                headers: dict[str, str] | None = None) -> web.HTTPException:
    return cls(text=json.dumps({"error": error, "message": message}), content_type="application/json",
               headers=headers)


# ---- login / logout / me
LOGIN_HTML = """<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connexion — standard de la mairie</title>
<link rel="stylesheet" href="/static/common.css">
<link rel="stylesheet" href="/static/login.css">
</head>
<body>
<main>
<h1>Standard de la mairie</h1>
<p>Connectez-vous pour voir les appels et les fiches.</p>
{error}<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<p><label for="name">Identifiant</label><br>
<input id="name" name="name" autocomplete="username" autocapitalize="none" required maxlength="40"
 value="{name}" autofocus></p>
<p><label for="password">Mot de passe</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Se connecter</button></p>
</form>
</main>
</body>
</html>
"""
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def _login_response(next_path: str = "", error: str = "", name: str = "", status: int = 200,
                    headers: dict[str, str] | None = None) -> web.Response:
    body = LOGIN_HTML.format(next=html.escape(next_path), name=html.escape(name),
                             error=f'<p role="alert"><strong>{html.escape(error)}</strong></p>\n' if error else "")
    return web.Response(text=body, content_type="text/html", status=status, headers={**PAGE_HEADERS, **(headers or {})})


def safe_next(value: str, user: User) -> str:
    """Where to go after login: a local path only (no ``//host``, no backslash tricks), else the role's home."""
    default = "/dashboard" if user.role == "ops" else "/console"
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or value.startswith("/login")):
        return default
    return value


async def login_page(request: web.Request) -> web.Response:
    return _login_response(request.query.get("next", ""))


def _fail_keys(ip: str, name: str) -> list[str]:
    return [f"{P}login_fail:ip:{ip}", f"{P}login_fail:user:{name[:64]}"]


async def _retry_after(redis: aioredis.Redis, keys: list[str]) -> int:
    """Seconds until a blocked IP or name may try again; 0 = not blocked."""
    async with redis.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.get(k)
            pipe.ttl(k)
        res = await pipe.execute()
    waits = [max(1, ttl) for count, ttl in zip(res[::2], res[1::2]) if int(count or 0) >= MAX_LOGIN_FAILURES]
    return max(waits, default=0)


async def _count_failure(redis: aioredis.Redis, keys: list[str]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for k in keys:  # fixed window from the first failure; INCR keeps the TTL
            pipe.set(k, 0, ex=LOGIN_FAIL_WINDOW_S, nx=True)
            pipe.incr(k)
        await pipe.execute()


async def login_submit(request: web.Request) -> web.Response:
    """Check the form; on success a fresh session (new id: no fixation) and a redirect to ``next``."""
    cfg = request.app[AUTH]
    accounts = cfg.accounts(request.app)
    redis = accounts.redis
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise _json_error(web.HTTPForbidden, "csrf", f"cross-site login refused: Origin {origin!r}")
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()
    password = str(form.get("password", ""))
    next_path = str(form.get("next", ""))
    ip = request.remote or ""
    keys = _fail_keys(ip, name)
    wait = await _retry_after(redis, keys)
    if wait:
        await audit(redis, "login_failed", name, ip, "rate limited")
        return _login_response(next_path, f"Trop d'essais. Réessayez dans {(wait + 59) // 60} minute(s).", name,
                               status=429, headers={"Retry-After": str(wait)})
    user = await accounts.verify(name, password)
    if user is None:
        await _count_failure(redis, keys)
        await audit(redis, "login_failed", name, ip, "wrong name or password")
        log.warning("failed login for %r from %s", name, ip)
        return _login_response(next_path, "Identifiant ou mot de passe incorrect", name, status=401)
    await redis.delete(keys[1])  # the name's counter only: logging into one's own account must not reset the IP's
    sid, _csrf = await accounts.new_session(user.name)
    await audit(redis, "login", user.name, ip)
    log.info("login: %s (%s) from %s", user.name, user.role, ip)
    resp = web.Response(status=302, headers={"Location": safe_next(next_path, user), "Cache-Control": "no-store"})
    resp.set_cookie(SESSION_COOKIE, _sign(sid, await _secret(request.app)), max_age=SESSION_MAX_AGE, path="/",
                    httponly=True, samesite="Strict", secure=True if cfg.cookie_secure else None)
    return resp


async def logout(request: web.Request) -> web.Response:
    cfg = request.app[AUTH]
    accounts = cfg.accounts(request.app)
    info: AuthInfo = request[AUTH_INFO]
    if info.via == "session":
        await accounts.end_session(info.sid)
    await audit(accounts.redis, "logout", current_user(request).name, request.remote or "", info.via)
    resp = web.Response(status=302, headers={"Location": "/login", "Cache-Control": "no-store"})
    resp.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                    secure=True if cfg.cookie_secure else None)
    return resp


async def me(request: web.Request) -> web.Response:
    """Who is logged in; the console reads its CSRF token here (cookie sessions only)."""
    user = current_user(request)
    info: AuthInfo = request[AUTH_INFO]
    out = {"name": user.name, "role": user.role, "services": user.services, "display_name": user.display_name}
    if info.via == "session":
        out["csrf"] = info.csrf
    return web.json_response(out, headers={"Cache-Control": "no-store"})
