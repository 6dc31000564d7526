"""Deadlines for the speech stages, and what happens to work that misses them.

Why: Whisper and the voice run in worker threads. A decode or a synthesis that raises used to
end in an ``ErrorFrame`` and one that hangs in nothing at all: either way the caller heard dead
air. Now each stage awaits its thread for a bounded time (``within``) and turns a failure into a
``StageFault``; the call then apologises with pre-rendered audio and goes on on the keypad menu
(``flow_bridge.FlowProcessor.on_fault``).

A Python thread cannot be killed. Work past its deadline keeps its thread (and for Whisper its
decode slot: a slot freed early would put a third decode on two cores) until it returns; it is
counted in ``Stalls`` meanwhile, so the process stops handing new work to a stage that is not
answering — new calls get the keypad menu at once while every decode slot is stalled
(``AsrAdmission``), and synthesis fails fast while one is stalled (the voice serialises its
callers behind one lock: ``speech/engines.py``). A stage that never returns keeps its slot
for the life of the process: that is the price of not killing threads, and the reason for
counting them.

Deadlines (``docs/performance.md``, "Faults and deadlines"):

- ASR, once for the wait for a decode slot and again for the decode itself:
  ``asr_timeout_secs`` (4 s) + ``ASR_SECS_PER_AUDIO_S`` (0.5) per second of audio. Measured
  decodes: a 5 s turn 0.4-1.0 s alone, 1.8 s p50 at 30 calls on 2 cores (queue p95 4.7 s): the
  5 s turn gets 6.5 s, more than 3x the worst p50, a 20 s turn 14 s.
- TTS, per sentence: ``tts_timeout_secs`` (4 s) + ``TTS_SECS_PER_CHAR`` (0.02) per character:
  Pico renders 236 characters in 0.07 s here; the margin is for Piper (not measured: no French voice here).

Fault injection (``Settings.fault_inject``, e.g. ``CALLBOT_FAULT_INJECT=asr_hang,tts_error``) is
for tests only: it makes the real thread raise or sleep ``INJECTED_HANG_S``, so the end-to-end
tests exercise the same deadlines, slots and fallbacks as a real fault.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from callbot.errors import StageFault

log = logging.getLogger(__name__)

T = TypeVar("T")

ASR_SECS_PER_AUDIO_S = 0.5
TTS_SECS_PER_CHAR = 0.02
INJECTED_HANG_S = 15.0  # an injected hang: far past any test deadline, short enough for the process to exit
INJECTIONS = ("asr_error", "asr_hang", "tts_error", "tts_hang")


def asr_deadline(base_s: float, audio_s: float) -> float | None:
    """Seconds a decode (and, separately, its wait for a slot) may take; None = no deadline."""
    return base_s + ASR_SECS_PER_AUDIO_S * audio_s if base_s > 0 else None


def tts_deadline(base_s: float, chars: int) -> float | None:
    """Seconds the synthesis of one sentence may take; None = no deadline."""
    return base_s + TTS_SECS_PER_CHAR * chars if base_s > 0 else None


def injected(spec: str, stage: str) -> str | None:
    """The fault ``spec`` (``Settings.fault_inject``: ``asr_hang,tts_error``) injects in ``stage``:
    ``"error"``, ``"hang"`` or None."""
    for item in (spec or "").split(","):
        name, _, kind = item.strip().partition("_")
        if name == stage and kind in ("error", "hang"):
            return kind
    return None


def inject(kind: str | None, stage: str) -> None:
    """In the stage's worker thread: behave like a broken engine (tests only; see the module docstring)."""
    if kind == "error":
        raise RuntimeError(f"injected {stage} failure (fault_inject, tests only)")
    if kind == "hang":
        log.warning("injected %s hang: this thread sleeps %.0f s (fault_inject, tests only)", stage, INJECTED_HANG_S)
        time.sleep(INJECTED_HANG_S)


class Stalls:
    """Work still running past its deadline: how many, so the stage can stop taking more.

    ``on_change(count)`` is told each change (``SharedWhisper`` keeps its admission informed).
    Called on the event loop only (executor futures run their callbacks there).
    """

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self.count = 0
        self.total = 0  # ever stalled, for logs and tests
        self._on_change = on_change

    def stall(self, fut: asyncio.Future[Any], what: str) -> None:
        self.count += 1
        self.total += 1
        self._changed()
        started = time.monotonic()

        def ended(_f: asyncio.Future[Any]) -> None:
            self.count -= 1
            self._changed()
            log.warning("%s returned %.1f s after it was given up", what, time.monotonic() - started)

        fut.add_done_callback(ended)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.count)


async def within(fut: asyncio.Future[T], secs: float | None, *, stage: str, what: str,
                 stalls: Stalls | None = None) -> T:
    """Await a worker thread's future for at most ``secs`` (None: no limit).

    Raises ``StageFault`` (``timeout``, or ``error`` wrapping what the thread raised). On a
    timeout the future is left running (shielded: cancelling it would release what its done
    callbacks hold while the thread still runs) and counted in ``stalls`` until it ends.
    """
    try:
        if secs is None:
            return await asyncio.shield(fut)
        return await asyncio.wait_for(asyncio.shield(fut), secs)
    except TimeoutError:
        if fut.done() and not fut.cancelled() and fut.exception() is not None:  # the thread's own TimeoutError
            e = fut.exception()
            raise StageFault(f"{what} failed: {type(e).__name__}: {e}", stage=stage, kind="error") from e
        if stalls is not None and not fut.done():
            stalls.stall(fut, what)
        _retrieve_later(fut)
        raise StageFault(f"{what} did not finish within {secs:.1f} s", stage=stage, kind="timeout") from None
    except asyncio.CancelledError:
        _retrieve_later(fut)
        raise
    except StageFault:
        raise
    except Exception as e:
        raise StageFault(f"{what} failed: {type(e).__name__}: {e}", stage=stage, kind="error") from e


def _retrieve_later(fut: asyncio.Future[Any]) -> None:
    """Nobody awaits the future any more: read its exception when it ends ("never retrieved" otherwise)."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
