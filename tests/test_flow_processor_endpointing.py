"""The flow processor does not end a turn while the VAD hears the caller going on.

Real pipecat processor and flow, no audio: frames and a stand-in for the VAD's
``speech_starting`` flag (speech heard, not yet long enough for a VAD start).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.tests.utils import SleepFrame, run_test

from callbot import events as ev
from callbot.flows.loader import load_flow
from callbot.flow_bridge import FlowProcessor
from callbot.recorder import CallRecorder

FLOW = Path(__file__).resolve().parents[1] / "flows" / "mairie.yaml"


class Resuming:
    """``SharedSileroVAD.speech_starting`` for the first ``secs`` after the test starts."""

    def __init__(self, secs: float) -> None:
        self.until = time.monotonic() + secs

    @property
    def speech_starting(self) -> bool:
        return time.monotonic() < self.until


async def _routed_after(resume_secs: float) -> float | None:
    flow = load_flow(FLOW).warm()  # the recogniser trains once per flow: not part of the routing time
    flow.new_session().prepare("bonjour")  # and the sentence encoders load once per process
    recorder = CallRecorder(None, "test")
    proc = FlowProcessor(flow.new_session(), recorder, vad=Resuming(resume_secs), default_end_of_turn_secs=0.5)
    t0 = time.monotonic()
    routed: list[float] = []

    async def watch() -> None:
        while not routed:
            if any(isinstance(e, ev.IntentMatched) for e in recorder.history):
                routed.append(time.monotonic() - t0)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    # a finished sentence whose silence is already past the fast path (0.35 s)
    frames = [VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame(stop_secs=0.25, timestamp=time.time() - 0.5),
              TranscriptionFrame("Je voudrais les horaires de la mairie.", "", ""), SleepFrame(sleep=0.8)]
    await run_test(proc, frames_to_send=frames)
    watcher.cancel()
    return routed[0] if routed else None


async def test_a_finished_sentence_is_routed_at_once() -> None:
    t = await _routed_after(0.0)
    assert t is not None and t < 0.2


async def test_the_turn_waits_while_the_vad_hears_the_caller_going_on() -> None:
    t = await _routed_after(0.4)
    assert t is not None and t >= 0.4, "routed while the caller was starting to speak again"


async def test_a_saturated_machine_is_recorded_once_per_step_and_shortens_prompts() -> None:
    """The degrading ladder seen from one call: brief prompts while saturated, a greedy decode noted, each once."""
    from types import SimpleNamespace

    flow = load_flow(FLOW).warm()
    flow.new_session().prepare("bonjour")
    recorder = CallRecorder(None, "test")
    steps = iter(["normal", "brief", "greedy", "greedy"])
    session = flow.new_session()
    proc = FlowProcessor(session, recorder, vad=Resuming(0.0), default_end_of_turn_secs=0.5,
                         load_step=lambda: next(steps, "normal"))
    shed = SimpleNamespace(shed=True, segments=1, asr_ms=300.0, audio_s=1.5)
    frames = []
    for text in ("Je voudrais les horaires de la mairie.", "Oui.", "Les horaires de la mairie."):
        t = TranscriptionFrame(text, "", "")
        t.result = shed
        frames += [VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame(stop_secs=0.25, timestamp=time.time() - 0.5),
                   t, SleepFrame(sleep=0.6)]
    await run_test(proc, frames_to_send=frames)
    degraded = [e.step for e in recorder.history if isinstance(e, ev.Degraded)]
    assert degraded == ["greedy", "brief"] or degraded == ["brief", "greedy"], degraded
    assert session.brief  # the last turns were served in brief mode
