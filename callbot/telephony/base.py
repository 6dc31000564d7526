"""What ``call.py`` and the switchboard need from a telephony provider, beyond the pipecat transport.

A call has two phases. While the flow talks, pipecat owns the audio (the transport).
When the flow hands the call to a person, the pipeline stops and the call stays up:
the switchboard (``callbot/switchboard/waiting.py``) then drives the line through
``CallControl`` alone — hold audio, announcements, keypad, the agent's leg.
"""

from __future__ import annotations

import asyncio
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


AgentLegOutcome = Literal["ended", "handed_off", "no_answer", "busy", "declined", "failed", "caller_gone"]


@dataclass(frozen=True)
class AgentLeg:
    """How connecting the caller to an agent's phone went.

    ``ended``: the bot bridged both legs and the conversation is over (SIP);
    ``handed_off``: the provider now connects them and the bot is out of the path
    (Twilio ``<Dial>``; a failure comes back later as a resumed call);
    anything else: the agent's phone was not reached and the caller is still with the bot.
    """

    outcome: AgentLegOutcome
    talk_s: float = 0.0
    detail: str = ""

    @property
    def reached(self) -> bool:
        return self.outcome in ("ended", "handed_off")


class CallControl(Protocol):
    """Provider actions on a live call. ``hangup`` and ``transfer`` must be safe to call twice."""

    async def hangup(self, reason: str) -> None:
        """End the call from the bot's side (after queued audio has played)."""
        ...

    async def transfer(self, destination: str) -> bool:
        """Cold (blind) transfer to ``destination`` (number or SIP URI); True when accepted."""
        ...

    # ---- the line while the caller waits (pipeline stopped, call still up)
    @property
    def caller_gone(self) -> asyncio.Event:
        """Set once the caller has hung up (or the line is lost)."""
        ...

    async def play(self, pcm: bytes, rate: int) -> bool:
        """Play 16-bit mono PCM to the caller, paced in real time.

        Returns True when it played to the end; False when a keypad digit arrived
        (the rest is dropped at once, so the caller is not talked over) or the caller left.
        """
        ...

    def digits(self) -> asyncio.Queue[str]:
        """Keypad digits pressed since the pipeline stopped, in order."""
        ...

    async def connect_agent(self, destination: str, *, ring_timeout: float, call_id: str) -> AgentLeg:
        """Ring the agent's phone (SIP URI or number) and connect the caller to it.

        Never hangs up on the caller: when the agent is not reached, the caller is
        left on the line (``AgentLeg.reached`` False) for the queue to take back.
        """
        ...
