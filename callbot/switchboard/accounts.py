"""Switchboard accounts: who may read calls, tickets and take calls, and how they prove it.

Everything lives in Redis (prefix ``callbot:sb:``) so every worker sees the same
accounts, and deleting a key revokes a credential at once (no signed cookie that
stays valid until it expires):

- ``user:{name}``        hash: role, display_name, services (JSON), phone, created, password_hash
- ``users``              set of names
- ``token:{sha256}``     -> name. API tokens are stored hashed: a Redis dump does not leak them
- ``tokens:{name}``      set of that user's token hashes (to revoke them with the user)
- ``session:{sid}``      JSON ``{user, csrf, created}``, TTL = ``SESSION_MAX_AGE`` (not sliding)
- ``sessions:{name}``    set of that user's session ids (to end them with the user)

Passwords: argon2id (argon2-cffi defaults), hashed and verified in a thread because
one verification costs ~130 ms of CPU. There is no default account or password: the
first ones are made with ``callbot users add``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from typing import Literal

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, field_validator

from callbot.errors import CallbotError

P = "callbot:sb:"
SESSION_MAX_AGE = 10 * 3600  # one working day, then log in again
PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # argon2 copes with more, but nobody types that: refuse it before hashing
NAME_RE = re.compile(r"[a-z0-9._-]{1,40}")
Role = Literal["agent", "ops"]


class AccountError(CallbotError):
    code = "account_error"


def normalise_name(name: str) -> str:
    """``Marie.Dupont`` -> ``marie.dupont``; raises AccountError for anything else than 1-40 [a-z0-9._-]."""
    value = str(name).strip().lower()
    if not NAME_RE.fullmatch(value):
        raise AccountError(f"invalid user name {name!r}: 1 to 40 characters among a-z 0-9 . _ -")
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class User(BaseModel):
    """A switchboard user. ``services`` are flow service names (``etat_civil``, ``agent`` = accueil; ``*`` = all)."""

    name: str
    role: Role
    display_name: str = ""
    services: list[str] = []
    phone: str = ""  # SIP URI or E.164 number the switchboard rings
    created: float

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: str) -> str:
        return normalise_name(v)

    @field_validator("services", mode="before")
    @classmethod
    def _services(cls, v):
        if isinstance(v, str):
            v = v.split(",")
        return [s.strip() for s in v if s and s.strip()]

    def can_see(self, service: str) -> bool:
        """Ops see every service; an agent only the services they answer for."""
        return self.role == "ops" or "*" in self.services or service in self.services


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"password too short: at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"password too long: at most {PASSWORD_MAX} characters")


class Accounts:
    """Users, API tokens and login sessions over a ``redis.asyncio.Redis`` (``decode_responses=True``).

    ``hasher`` is injectable so tests can use cheap argon2 parameters; production keeps
    argon2-cffi's defaults (argon2id, t=3, m=64 MiB, p=4).
    """

    def __init__(self, redis: aioredis.Redis, hasher: PasswordHasher | None = None,
                 session_max_age: int = SESSION_MAX_AGE) -> None:
        self.redis = redis
        self.hasher = hasher or PasswordHasher()
        self.session_max_age = session_max_age
        self._dummy_hash: str | None = None

    # ---- users
    async def add(self, name: str, role: Role, password: str, services: list[str] | None = None, phone: str = "",
                  display_name: str = "", *, replace: bool = False) -> User:
        """Create a user; an existing name is refused unless ``replace`` (which keeps its tokens and sessions)."""
        user = User(name=name, role=role, services=services or [], phone=phone.strip(),
                    display_name=display_name.strip(), created=time.time())
        _check_password(password)
        key = f"{P}user:{user.name}"
        if not replace and await self.redis.exists(key):
            raise AccountError(f"user {user.name!r} already exists (use --replace to overwrite it)")
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        fields = {"name": user.name, "role": user.role, "display_name": user.display_name,
                  "services": json.dumps(user.services), "phone": user.phone, "created": repr(user.created),
                  "password_hash": password_hash}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.sadd(f"{P}users", user.name)
            await pipe.execute()
        return user

    async def get(self, name: str) -> User | None:
        try:
            name = normalise_name(name)
        except AccountError:
            return None
        return _user(await self.redis.hgetall(f"{P}user:{name}"))

    async def list(self) -> list[User]:
        """Every account, one round trip for all (the queue loop asks every few seconds)."""
        names = sorted(await self.redis.smembers(f"{P}users"))
        pipe = self.redis.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(f"{P}user:{n}")
        return [u for u in map(_user, await pipe.execute()) if u is not None]

    async def remove(self, name: str) -> bool:
        """Delete the user and revoke its API tokens and sessions at once; False if there was no such user."""
        name = normalise_name(name)
        existed = await self.redis.exists(f"{P}user:{name}")
        tokens = await self.redis.smembers(f"{P}tokens:{name}")
        sessions = await self.redis.smembers(f"{P}sessions:{name}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{P}user:{name}", f"{P}tokens:{name}", f"{P}sessions:{name}",
                        *[f"{P}token:{t}" for t in tokens], *[f"{P}session:{s}" for s in sessions])
            pipe.srem(f"{P}users", name)
            await pipe.execute()
        return bool(existed)

    async def set_password(self, name: str, password: str) -> None:
        """New password; the user's open sessions end (a reset is usually because the old one leaked)."""
        name = normalise_name(name)
        _check_password(password)
        if not await self.redis.exists(f"{P}user:{name}"):
            raise AccountError(f"no user {name!r}")
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        await self.redis.hset(f"{P}user:{name}", "password_hash", password_hash)
        await self._end_sessions(name)

    async def verify(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None; unknown names cost the same time as known ones."""
        try:
            name = normalise_name(name)
        except AccountError:
            name = ""
        stored = await self.redis.hget(f"{P}user:{name}", "password_hash") if name else None
        if stored is None or len(password) > PASSWORD_MAX:
            await asyncio.to_thread(self._verify, await self._dummy(), password[:PASSWORD_MAX] or "-")
            return None
        if not await asyncio.to_thread(self._verify, stored, password):
            return None
        if self.hasher.check_needs_rehash(stored):  # parameters changed since it was hashed
            new_hash = await asyncio.to_thread(self.hasher.hash, password)
            await self.redis.hset(f"{P}user:{name}", "password_hash", new_hash)
        return await self.get(name)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    # ---- API tokens
    async def new_token(self, name: str) -> str:
        """A new bearer token for scripts and tests; only its SHA-256 is stored, so it is shown once."""
        name = normalise_name(name)
        if not await self.redis.exists(f"{P}user:{name}"):
            raise AccountError(f"no user {name!r}")
        token = secrets.token_urlsafe(32)
        h = token_hash(token)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{P}token:{h}", name)
            pipe.sadd(f"{P}tokens:{name}", h)
            await pipe.execute()
        return token

    async def user_for_token(self, token: str) -> User | None:
        if not token:
            return None
        name = await self.redis.get(f"{P}token:{token_hash(token)}")
        return await self.get(name) if name else None

    # ---- login sessions
    async def new_session(self, name: str) -> tuple[str, str]:
        """A fresh session id (never reuse one from before login) and its CSRF token."""
        name = normalise_name(name)
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        data = json.dumps({"user": name, "csrf": csrf, "created": time.time()})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{P}session:{sid}", data, ex=self.session_max_age)
            pipe.sadd(f"{P}sessions:{name}", sid)
            pipe.expire(f"{P}sessions:{name}", self.session_max_age)
            await pipe.execute()
        return sid, csrf

    async def session(self, sid: str) -> tuple[User, str] | None:
        """(user, csrf token) of a live session, None when it expired, ended or its user was removed."""
        if not sid:
            return None
        raw = await self.redis.get(f"{P}session:{sid}")
        if raw is None:
            return None
        data = json.loads(raw)
        user = await self.get(data["user"])
        if user is None:
            await self.redis.delete(f"{P}session:{sid}")
            return None
        return user, data["csrf"]

    async def end_session(self, sid: str) -> None:
        raw = await self.redis.getdel(f"{P}session:{sid}")
        if raw:
            await self.redis.srem(f"{P}sessions:{json.loads(raw)['user']}", sid)

    async def _end_sessions(self, name: str) -> None:
        sessions = await self.redis.smembers(f"{P}sessions:{name}")
        await self.redis.delete(f"{P}sessions:{name}", *[f"{P}session:{s}" for s in sessions])


async def shared_secret(redis: aioredis.Redis) -> bytes:
    """The cookie-signing key, made once and kept in Redis (``SET NX``) so every worker signs alike."""
    await redis.set(f"{P}secret", secrets.token_hex(32), nx=True)
    value = await redis.get(f"{P}secret")
    return value.encode("ascii") if isinstance(value, str) else value


def _user(h: dict[str, str]) -> User | None:
    """A ``user:{name}`` hash as a ``User`` (None: no such account)."""
    if not h:
        return None
    return User(name=h["name"], role=h["role"], display_name=h.get("display_name", ""),
                services=json.loads(h.get("services") or "[]"), phone=h.get("phone", ""),
                created=float(h.get("created") or 0))
