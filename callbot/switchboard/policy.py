"""Queue decisions as pure functions: priority, wait estimate, what to announce, queue or callback.

No I/O, no clock: tested in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from callbot.flows.text import number_words

DEFAULT_HANDLE_S = 240.0  # a town-hall call with an agent, before we have measured ones


@dataclass(frozen=True)
class QueueRules:
    announce_every_s: float = 45.0  # position and wait, then every N seconds
    max_wait_s: float = 300.0  # then a callback is offered, then a polite end
    ring_s: float = 20.0  # an offer rings this long on the console (and the phone) before the next agent
    callback_key: str = "1"
    priorities: tuple[tuple[str, int], ...] = (("urgence", 10),)  # intent or service -> priority

    def priority(self, *names: str) -> int:
        return priority_of(dict(self.priorities), *names)


def priority_of(table: dict[str, int], *names: str) -> int:
    """The highest priority any of ``names`` (intents, service) has in ``table``; 0 when none is listed."""
    return max((table.get(n, 0) for n in names if n), default=0)


def estimate_wait_s(position: int, agents_serving: int, handle_s: float = DEFAULT_HANDLE_S) -> float:
    """Calls ahead × handle time ÷ agents who can take them (Erlang-free first guess)."""
    if position <= 0:
        return 0.0
    return (position - 1 + 0.5) * handle_s / max(1, agents_serving)


def speak_minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    if minutes == 1:
        return "moins d'une minute" if seconds < 60 else "une minute"
    return f"environ {number_words(minutes)} minutes"


def announcement(position: int, wait_s: float, callback_key: str) -> str:
    if position <= 1:
        where = "Vous êtes le prochain à être mis en relation."
    else:
        ahead = position - 1
        where = ("Une personne attend avant vous." if ahead == 1
                 else f"{number_words(ahead).capitalize()} personnes attendent avant vous.")
    return (f"{where} Temps d'attente estimé : {speak_minutes(wait_s)}. "
            f"Pour être rappelé plutôt que d'attendre, tapez {number_words(int(callback_key))}."
            if callback_key.isdigit() else f"{where} Temps d'attente estimé : {speak_minutes(wait_s)}.")


def entry(open_now: bool, agents_present: int) -> Literal["queue", "closed", "no_agent"]:
    """Whether a transferred call may wait: the service is open and someone is logged in."""
    if not open_now:
        return "closed"
    if agents_present <= 0:
        return "no_agent"
    return "queue"


def may_offer(position: int, agents_available: int) -> bool:
    """The n-th caller is offered only when n agents are free: first come, first served across workers."""
    return 0 < position <= agents_available

