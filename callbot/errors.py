"""Errors carry a stable code (for logs, events and tests) and a human message."""

from __future__ import annotations


class CallbotError(Exception):
    """Base error: ``code`` is stable and machine readable, ``message`` says what to do."""

    code = "callbot_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConfigError(CallbotError):
    code = "config_error"


class ModelError(CallbotError):
    code = "model_error"


class FlowError(CallbotError):
    """A flow file is invalid; the message starts with ``file:line:``."""

    code = "flow_error"


class ProtocolError(CallbotError):
    """Malformed input from a telephony peer (websocket message, SIP packet)."""

    code = "protocol_error"


class StageFault(CallbotError):
    """A speech stage raised or missed its deadline during a call; the call goes on without it.

    ``stage``: ``asr`` or ``tts``; ``kind``: ``error`` (it raised) or ``timeout`` (deadline);
    the code says both (``asr_timeout``). Raised by ``SharedWhisper.atranscribe`` and the TTS
    service, turned into a ``Fault`` event and a fallback by the call (``flow_bridge.py``).
    """

    code = "stage_fault"

    def __init__(self, message: str, *, stage: str, kind: str) -> None:
        super().__init__(message, code=f"{stage}_{kind}")
        self.stage = stage
        self.kind = kind
