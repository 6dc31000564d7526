"""Twilio Media Streams messages, parsed and checked in one place.

Every reader of the media websocket (``_read_start`` before the call, the pipeline's
serializer during it, ``TwilioCallControl`` once the flow has handed the call over) goes
through ``parse_message``: a malformed message raises ``MediaStreamError`` naming the field
(``media.payload: not base64 …``) and is skipped by the caller with a log line; the call
goes on. Nothing else may escape: not a ``RecursionError`` from absurdly nested JSON, not a
``binascii.Error`` from a bad payload, not an ``AttributeError`` from a list where an object
belongs.

Twilio's messages: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``
(https://www.twilio.com/docs/voice/media-streams/websocket-messages). Fields we do not use
(``sequenceNumber``, ``chunk``, ``timestamp``, ``track``) are not checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from callbot.errors import ProtocolError

EVENTS = ("connected", "start", "media", "dtmf", "mark", "stop")
DTMF_DIGITS = frozenset("0123456789*#ABCD")
# Twilio sends 20 ms (160-byte) µ-law frames; more than a second in one message is not Twilio.
MAX_MEDIA_BYTES = 8000
_SHOWN_CHARS = 40  # of a bad value, in the error message


class MediaStreamError(ProtocolError):
    """A Media Streams message that cannot be used; the message names the field and what is wrong."""

    code = "media_stream_message"


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One checked message: ``event`` and its useful part; ``data`` is the whole JSON object."""

    event: str
    data: dict[str, Any] = field(repr=False)
    audio: bytes = b""  # media: the µ-law payload, decoded
    digit: str = ""  # dtmf: one of DTMF_DIGITS
    mark: str = ""  # mark: its name

    @property
    def start(self) -> dict[str, Any]:
        """start: the ``start`` object (``callSid`` a non-empty string, ``customParameters`` a dict)."""
        return self.data["start"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _object(message: dict[str, Any], name: str, *, required: bool = True) -> dict[str, Any]:
    value = message.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise MediaStreamError(f"{name}: {_kind(value) if name in message else 'missing'}, expected an object")
    return value


def _string(body: dict[str, Any], path: str, name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        where = f"{path}.{name}" if path else name
        raise MediaStreamError(f"{where}: {_kind(value) if name in body else 'missing'}, expected a string")
    return value


def parse_message(data: str | bytes) -> StreamMessage:
    """One websocket message -> ``StreamMessage``; ``MediaStreamError`` (saying what and which field) if unusable."""
    if not isinstance(data, str):
        raise MediaStreamError(f"a binary frame ({len(data)} bytes); Media Streams messages are JSON text")
    try:
        message = json.loads(data)
    except RecursionError:
        raise MediaStreamError("JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError says where: line, column
        raise MediaStreamError(f"not JSON ({e})") from None
    if not isinstance(message, dict):
        raise MediaStreamError(f"{_kind(message)}, expected a JSON object with an 'event'")
    event = message.get("event")
    if event not in EVENTS:  # also rejects unhashable or non-string values
        if not isinstance(event, str):
            raise MediaStreamError(f"event: {_kind(event) if 'event' in message else 'missing'}, expected a string")
        raise MediaStreamError(f"event: unknown event {_shown(event)}; expected one of {', '.join(EVENTS)}")
    if event == "media":
        payload = _string(_object(message, "media"), "media", "payload")
        if len(payload) > (MAX_MEDIA_BYTES + 2) // 3 * 4:
            raise MediaStreamError(f"media.payload: {len(payload)} characters, more than {MAX_MEDIA_BYTES} bytes "
                                   "(1 s) of audio in one message")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MediaStreamError(f"media.payload: not base64 ({e})") from None
        return StreamMessage(event, message, audio=audio)
    if event == "dtmf":
        digit = _string(_object(message, "dtmf"), "dtmf", "digit")
        if digit not in DTMF_DIGITS:
            raise MediaStreamError(f"dtmf.digit: {_shown(digit)} is not a keypad key (0-9, *, #, A-D)")
        return StreamMessage(event, message, digit=digit)
    if event == "mark":  # Twilio echoes our mark; a missing name is an empty one
        return StreamMessage(event, message, mark=_string(_object(message, "mark", required=False), "mark", "name",
                                                          required=False))
    if event == "start":
        start = _object(message, "start")
        if not _string(start, "start", "callSid"):
            raise MediaStreamError("start.callSid: empty")
        for name in ("streamSid", "accountSid"):
            _string(start, "start", name, required=False)
        _string(message, "", "streamSid", required=False)
        params = start.get("customParameters")
        if params is not None and not isinstance(params, dict):
            raise MediaStreamError(f"start.customParameters: {_kind(params)}, expected an object")
    return StreamMessage(event, message)
