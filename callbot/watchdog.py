"""The call watchdog: the runtime ends a call that runs too long or in which nothing happens.

Why: every stage has its own bound (recogniser and synthesis deadlines, no-input timers, the
SIP media timeout, the queue's maximum wait), but a bug in any of them — a frame that never
comes, a processor waiting forever, a line that stays open with nobody on it — would keep a
caller in silence and hold a call slot (and an ASR admission) until the process restarts.

Two limits (``Settings``):

- ``max_call_secs`` (3600): the conversation with the bot has lasted that long;
- ``stuck_call_secs`` (120): nothing happened for that long — no audio frame from the line
  *and* no progress (an event recorded, the bot starting, speaking or stopping). A live line
  sends audio all the time (Twilio 50 packets/s, RTP likewise), so this catches a line gone
  silent while the flow is stalled too; a live line with a stalled flow is bounded by
  ``max_call_secs``, because a caller who is still sending audio may be talking (a long
  dictation, speech ignored in keypad mode) and cutting them is worse than waiting.

0 turns a limit off. The watchdog covers the pipeline (the conversation with the bot); once
the flow hands the call to a person the switchboard's own limits apply
(``queue_max_wait_secs``) and a call connected to an agent is never cut.

``CallWatchdog`` is pure timing with an injected clock (unit-tested directly); ``ActivityProbe``
feeds it from the pipeline, ``watch`` polls it (and the flow's progress) for ``call.run_pipeline``,
which then cancels the pipeline; ``call.run_call`` says ``messages.forced_end`` (pre-rendered),
hangs up, and records ``call_ended`` with reason ``watchdog`` in its ``finally``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipecat.frames.frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

POLL_S = 1.0  # the flow's progress is read this often (a call's events are counted, not pushed)


@dataclass(frozen=True)
class Verdict:
    reason: Literal["max_call", "stuck"]
    detail: str


class CallWatchdog:
    """When must this call end? Told about activity (``line``, ``progress``), asked ``verdict()``."""

    def __init__(self, max_call_secs: float, stuck_call_secs: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_call_secs = max_call_secs
        self.stuck_call_secs = stuck_call_secs
        self.clock = clock
        self.started = self.last_line = self.last_progress = clock()
        self.fired: Verdict | None = None

    @property
    def enabled(self) -> bool:
        return self.max_call_secs > 0 or self.stuck_call_secs > 0

    def line(self) -> None:
        """An audio frame or a keypad digit came from the caller's line."""
        self.last_line = self.clock()

    def progress(self) -> None:
        """The flow or the bot did something."""
        self.last_progress = self.clock()

    def verdict(self) -> Verdict | None:
        now = self.clock()
        if self.max_call_secs > 0 and now - self.started >= self.max_call_secs:
            return Verdict("max_call", f"the call lasted {now - self.started:.0f} s (max_call_secs "
                           f"{self.max_call_secs:g})")
        idle = now - max(self.last_line, self.last_progress)
        if self.stuck_call_secs > 0 and idle >= self.stuck_call_secs:
            return Verdict("stuck", f"no audio from the line for {now - self.last_line:.0f} s and no progress for "
                           f"{now - self.last_progress:.0f} s (stuck_call_secs {self.stuck_call_secs:g})")
        return None

    def next_check(self) -> float:
        """Seconds until a verdict could be reached if nothing happens meanwhile (inf: never)."""
        now = self.clock()
        due = []
        if self.max_call_secs > 0:
            due.append(self.started + self.max_call_secs - now)
        if self.stuck_call_secs > 0:
            due.append(max(self.last_line, self.last_progress) + self.stuck_call_secs - now)
        return max(0.0, min(due)) if due else float("inf")


class ActivityProbe(FrameProcessor):
    """Right after the transport's input: caller audio and digits going down are the line's activity,
    the bot's speaking frames coming up are progress. Passes every frame on unchanged."""

    def __init__(self, dog: CallWatchdog) -> None:
        super().__init__(name="watchdog-probe")
        self._dog = dog

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, (InputAudioRawFrame, InputDTMFFrame)):
            self._dog.line()
        elif isinstance(frame, (BotSpeakingFrame, BotStartedSpeakingFrame, BotStoppedSpeakingFrame)):
            self._dog.progress()
        await self.push_frame(frame, direction)


async def watch(dog: CallWatchdog, progress_count: Callable[[], int] = lambda: 0,
                poll_s: float = POLL_S) -> Verdict:
    """Return the verdict once the call must end (never, with both limits off: cancel the task).

    ``progress_count()``: how many things the call has done so far (its recorded events); a
    change counts as progress.
    """
    seen = progress_count()
    while True:
        count = progress_count()
        if count != seen:
            seen = count
            dog.progress()
        verdict = dog.verdict()
        if verdict is not None:
            dog.fired = verdict
            return verdict
        await asyncio.sleep(min(dog.next_check(), poll_s))
