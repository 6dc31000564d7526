"""Admission control for speech recognition: who gets Whisper, and when to stop queueing.

Every call is answered (signalling capacity is the SIP/HTTP listeners' business, and
the greeting comes from the prompt cache, so answering costs almost nothing). Whisper
is the scarce resource on a small machine: past ``max_calls`` concurrent speech calls
a new call runs in keypad mode (pre-rendered menu prompts, no ASR), and when more than
``max_queue`` decodes already wait for a slot, a new segment is not queued — the call
switches to the keypad menu instead of leaving the caller in silence while a backlog
drains. 0 disables either limit.

``max_calls`` is a guess an operator has to measure; what a caller feels is how long
Whisper takes to answer (queue + decode). So, with ``max_response_s`` set, a new call also
goes to the keypad menu while the recent response time (an exponential average of the
last ~5 decodes, fed by ``observe``) is above it — at 20 calls on a 2-core box that holds
speech at what the CPU serves, whatever the box. An average older than
``RESPONSE_FRESH_S`` does not count, and a call that finds no speech call in progress
always gets speech, so a past peak cannot lock callers out. Pure bookkeeping; the caller
passes the clock (``now``), so it is unit-tested directly.

Under load the machine degrades in order (``step``), each step recorded per call (``Degraded``,
``KeypadFallback`` events): ``brief`` — the flow's shorter prompts — once the recent response
passes ``brief_response_s`` (a call costs less listening and synthesis, and nothing is lost);
``greedy`` — cheaper, less precise decoding — once it passes ``greedy_response_s`` or decodes
queue for a slot; ``keypad`` — the refusal above — last. ``greedy_response_s`` 0 keeps the older
rule: greedy whenever another decode runs.

A decode past its deadline keeps its slot until its thread returns (``faults.py``): while every
one of the ``decode_slots`` is held that way (``stalled_decodes``), Whisper is not answering at
all, so new calls get the keypad menu and no segment is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Step = Literal["normal", "brief", "greedy", "keypad"]
STEPS: tuple[Step, ...] = ("normal", "brief", "greedy", "keypad")


@dataclass
class AsrAdmission:
    max_calls: int = 0  # speech calls at once; 0 = no limit
    max_queue: int = 0  # decodes waiting for a slot before new ones are refused; 0 = no limit
    max_response_s: float = 0.0  # recent queue + decode time above which new calls get keypad; 0 = off
    speech_calls: int = 0
    keypad_calls: int = 0
    refused_decodes: int = 0
    response_s: float = 0.0  # exponential average of queue + decode time
    response_at: float = float("-inf")  # when the newest decode in it finished
    decode_slots: int = 0  # Whisper's decode slots (SharedWhisper.max_concurrent); 0 = unknown
    stalled_decodes: int = 0  # of which held by a decode past its deadline (faults.Stalls)
    brief_response_s: float = 0.0  # recent response above which prompts are shortened; 0 = never
    greedy_response_s: float = 0.0  # ... above which decoding is greedy; 0 = whenever another decode runs
    RESPONSE_WEIGHT = 0.2  # of the newest decode in the average (~ the last 5 count)
    RESPONSE_FRESH_S = 10.0  # under load decodes finish every second or so
    DROWNING = 2.0  # response time, in max_response_s, past which calls in progress leave speech too

    def admit_call(self, now: float = float("-inf")) -> bool:
        """True: the call gets speech recognition (call ``release_call(True)`` at its end).
        ``now``: the clock ``observe`` was given (without it the response time is not used)."""
        if self.refusal(now) is not None:
            self.keypad_calls += 1
            return False
        self.speech_calls += 1
        return True

    def refusal(self, now: float = float("-inf")) -> str | None:
        """Why a new call would get the keypad menu at ``now``, or None."""
        if self.stalled():
            return f"Whisper is not answering: {self.stalled_decodes} of {self.decode_slots} decode slots stalled"
        if self.max_calls and self.speech_calls >= self.max_calls:
            return f"{self.speech_calls} speech calls already (max {self.max_calls})"
        if self.max_response_s and self.speech_calls and self._recent_response(now) > self.max_response_s:
            return (f"Whisper answers in {self.response_s:.1f} s (max {self.max_response_s:g} s) "
                    f"with {self.speech_calls} speech calls")
        return None

    def step(self, now: float, waiting: int = 0, others_running: int = 0) -> Step:
        """Where the machine stands on the degrading ladder at ``now``; ``waiting``: decodes waiting for a
        slot, ``others_running``: other decodes in progress (only used when ``greedy_response_s`` is 0)."""
        recent = self._recent_response(now)
        if self.stalled() or (self.max_response_s and self.speech_calls and recent > self.max_response_s):
            return "keypad"  # not the max_calls cap: a count of calls says nothing of how Whisper keeps up
        if waiting or (recent > self.greedy_response_s if self.greedy_response_s else others_running > 0):
            return "greedy"
        if self.brief_response_s and recent > self.brief_response_s:
            return "brief"
        return "normal"

    def stalled(self) -> bool:
        """Every decode slot is held by a decode past its deadline."""
        return bool(self.decode_slots) and self.stalled_decodes >= self.decode_slots

    def _recent_response(self, now: float) -> float:
        """The response-time average, or 0 when its newest decode is older than ``RESPONSE_FRESH_S``."""
        return self.response_s if now - self.response_at <= self.RESPONSE_FRESH_S else 0.0

    def observe(self, response_s: float, now: float) -> None:
        """A decode a caller waited for took ``response_s`` (queue + decode), ending at ``now``."""
        fresh = now - self.response_at <= self.RESPONSE_FRESH_S
        w = self.RESPONSE_WEIGHT if fresh else 1.0  # a stale average restarts from this decode
        self.response_s += w * (response_s - self.response_s)
        self.response_at = now

    def release_call(self, speech: bool) -> None:
        if speech:
            self.speech_calls = max(0, self.speech_calls - 1)
        else:
            self.keypad_calls = max(0, self.keypad_calls - 1)

    def degrade_call(self) -> None:
        """A speech call went to keypad mode mid-call (its decodes were refused)."""
        self.speech_calls = max(0, self.speech_calls - 1)
        self.keypad_calls += 1

    def admit_decode(self, waiting: int, now: float = float("-inf")) -> bool:
        """May a new segment be queued when ``waiting`` decodes wait for a slot?

        Also no while Whisper's recent response time is over ``DROWNING`` × ``max_response_s``
        and other speech calls share it: a caller is better served by the keypad menu than
        by that silence (at 30 calls, replies took 5-15 s before this)."""
        drowning = (self.max_response_s and self.speech_calls > 1
                    and self._recent_response(now) > self.DROWNING * self.max_response_s)
        if (self.max_queue and waiting >= self.max_queue) or drowning or self.stalled():
            self.refused_decodes += 1
            return False
        return True

    def snapshot(self) -> dict[str, int]:
        return {"speech_calls": self.speech_calls, "keypad_calls": self.keypad_calls,
                "refused_decodes": self.refused_decodes, "max_calls": self.max_calls, "max_queue": self.max_queue,
                "response_ms": round(self.response_s * 1000), "stalled_decodes": self.stalled_decodes}
