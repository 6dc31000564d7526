"""Digest authentication of incoming INVITEs (RFC 3261 §22.4 / RFC 2617, MD5, qop=auth).

The SIP stack (baresip-python) only authenticates as a client, so callbot does the
server side itself: the first INVITE is refused with ``401`` and a
``WWW-Authenticate`` challenge (``SipCall.reject(401, headers)``); the caller's
second INVITE carries ``Authorization``, checked here.

Nonces are stateless (``<timestamp>.<hmac>``, valid ``nonce_ttl`` seconds); a
response seen once is refused afterwards (replay) until its nonce expires.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import time

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class AuthResult(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # no (usable) Authorization header: challenge
    STALE = "stale"  # our nonce, expired: challenge again with stale=true
    DENIED = "denied"  # wrong user/password/realm/nonce, or a replay: 403


def parse_digest(header: str) -> dict[str, str]:
    """``Digest username="a", realm="b", nc=00000001`` -> {"username": "a", ...}."""
    h = header.strip()
    if not h.lower().startswith("digest "):
        return {}
    return {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
            for m in _PARAM.finditer(h[7:])}


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()  # noqa: S324 (SIP digest is MD5)


class DigestAuth:
    def __init__(self, user: str, password: str, realm: str = "callbot", nonce_ttl: float = 300.0,
                 secret: bytes | None = None) -> None:
        if not user or not password:
            raise ValueError("digest authentication needs a user and a password")
        self.user = user
        self.password = password
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self._secret = secret or os.urandom(32)
        self._seen: dict[str, float] = {}  # response -> expiry

    def _sign(self, ts: str) -> str:
        return hmac.new(self._secret, ts.encode(), hashlib.sha256).hexdigest()[:24]

    def nonce(self, now: float | None = None) -> str:
        ts = str(int(now if now is not None else time.time()))
        return f"{ts}.{self._sign(ts)}"

    def challenge(self, *, stale: bool = False) -> dict[str, str]:
        """Headers for the 401 response."""
        value = f'Digest realm="{self.realm}", nonce="{self.nonce()}", algorithm=MD5, qop="auth"'
        if stale:
            value += ", stale=true"
        return {"WWW-Authenticate": value}

    def verify(self, authorization: str | None, method: str = "INVITE") -> AuthResult:
        p = parse_digest(authorization or "")
        if not p or "response" not in p or "nonce" not in p:
            return AuthResult.MISSING
        if p.get("realm") != self.realm:
            return AuthResult.MISSING  # credentials for someone else: offer ours
        ts, _, sig = p["nonce"].partition(".")
        if not ts.isdigit() or not hmac.compare_digest(sig, self._sign(ts)):
            return AuthResult.DENIED
        now = time.time()
        if now - int(ts) > self.nonce_ttl:
            return AuthResult.STALE
        if p.get("algorithm", "MD5").upper() != "MD5":
            return AuthResult.DENIED
        if not hmac.compare_digest(p.get("username", ""), self.user):
            return AuthResult.DENIED
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        qop = p.get("qop")
        if qop:
            if qop.lower() != "auth" or "nc" not in p or "cnonce" not in p:
                return AuthResult.DENIED
            expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        if not hmac.compare_digest(expected, p["response"].lower()):
            return AuthResult.DENIED
        for k in [k for k, exp in self._seen.items() if exp < now]:
            del self._seen[k]
        if expected in self._seen:  # the same INVITE credentials twice: replay
            return AuthResult.DENIED
        self._seen[expected] = int(ts) + self.nonce_ttl
        return AuthResult.OK
