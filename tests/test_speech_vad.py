"""The batched Silero VAD decides exactly as pipecat's own analyzer, call by call."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams

from callbot.speech import vad as V

AUDIO = Path(__file__).parent / "fixtures" / "audio"
FRAME = 320 * 2  # 20 ms at 16 kHz, as the transports deliver it


def caller_audio(*names: str) -> bytes:
    """Fixtures at 16 kHz with a second of line silence between them."""
    out = []
    for name in names:
        with wave.open(str(AUDIO / name)) as w:
            a = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        out += [np.repeat(a, 2), np.zeros(16000, np.int16)]  # 8 -> 16 kHz, enough for the VAD
    return np.concatenate(out).tobytes()


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


async def states_of(analyzer, pcm: bytes) -> list:
    analyzer.set_sample_rate(16000)
    return [await analyzer.analyze_audio(f) for f in frames(pcm)]


async def test_batched_vad_matches_pipecat_for_concurrent_calls():
    params = VADParams(stop_secs=0.25)
    calls = [caller_audio("horaires.wav", "oui.wav"), caller_audio("lampadaire.wav"),
             caller_audio("adresse.wav", "non_merci.wav"), caller_audio("agent.wav")]
    reference = [await states_of(SileroVADAnalyzer(sample_rate=16000, params=params), pcm) for pcm in calls]
    batched = await asyncio.gather(*(states_of(V.SharedSileroVAD(sample_rate=16000, params=params), pcm)
                                     for pcm in calls))
    for ref, got in zip(reference, batched):
        assert len(ref) == len(got)
        changes = sum(a != b for a, b in zip(ref, got))
        assert changes <= 2, f"{changes} frames decided differently from pipecat's analyzer"
        assert any(s.name == "SPEAKING" for s in got), "speech was never detected"
    b = V._batcher()
    assert b.requests > b.batches, "concurrent calls were not scored together"
