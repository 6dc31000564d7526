"""Test tooling: a Twilio Media Streams test caller, a fake Twilio REST API, audio helpers.

Not imported by the server. See :mod:`callbot_testing.twilio_caller`. Names are
loaded lazily so ``python -m callbot_testing.twilio_caller`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "place_call": "twilio_caller",
    "CallReport": "report",
    "Turn": "report",
    "Say": "steps",
    "Press": "steps",
    "Wait": "steps",
    "WaitForBot": "steps",
    "Hangup": "steps",
    "Step": "steps",
    "FakeTwilioRest": "fake_twilio_rest",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"callbot_testing.{_EXPORTS[name]}"), name)
