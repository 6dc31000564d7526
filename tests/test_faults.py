"""Faults inside a call never leave dead air; a stuck call is ended by the watchdog.

Unit level, fast: the real ``SharedWhisper.atranscribe`` (deadlines, slots, stalls) over a fake
model, the real ``WhisperSTT``, ``FlowProcessor`` with the real mairie flow and ``CachedTTS``
over a voice that breaks on demand, wired as ``call.run_call`` wires them. The same paths over
a real call: ``tests/e2e/test_faults_call.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    DataFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from callbot import events as ev
from callbot.admission import AsrAdmission
from callbot.call import run_pipeline
from callbot.errors import StageFault
from callbot.fallback import has_keypad_menu
from callbot.faults import asr_deadline, injected, tts_deadline
from callbot.flow_bridge import FlowProcessor
from callbot.flows.loader import load_flow
from callbot.flows.types import CallContext
from callbot.recorder import CallRecorder
from callbot.speech import tts as tts_module
from callbot.speech.asr import AsrResult, SharedWhisper
from callbot.speech.engines import Voice
from callbot.speech.prompt_cache import PromptCache
from callbot.speech.stt import WhisperSTT
from callbot.speech.tts import CachedTTS, trim_silence
from callbot.watchdog import ActivityProbe, CallWatchdog, watch

FLOW = Path(__file__).resolve().parents[1] / "flows" / "mairie.yaml"
PARAMS = PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000)
OPEN = datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))  # a Wednesday morning: the town hall is open


# ------------------------------------------------------------------ fakes for the failing engines
class FakeWhisper(SharedWhisper):
    """The real queue, deadlines and admission of ``SharedWhisper`` over a model that answers,
    raises or hangs (``mode``) in the real ASR thread pool."""

    def __init__(self, mode: str = "ok", **settings: Any) -> None:
        values = dict(asr_timeout_secs=0.3, asr_max_concurrent=2, max_asr_calls=0, max_asr_queue=0,
                      max_asr_response_s=0.0, fault_inject="")
        values.update(settings)
        self.language, self.beam_size, self.busy_beam_size, self.window = "fr", 1, 1, "short"
        self.model_dir = Path("fake-whisper")
        self._init_queue(SimpleNamespace(**values))
        self.mode = mode
        self.release = threading.Event()
        self.decodes = 0

    def transcribe(self, pcm16k: bytes, prompt=None, *, window=None, beam_size=None) -> AsrResult:
        self.decodes += 1
        if self.mode == "error":
            raise RuntimeError("CTranslate2: std::bad_alloc")
        if self.mode == "hang":
            self.release.wait(10)
        return AsrResult(text="bonjour", audio_s=len(pcm16k) / 32000, asr_ms=1.0, no_speech_prob=0.0,
                         avg_logprob=0.0, compression_ratio=1.0)

    def close(self) -> None:
        self.release.set()
        super().close()


class ToneVoice(Voice):
    """A fake 16 kHz voice (a tone as long as the text) that raises or hangs once ``broken`` is set."""

    engine = "tone"

    def __init__(self) -> None:
        super().__init__("tone", 16000, "fr")
        self.broken: str | None = None  # None, "error" or "hang"
        self.release = threading.Event()

    def _synthesize(self, text: str) -> bytes:
        if self.broken == "error":
            raise RuntimeError("piper: onnxruntime session failed")
        if self.broken == "hang":
            self.release.wait(10)
        t = np.arange(800 * max(1, len(text) // 10)) / 16000
        return (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16).tobytes()


@dataclass
class Do(DataFrame):
    """Test-only frame: ``Doer`` runs ``action`` when it arrives (in order with the other frames)."""

    action: Any = None


class Doer(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Do):
            await frame.action()
        else:
            await self.push_frame(frame, direction)


def speech(seconds: float) -> list[Frame]:
    pcm = (np.random.default_rng(0).normal(0, 2000, int(16000 * seconds))).astype(np.int16).tobytes()
    audio = [InputAudioRawFrame(pcm[i:i + 640], 16000, 1) for i in range(0, len(pcm), 640)]
    return [VADUserStartedSpeakingFrame(), *audio, VADUserStoppedSpeakingFrame()]


def digit(key: str) -> InputDTMFFrame:
    return InputDTMFFrame(button=KeypadEntry(key))


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW)  # keypad and faults only: the speech recogniser is never trained


@pytest.fixture(scope="module")
def prompts(flow):
    voice = ToneVoice()
    cache = PromptCache(voice)
    cache.warm(flow.static_prompts())  # as at start-up: every static prompt is pre-rendered
    return cache


def nodes(recorder: CallRecorder) -> list[str]:
    return [e.node for e in recorder.history if isinstance(e, ev.NodeEntered)]


def of(recorder: CallRecorder, kind: type) -> list:
    return [e for e in recorder.history if isinstance(e, kind)]


def wire(stt: WhisperSTT | None, tts: CachedTTS | None, proc: FlowProcessor) -> None:
    """As ``call.run_call``: faults go to the flow (speech off first)."""
    if stt is not None:
        @stt.event_handler("on_asr_fault")
        async def _asr_fault(_stt, fault) -> None:
            stt.speech_enabled = False
            await proc.on_fault("asr", fault.kind, fault.message)

    if tts is not None:
        @tts.event_handler("on_tts_fault")
        async def _tts_fault(_tts, fault) -> None:
            await proc.on_fault("tts", fault.kind, fault.message)


# ------------------------------------------------------------------ deadlines and injection
def test_deadlines_scale_with_the_work_and_zero_turns_them_off():
    assert asr_deadline(4.0, 5.0) == pytest.approx(6.5) and asr_deadline(4.0, 20.0) == pytest.approx(14.0)
    assert tts_deadline(4.0, 100) == pytest.approx(6.0)
    assert asr_deadline(0.0, 5.0) is None and tts_deadline(0.0, 100) is None
    assert injected("asr_hang,tts_error", "asr") == "hang" and injected("asr_hang,tts_error", "tts") == "error"
    assert injected("", "asr") is None and injected("tts_hang", "asr") is None


# ------------------------------------------------------------------ the recogniser
async def test_a_decode_that_raises_is_a_fault_and_frees_its_slot():
    whisper = FakeWhisper("error")
    try:
        with pytest.raises(StageFault) as err:
            await whisper.atranscribe(bytes(32000))
        assert err.value.code == "asr_error" and err.value.kind == "error" and "bad_alloc" in err.value.message
        assert isinstance(err.value.__cause__, RuntimeError)
        await asyncio.sleep(0.01)
        assert whisper.running == 0 and whisper.stalls.count == 0
    finally:
        whisper.close()


async def test_injected_fault_raises_in_the_real_decode_thread():
    whisper = FakeWhisper("ok", fault_inject="asr_error")
    try:
        with pytest.raises(StageFault, match="injected asr failure"):
            await whisper.atranscribe(bytes(32000))
        assert whisper.decodes == 0
    finally:
        whisper.close()


async def test_hung_decodes_time_out_keep_their_slots_and_stop_admission_until_they_return():
    whisper = FakeWhisper("hang", asr_timeout_secs=0.2)
    try:
        t0 = time.monotonic()
        faults = await asyncio.gather(*(whisper.atranscribe(bytes(16000)) for _ in range(2)), return_exceptions=True)
        assert all(isinstance(f, StageFault) and f.kind == "timeout" for f in faults), faults
        assert time.monotonic() - t0 < 1.0, "the deadline is 0.2 s + 0.5 s per second of audio"
        # the threads cannot be killed: both slots stay held, Whisper is "not answering"
        assert whisper.stalls.count == 2 and whisper.running == 2
        assert whisper.admission.stalled() and "not answering" in (whisper.admission.refusal(0.0) or "")
        assert not whisper.admission.admit_decode(0)
        with pytest.raises(StageFault, match="no Whisper decode slot"):  # a third decode waits for a slot in vain
            await whisper.atranscribe(bytes(16000))
        whisper.release.set()  # the stuck decodes return: slots, admission and decodes are back
        for _ in range(100):
            if whisper.running == 0:
                break
            await asyncio.sleep(0.01)
        assert whisper.stalls.count == 0 and whisper.stalls.total == 2 and not whisper.admission.stalled()
        assert whisper.admission.refusal(0.0) is None
        whisper.mode = "ok"
        assert (await whisper.atranscribe(bytes(16000))).text == "bonjour"
    finally:
        whisper.close()


def test_admission_refuses_calls_and_decodes_only_while_every_slot_is_stalled():
    a = AsrAdmission(max_calls=10, decode_slots=2, stalled_decodes=1)
    assert a.admit_call() and a.admit_decode(0)
    a.stalled_decodes = 2
    assert not a.admit_call() and not a.admit_decode(0)
    assert a.snapshot()["stalled_decodes"] == 2


# ------------------------------------------------------------------ ASR fault -> apology + keypad menu
async def test_asr_hang_apologises_then_the_keypad_menu_works(flow):
    whisper = FakeWhisper("hang", asr_timeout_secs=0.3)
    recorder = CallRecorder(None, "asr-hang")
    stt = WhisperSTT(whisper)
    proc = FlowProcessor(flow.new_session(CallContext(now=OPEN)), recorder)
    wire(stt, None, proc)
    try:
        frames = [SleepFrame(0.1), *speech(1.0), SleepFrame(1.3),  # deadline 0.8 s
                  *speech(1.0), SleepFrame(0.3),  # the call no longer decodes: no second fault
                  digit("1"), SleepFrame(0.3)]
        down, _ = await run_test(Pipeline([stt, proc]), frames_to_send=frames, pipeline_params=PARAMS)
    finally:
        whisper.close()
    faults = of(recorder, ev.Fault)
    assert [(f.stage, f.kind, f.action) for f in faults] == [("asr", "timeout", "keypad")], faults
    assert [k.reason for k in of(recorder, ev.KeypadFallback)] == ["asr_fault"]
    said = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    apology = said.index(flow.spec.messages.asr_fault)
    assert said[apology + 1] == flow.spec.messages.offer_menu and "tapez" in said[apology + 2]
    assert all(b.cached for b in of(recorder, ev.BotSaid)[-3:]), "the fallback must be pre-rendered"
    assert proc.keypad_only and whisper.decodes == 1
    assert nodes(recorder)[-2:] == ["menu", "horaires"], "the digit after the fault was not served"


async def test_a_flow_without_keypad_menu_sends_the_caller_to_a_person(tmp_path):
    text = FLOW.read_text(encoding="utf-8").replace("  main_menu: menu\n", "  main_menu: horaires\n", 1)
    path = tmp_path / "sans_menu.yaml"
    path.write_text(text, encoding="utf-8")
    no_menu = load_flow(path)
    session = no_menu.new_session(CallContext(now=OPEN))
    assert not has_keypad_menu(session)
    recorder = CallRecorder(None, "no-menu")
    proc = FlowProcessor(session, recorder)

    async def fault() -> None:
        await proc.on_fault("asr", "error", "RuntimeError: boom")

    down, _ = await run_test(Pipeline([Doer(), proc]), frames_to_send=[SleepFrame(0.1), Do(action=fault),
                                                                      SleepFrame(0.2)], pipeline_params=PARAMS)
    assert [f.action for f in of(recorder, ev.Fault)] == ["agent"]
    said = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert no_menu.spec.messages.asr_fault in said and no_menu.spec.messages.to_agent in said
    assert "agent_transfert" in nodes(recorder) and proc.final_turn is not None and proc.final_turn.transfer


async def test_repeated_faults_keep_the_call_on_the_keypad(flow, prompts):
    recorder = CallRecorder(None, "again")
    proc = FlowProcessor(flow.new_session(CallContext(now=OPEN)), recorder)

    async def asr_fault() -> None:
        await proc.on_fault("asr", "timeout", "Whisper decode of 1.0 s of audio did not finish within 0.8 s")

    async def tts_fault() -> None:
        await proc.on_fault("tts", "error", "speech synthesis off for this call since an earlier fault")

    # (a digit is a system frame: it overtakes queued ones, hence the pauses)
    frames = [SleepFrame(0.1), Do(action=asr_fault), Do(action=asr_fault), Do(action=tts_fault), SleepFrame(0.2),
              digit("1"), SleepFrame(0.2), Do(action=tts_fault), SleepFrame(0.2)]
    await run_test(Pipeline([Doer(), proc]), frames_to_send=frames, pipeline_params=PARAMS)
    assert [(f.stage, f.action) for f in of(recorder, ev.Fault)] == [
        ("asr", "keypad"), ("asr", "none"), ("tts", "none"), ("tts", "keypad")]
    assert [k.reason for k in of(recorder, ev.KeypadFallback)] == ["asr_fault", "tts_fault"]
    assert proc.keypad_only and nodes(recorder)[-1] == "menu"


# ------------------------------------------------------------------ TTS faults
async def _speak(tts: CachedTTS, *texts: str) -> list[Frame]:
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame(t) for t in texts], pipeline_params=PARAMS)
    return down


def _audio(frames: list[Frame]) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))


async def test_tts_error_plays_the_prerendered_apology_instead(flow, prompts):
    voice: ToneVoice = prompts.voice
    tts = CachedTTS(voice, prompts, timeout_secs=1.0, fault_text=flow.spec.messages.tts_fault)
    faults: list[StageFault] = []

    @tts.event_handler("on_tts_fault")
    async def _fault(_tts, fault) -> None:
        faults.append(fault)

    menu = flow.menu_prompt(flow.nodes["menu"])[0]
    voice.broken = "error"
    try:
        down = await _speak(tts, "Votre dossier porte le numéro 42.", "Et le 43.", menu)
    finally:
        voice.broken = None
    apology = trim_silence(prompts.get(flow.spec.messages.tts_fault), 8000)
    cached_menu = trim_silence(prompts.get(menu), 8000)
    assert _audio(down) == apology + cached_menu, "the apology once, then the cached prompt, and nothing else"
    assert [(f.code, f.kind) for f in faults] == [("tts_error", "error"), ("tts_error", "error")]
    assert "onnxruntime" in faults[0].message and "off for this call" in faults[1].message
    assert not tts.synthesis_on


async def test_tts_hang_times_out_and_other_calls_fail_fast_until_it_returns(flow, prompts):
    voice: ToneVoice = prompts.voice
    voice.broken, voice.release = "hang", threading.Event()
    first = CachedTTS(voice, prompts, timeout_secs=0.2, fault_text=flow.spec.messages.tts_fault)
    other = CachedTTS(voice, prompts, timeout_secs=0.2, fault_text=flow.spec.messages.tts_fault)
    kinds: list[str] = []
    for tts in (first, other):
        @tts.event_handler("on_tts_fault")
        async def _fault(_tts, fault) -> None:
            kinds.append(fault.message)
    try:
        t0 = time.monotonic()
        down = await _speak(first, "Votre rendez-vous est mardi.")
        assert time.monotonic() - t0 < 2.0
        assert tts_module.STALLS.count == 1
        t1 = time.monotonic()
        down_other = await _speak(other, "Votre rendez-vous est jeudi.")  # another call meanwhile
        assert time.monotonic() - t1 < 1.0, "a call must not wait behind a stalled synthesis"
    finally:
        voice.release.set()
        voice.broken = None
    apology = trim_silence(prompts.get(flow.spec.messages.tts_fault), 8000)
    assert _audio(down) == apology and _audio(down_other) == apology
    assert "did not finish within" in kinds[0] and "past its deadline" in kinds[1]
    for _ in range(100):
        if tts_module.STALLS.count == 0:
            break
        await asyncio.sleep(0.02)
    assert tts_module.STALLS.count == 0


async def test_tts_fault_mid_call_goes_to_the_keypad_menu_and_the_menu_works(flow, prompts):
    """Key 9 leads to the emergency message, which names the number: synthesised, so it breaks here."""
    voice: ToneVoice = prompts.voice
    recorder = CallRecorder(None, "tts-error")
    proc = FlowProcessor(flow.new_session(CallContext(now=OPEN)), recorder, keypad_only=True)
    tts = CachedTTS(voice, prompts, timeout_secs=1.0, fault_text=flow.spec.messages.tts_fault)
    wire(None, tts, proc)
    voice.broken = "error"
    try:
        down, _ = await run_test(Pipeline([proc, tts]), pipeline_params=PARAMS, frames_to_send=[
            SleepFrame(0.2), digit("9"), SleepFrame(0.5), digit("1"), SleepFrame(0.3)])
    finally:
        voice.broken = None
    assert [(f.stage, f.kind, f.action) for f in of(recorder, ev.Fault)] == [("tts", "error", "keypad")]
    assert [k.reason for k in of(recorder, ev.KeypadFallback)] == ["tts_fault"]
    assert nodes(recorder)[-3:] == ["urgence_message", "menu", "horaires"], nodes(recorder)
    audio = _audio(down)
    apology = trim_silence(prompts.get(flow.spec.messages.tts_fault), 8000)
    assert apology in audio, "the caller must hear the apology instead of the emergency message"
    horaires = [b.text for b in of(recorder, ev.BotSaid) if b.node == "horaires"][0]
    assert audio.endswith(trim_silence(prompts.get(horaires), 8000, lead=True)), "the menu's answer was not said"


# ------------------------------------------------------------------ the watchdog
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_ends_a_call_past_max_call_secs():
    clock = Clock()
    dog = CallWatchdog(max_call_secs=3600, stuck_call_secs=120, clock=clock)
    for _ in range(359):
        clock.t += 10
        dog.line()
        dog.progress()
        assert dog.verdict() is None
    clock.t += 10
    v = dog.verdict()
    assert v is not None and v.reason == "max_call" and "3600" in v.detail


def test_watchdog_ends_a_call_only_when_neither_the_line_nor_the_flow_moves():
    clock = Clock()
    dog = CallWatchdog(max_call_secs=3600, stuck_call_secs=120, clock=clock)
    clock.t += 100
    dog.line()  # the caller's line still sends audio: not stuck, whatever the flow does
    clock.t += 100
    assert dog.verdict() is None and dog.next_check() == pytest.approx(20)
    clock.t += 50
    dog.progress()
    clock.t += 119
    assert dog.verdict() is None
    clock.t += 1
    v = dog.verdict()
    assert v is not None and v.reason == "stuck" and "no audio from the line for 270 s" in v.detail


def test_watchdog_limits_can_be_turned_off():
    clock = Clock()
    dog = CallWatchdog(max_call_secs=0, stuck_call_secs=0, clock=clock)
    clock.t += 1e6
    assert not dog.enabled and dog.verdict() is None and dog.next_check() == float("inf")


async def test_watch_counts_recorded_events_as_progress():
    dog = CallWatchdog(max_call_secs=0, stuck_call_secs=0.3)
    events = [0]

    async def busy_flow() -> None:
        for _ in range(8):  # 0.4 s of progress, then nothing
            events[0] += 1
            await asyncio.sleep(0.05)

    t0 = time.monotonic()
    busy = asyncio.create_task(busy_flow())
    verdict = await asyncio.wait_for(watch(dog, lambda: events[0], poll_s=0.02), 3)
    await busy
    assert verdict.reason == "stuck" and dog.fired is verdict
    assert 0.6 <= time.monotonic() - t0 < 1.5


async def test_run_pipeline_cancels_a_stuck_pipeline_and_returns_the_verdict():
    """A pipeline nobody talks to, with nothing to do: the watchdog ends it, resources and all."""
    dog = CallWatchdog(max_call_secs=0, stuck_call_secs=0.3)
    transport = SimpleNamespace(event_handler=lambda _name: (lambda handler: handler))
    cleaned: list[bool] = []

    class Idle(FrameProcessor):
        async def cleanup(self) -> None:
            cleaned.append(True)
            await super().cleanup()

    t0 = time.monotonic()
    verdict = await asyncio.wait_for(run_pipeline(Pipeline([ActivityProbe(dog), Idle()]), transport, dog), 10)
    assert verdict is not None and verdict.reason == "stuck"
    assert time.monotonic() - t0 < 3 and cleaned == [True]


async def test_run_pipeline_without_a_verdict_returns_none():
    dog = CallWatchdog(max_call_secs=60, stuck_call_secs=60)
    transport = SimpleNamespace(event_handler=lambda _name: (lambda handler: handler))

    class Ender(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            from pipecat.frames.frames import EndWorkerFrame, StartFrame

            if isinstance(frame, StartFrame):
                await self.push_frame(EndWorkerFrame(reason="done"))

    assert await asyncio.wait_for(run_pipeline(Pipeline([Ender()]), transport, dog), 10) is None
