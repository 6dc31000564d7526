"""Digest verification for inbound INVITEs (callbot.telephony.sip.auth), no network."""

from __future__ import annotations

import hashlib
import time

from callbot.telephony.sip.auth import AuthResult, DigestAuth, parse_digest


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def authorization(nonce: str, *, user="pbx", password="pw", realm="callbot", uri="sip:mairie@10.0.0.5",
                  qop: str | None = "auth", nc="00000001", cnonce="abc123") -> str:
    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"INVITE:{uri}")
    if qop:
        resp = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}", '
                f'algorithm=MD5, qop={qop}, nc={nc}, cnonce="{cnonce}"')
    resp = md5(f"{ha1}:{nonce}:{ha2}")
    return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}"'


def test_challenge_and_verify():
    a = DigestAuth("pbx", "pw")
    ch = a.challenge()["WWW-Authenticate"]
    p = parse_digest(ch)
    assert p["realm"] == "callbot" and p["qop"] == "auth" and p["algorithm"] == "MD5"
    assert a.verify(authorization(p["nonce"])) is AuthResult.OK
    assert a.verify(authorization(a.nonce(), qop=None)) is AuthResult.OK  # RFC 2069 style


def test_refusals():
    a = DigestAuth("pbx", "pw")
    n = a.nonce()
    assert a.verify(None) is AuthResult.MISSING
    assert a.verify("Basic cGJ4OnB3") is AuthResult.MISSING
    assert a.verify(authorization(n, realm="other")) is AuthResult.MISSING
    assert a.verify(authorization(n, password="nope")) is AuthResult.DENIED
    assert a.verify(authorization(n, user="intruder")) is AuthResult.DENIED
    assert a.verify(authorization("123.forged")) is AuthResult.DENIED  # not our nonce
    assert a.verify(authorization(DigestAuth("pbx", "pw").nonce())) is AuthResult.DENIED  # another secret
    old = a.nonce(time.time() - 600)
    assert a.verify(authorization(old)) is AuthResult.STALE
    assert "stale=true" in a.challenge(stale=True)["WWW-Authenticate"]


def test_replay_refused():
    a = DigestAuth("pbx", "pw")
    n = a.nonce()
    assert a.verify(authorization(n)) is AuthResult.OK
    assert a.verify(authorization(n)) is AuthResult.DENIED  # same credentials again
    assert a.verify(authorization(n, nc="00000002")) is AuthResult.OK  # next request on the nonce
