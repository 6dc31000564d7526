"""What ``call.py`` needs from a telephony provider, beyond the pipecat transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class CallInfo:
    call_id: str  # ours, unique
    channel: Literal["twilio", "sip", "test"]
    caller: str = ""  # E.164 or SIP user part, as the provider gave it
    called: str = ""
    provider_call_id: str = ""  # Twilio CallSid, SIP Call-ID
    extra: dict[str, str] = field(default_factory=dict)


class CallControl(Protocol):
    """Provider actions on a live call. Both must be safe to call twice."""

    async def hangup(self, reason: str) -> None:
        """End the call from the bot's side (after queued audio has played)."""
        ...

    async def transfer(self, destination: str) -> bool:
        """Blind-transfer the call to ``destination`` (number or SIP URI); True when accepted."""
        ...
