"""TwiML reading and URL mapping for the test caller (the parts of Twilio it imitates)."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: prefix + 32 hex digits (CA call, MZ stream, AC account)."""
    return prefix + secrets.token_hex(16)


@dataclass
class StreamTwiml:
    url: str | None  # <Stream url>, None when the TwiML has no stream
    verb: str  # Connect (bidirectional), Start (fork only), or the first verb (Reject, Hangup, Say...)
    parameters: dict[str, str] = field(default_factory=dict)  # <Parameter>s -> start.customParameters
    action: str | None = None  # <Connect action>: fetched by Twilio when the stream ends


def parse_twiml(body: str) -> StreamTwiml:
    root = ET.fromstring(body)
    for verb in ("Connect", "Start"):
        node = root.find(f"./{verb}")
        stream = node.find("Stream") if node is not None else None
        if node is not None and stream is not None:
            params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
            return StreamTwiml(stream.get("url"), verb, params, node.get("action"))
    first = next(iter(root), None)
    return StreamTwiml(None, first.tag if first is not None else "")


def dial_target(twiml: str) -> str | None:
    """The destination of a ``<Dial>`` (text, ``<Number>``, ``<Sip>`` or ``<Client>``), else None."""
    try:
        dial = ET.fromstring(twiml).find(".//Dial")
    except ET.ParseError:
        return None
    if dial is None:
        return None
    for child in ("Number", "Sip", "Client"):
        node = dial.find(child)
        if node is not None and node.text:
            return node.text.strip()
    return (dial.text or "").strip() or None


def local_url(url: str, base_url: str) -> tuple[str, str | None]:
    """Where to connect for a URL Twilio was given, when the server is at ``base_url``.

    A public host in the TwiML while the server is local (``http://127.0.0.1:…``) is
    replaced by the local one, and ``wss``/``https`` become ``ws``/``http`` on a plain
    http server. Returns (url, warning or None).
    """
    s, b = urlsplit(url), urlsplit(base_url)
    scheme, netloc, warning = s.scheme, s.netloc, None
    if b.hostname in _LOOPBACK and s.hostname != b.hostname and s.hostname not in _LOOPBACK:
        netloc = b.netloc
        warning = f"TwiML host {s.netloc} is not local: connecting to {b.netloc} instead"
    if b.scheme == "http" and netloc == b.netloc:
        scheme = {"wss": "ws", "https": "http"}.get(scheme, scheme)
    return urlunsplit((scheme, netloc, s.path, s.query, "")), warning


def public_url(url: str, public_base: str | None) -> str:
    """The URL Twilio would have used (and signed) when the server is published at ``public_base``."""
    if not public_base:
        return url
    s, p = urlsplit(url), urlsplit(public_base)
    return urlunsplit((p.scheme, p.netloc, s.path, s.query, ""))
