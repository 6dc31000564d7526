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

    from callbot.speech.asr import AsrResult, WhisperSTT

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

    from callbot.speech.asr import WhisperSTT

    frames = [VADUserStartedSpeakingFrame(), InputAudioRawFrame(clip[:16000], 8000, 1), VADUserStoppedSpeakingFrame()]
    _, up = await run_test(
        WhisperSTT(shared), frames_to_send=frames,
        pipeline_params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
    )
    assert any(isinstance(f, ErrorFrame) and "16000" in f.error for f in up)
