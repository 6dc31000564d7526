"""Whisper on real French telephone-band audio (Pico TTS → G.711 µ-law → 16 kHz)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from callbot.config import Settings

pytestmark = pytest.mark.skipif(
    not (shutil.which("pico2wave") and shutil.which("sox")),
    reason="needs pico2wave (libttspico-utils) and sox to make French test audio",
)

SENTENCE = "Bonjour, je voudrais connaître les horaires d'ouverture de la mairie."


def phone_clip(text: str, workdir: Path) -> bytes:
    """16 kHz PCM16 of ``text`` after a round trip through 8 kHz µ-law, as a caller would sound."""
    src, tel, out = workdir / "src.wav", workdir / "tel.wav", workdir / "t16.wav"
    subprocess.run(["pico2wave", "-l", "fr-FR", "-w", str(src), text], check=True)
    subprocess.run(["sox", str(src), "-r", "8000", "-c", "1", "-e", "u-law", str(tel)], check=True)
    subprocess.run(["sox", str(tel), "-r", "16000", "-e", "signed-integer", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        assert w.getframerate() == 16000
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from callbot.speech.asr import SharedWhisper

    w = SharedWhisper(Settings.load(cache_dir=tmp_path_factory.mktemp("cache")))
    yield w
    w.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return phone_clip(SENTENCE, tmp_path_factory.mktemp("audio"))


@pytest.mark.parametrize("window", ["short", "full"])
def test_transcribes_french_phone_audio(shared, clip, window) -> None:
    res = shared.transcribe(clip, prompt="mairie, horaires, état civil", window=window)
    assert "horaires" in res.text.lower(), res
    assert res.window == window and res.rejected is None
    assert res.audio_s == pytest.approx(len(clip) / 32000)
    assert 0 < res.asr_ms < 10_000


def test_silence_and_noise_give_empty_text(shared) -> None:
    import numpy as np

    silence = bytes(16000 * 2 * 2)
    res = shared.transcribe(silence)
    assert res.text == "" and res.rejected is not None
    noise = (np.random.default_rng(0).normal(0, 3000, 16000 * 3)).astype(np.int16).tobytes()
    res = shared.transcribe(noise)  # must not hang or loop; text, if any, is bounded
    assert res.asr_ms < 5000 and len(res.raw_text) < 200
    assert shared.transcribe(b"").text == ""


async def test_atranscribe_queues_beyond_the_decode_slots(shared, clip) -> None:
    n = shared.max_concurrent
    results = await asyncio.gather(*(shared.atranscribe(clip) for _ in range(n + 1)))
    assert all("horaires" in r.text.lower() or "ouverture" in r.text.lower() for r in results)
    waits = sorted(r.queue_ms for r in results)
    assert waits[n - 1] < 50, "the first callers must start at once"
    assert waits[n] > 0.5 * min(r.asr_ms for r in results), "the extra caller must wait for a slot"


async def test_whisper_stt_service_in_pipeline(shared, clip) -> None:
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test

    from callbot.speech.asr import AsrResult
    from callbot.speech.stt import WhisperSTT

    prompts: list[str] = []
    results: list[AsrResult] = []

    def vocabulary() -> str:
        prompts.append("mairie, horaires")
        return prompts[-1]

    stt = WhisperSTT(shared, vocabulary=vocabulary)

    @stt.event_handler("on_asr_result")
    async def _on_result(_stt, res):
        results.append(res)

    step = 640  # 20 ms at 16 kHz
    frames = [VADUserStartedSpeakingFrame()]
    frames += [InputAudioRawFrame(clip[i : i + step], 16000, 1) for i in range(0, len(clip), step)]
    frames += [VADUserStoppedSpeakingFrame()]
    down, _ = await run_test(
        stt,
        frames_to_send=frames,
        pipeline_params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000),
    )
    transcripts = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(transcripts) == 1
    t = transcripts[0]
    assert "horaires" in t.text.lower() and t.language == "fr" and t.finalized
    assert isinstance(t.result, AsrResult) and t.result.asr_ms > 0
    assert prompts and results and results[0] is t.result


async def test_whisper_stt_refuses_8k_pipeline(shared, clip) -> None:
    from pipecat.frames.frames import (
        ErrorFrame,
        InputAudioRawFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test

    from callbot.speech.stt import WhisperSTT

    frames = [VADUserStartedSpeakingFrame(), InputAudioRawFrame(clip[:16000], 8000, 1), VADUserStoppedSpeakingFrame()]
    _, up = await run_test(
        WhisperSTT(shared), frames_to_send=frames,
        pipeline_params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
    )
    assert any(isinstance(f, ErrorFrame) and "16000" in f.error for f in up)


class ScriptedPause:
    """Stands in for ``SharedSileroVAD.quiet_secs``: one reading per audio frame, from a script."""

    def __init__(self, readings: list[float]) -> None:
        self._readings = list(readings)

    @property
    def quiet_secs(self) -> float:
        return self._readings.pop(0) if self._readings else 0.0


def _frames_with_pause(clip: bytes, pause_readings: list[float]) -> list:
    from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

    step = 640  # 20 ms at 16 kHz
    audio = [InputAudioRawFrame(clip[i : i + step], 16000, 1) for i in range(0, len(clip), step)]
    audio += [InputAudioRawFrame(bytes(step), 16000, 1) for _ in pause_readings]
    return [VADUserStartedSpeakingFrame(), *audio, VADUserStoppedSpeakingFrame()]


async def _run_stt(shared, clip, readings: list[float], n_speech: int, monkeypatch):
    from pipecat.frames.frames import TranscriptionFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test

    from callbot.speech.stt import WhisperSTT

    decodes: list[float] = []
    real = shared.atranscribe

    async def counting(pcm, prompt=None, **kw):
        decodes.append(len(pcm) / 32000)
        return await real(pcm, prompt, **kw)

    monkeypatch.setattr(shared, "atranscribe", counting)
    stt = WhisperSTT(shared, vad=ScriptedPause([0.0] * n_speech + readings))
    down, _ = await run_test(stt, frames_to_send=_frames_with_pause(clip, readings),
                             pipeline_params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000))
    await asyncio.sleep(0)
    return stt, [f for f in down if isinstance(f, TranscriptionFrame)], decodes


async def test_early_decode_at_the_start_of_a_pause_is_the_segments_transcript(shared, clip, monkeypatch) -> None:
    n_speech = -(-len(clip) // 640)
    readings = [0.032, 0.064, 0.096, 0.128, 0.16, 0.192, 0.224]  # quiet grows until the VAD stop
    stt, transcripts, decodes = await _run_stt(shared, clip, readings, n_speech, monkeypatch)
    assert len(transcripts) == 1 and "horaires" in transcripts[0].text.lower()
    assert transcripts[0].result.early is True
    assert (stt.early_used, stt.early_dropped) == (1, 0)
    assert len(decodes) == 1, "the VAD stop reused the early decode instead of decoding again"


async def test_early_decode_is_dropped_when_the_caller_goes_on(shared, clip, monkeypatch) -> None:
    n_speech = -(-len(clip) // 640)
    readings = [0.032, 0.064, 0.096, 0.0, 0.0, 0.032]  # the caller resumed after the early start
    stt, transcripts, decodes = await _run_stt(shared, clip, readings, n_speech, monkeypatch)
    assert len(transcripts) == 1 and transcripts[0].result.early is False
    assert (stt.early_used, stt.early_dropped) == (0, 1)
    assert len(decodes) == 2 and decodes[1] > decodes[0], "the segment was decoded whole at the VAD stop"


async def test_no_early_decode_when_the_recogniser_is_busy(shared, clip, monkeypatch) -> None:
    monkeypatch.setattr(shared, "idle", lambda: False)
    n_speech = -(-len(clip) // 640)
    stt, transcripts, decodes = await _run_stt(shared, clip, [0.032, 0.064, 0.096, 0.128], n_speech, monkeypatch)
    assert len(transcripts) == 1 and transcripts[0].result.early is False
    assert (stt.early_used, stt.early_dropped) == (0, 0) and len(decodes) == 1


async def test_a_partial_still_queued_is_skipped_when_the_caller_goes_on(shared, clip) -> None:
    """Under load the first part of a resumed turn usually still waits for a slot when the
    caller goes on: it is dropped, and the turn is decoded once, whole."""
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import SleepFrame, run_test

    from callbot.speech.stt import WhisperSTT

    # both slots taken, for long enough (4x the clip: ~1 s of decoding) that the call's first segment is
    # still waiting when the caller goes on; with the clip alone a fast CPU freed them in time (CI, once)
    busy = [asyncio.ensure_future(shared.atranscribe(clip * 4)) for _ in range(shared.max_concurrent)]
    await asyncio.sleep(0.05)
    step = 640
    half = len(clip) // 2 // step * step

    def audio(pcm: bytes) -> list:
        return [InputAudioRawFrame(pcm[i : i + step], 16000, 1) for i in range(0, len(pcm), step)]

    stt = WhisperSTT(shared)
    frames = [VADUserStartedSpeakingFrame(), *audio(clip[:half]), VADUserStoppedSpeakingFrame(),
              SleepFrame(0.2),  # its decode is queued behind the busy slots when the caller goes on
              VADUserStartedSpeakingFrame(), *audio(clip[half:]), VADUserStoppedSpeakingFrame()]
    down, _ = await run_test(stt, frames_to_send=frames,
                             pipeline_params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000))
    await asyncio.gather(*busy)
    transcripts = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert stt.superseded == 1, "the first segment's queued decode should have been dropped"
    assert len(transcripts) == 1 and transcripts[0].result.segments == 2
    assert "horaires" in transcripts[0].text.lower() or "ouverture" in transcripts[0].text.lower()
