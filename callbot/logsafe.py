"""What may go into the logs: no transcript and no phone number unless debug logging is on.

Logs are files nobody anonymises: the call log in Redis has a retention period and a "forget" command
(``privacy.py``), the log files have neither. So at INFO and above a call is described by its ids,
event types, nodes, intents and timings; what callers said and their numbers appear only at DEBUG.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from callbot import events as ev

# event fields that may carry what a caller said, a number, or a document that holds either
PERSONAL = frozenset({"caller", "called", "text", "value", "fields", "number", "note", "detail", "message"})
_DIGITS = re.compile(r"\d")


def mask_number(number: str) -> str:
    """``+33612345678`` -> ``+336••••••78``: enough to tell two callers apart in a log, not to call them."""
    n = str(number or "")
    digits = [i for i, c in enumerate(n) if c.isdigit()]
    if len(digits) < 6:
        return _DIGITS.sub("•", n)
    keep = set(digits[:3] + digits[-2:])
    return "".join(c if (i in keep or not c.isdigit()) else "•" for i, c in enumerate(n))


def safe(value: str, logger: logging.Logger) -> str:
    """``value`` itself at DEBUG, else a placeholder with its length (a transcript, a free text)."""
    if logger.isEnabledFor(logging.DEBUG):
        return repr(value)
    return f"<{len(value)} chars>" if value else "''"


def event_summary(event: ev._Event, logger: logging.Logger) -> dict[str, Any]:
    """The event as a dict for a log line: personal fields masked unless ``logger`` logs DEBUG."""
    data = event.model_dump(exclude={"call_id", "ts"})
    if logger.isEnabledFor(logging.DEBUG):
        return data
    for key in PERSONAL & data.keys():
        value = data[key]
        if key in ("caller", "called", "number") and isinstance(value, str):
            data[key] = mask_number(value)
        elif value not in (None, "", {}, []):
            data[key] = f"<{key}: {len(str(value))} chars>"
    return data
