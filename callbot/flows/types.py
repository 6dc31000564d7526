"""What the flow engine returns to the pipeline after each caller action."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from callbot.events import _Event


@dataclass(frozen=True)
class Listen:
    """How to listen after the prompts have played."""

    barge_in: bool = True  # caller speech interrupts the prompts
    end_of_turn_secs: float | None = None  # silence that ends a turn; None = the server default
    no_input_secs: float = 7.0  # silence after the prompt before ``silence()`` is called
    max_digits: int = 1  # keypad digits collected before ``press`` (terminated early by '#')
    expect: Literal["speech", "digits", "any"] = "any"
    slot_type: str | None = None  # a value being dictated: a complete one ends the turn sooner


@dataclass(frozen=True)
class Prompt:
    text: str
    static: bool = True  # no templated values: can be synthesised once and cached


@dataclass(frozen=True)
class Transfer:
    target: str  # service name from the flow, or "agent"
    reason: str = ""
    number: str | None = None  # where to send the call, when the flow knows it
    mode: Literal["queue", "direct"] = "queue"  # wait for an agent, or cold transfer to ``number``


@dataclass(frozen=True)
class Hangup:
    reason: str = "flow_end"


@dataclass
class Turn:
    node: str
    say: list[Prompt] = field(default_factory=list)
    listen: Listen | None = field(default_factory=Listen)  # None when the call ends or leaves
    hangup: Hangup | None = None
    transfer: Transfer | None = None
    events: list[_Event] = field(default_factory=list)

    @property
    def ends_call(self) -> bool:
        return self.hangup is not None or self.transfer is not None


@dataclass(frozen=True)
class CallContext:
    """Facts about the call the flow may branch on."""

    caller: str = ""
    called: str = ""
    channel: str = ""
    now: datetime | None = None  # local time at call start; None = engine uses its clock


class FlowSession(Protocol):
    """One call's conversation state over one (immutable) flow version."""

    def start(self) -> Turn: ...

    def hear(self, text: str, alternatives: Sequence[str] = ()) -> Turn: ...

    def press(self, digits: str) -> Turn: ...

    def silence(self) -> Turn: ...

    @property
    def node(self) -> str: ...

    def vocabulary(self) -> str:
        """Words worth biasing the ASR towards in the current node (Whisper prompt)."""
        ...
