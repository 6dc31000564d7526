"""Prompt cache and the CachedTTS pipecat service."""

from __future__ import annotations

import numpy as np
import pytest

from callbot.speech.engines import EspeakVoice, Voice
from callbot.speech.prompt_cache import PromptCache, resample
from callbot.speech.tts import CachedTTS, split_sentences


class ToneVoice(Voice):
    """A fake 16 kHz voice: a 440 Hz tone whose length follows the text; counts calls."""

    engine = "tone"

    def __init__(self, name: str = "tone-a") -> None:
        super().__init__(name, 16000, "fr")
        self.calls: list[str] = []

    def _synthesize(self, text: str) -> bytes:
        self.calls.append(text)
        n = 1600 * max(1, len(text) // 10)
        t = np.arange(n) / 16000
        return (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16).tobytes()


def test_cache_hit_is_identical_and_keyed_by_voice(tmp_path) -> None:
    a = PromptCache(ToneVoice("tone-a"))
    assert a.get("Bonjour.") is None
    a.warm(["Bonjour.", "Bonjour.", "  Au revoir.  ", ""])
    assert a.voice.calls == ["Bonjour.", "Au revoir."]
    pcm = a.get("Bonjour.")
    assert pcm is not None and pcm == a.get("Bonjour.") and a.get("Au  revoir.") is not None
    assert len(pcm) == len(a.voice.synthesize("Bonjour.")) // 2  # 16 kHz → 8 kHz
    b = PromptCache(ToneVoice("tone-b"))
    assert b.key("Bonjour.") != a.key("Bonjour.") and b.get("Bonjour.") is None


def test_disk_cache_survives_restart(tmp_path) -> None:
    first = PromptCache(ToneVoice(), disk_dir=tmp_path)
    first.warm(["Bonjour."])
    again = PromptCache(ToneVoice(), disk_dir=tmp_path)
    assert again.get("Bonjour.") == first.get("Bonjour.")
    again.warm(["Bonjour."])
    assert again.voice.calls == []


def test_resampler_is_band_limited() -> None:
    # A 6 kHz tone cannot exist at 8 kHz: a proper resampler removes it, decimation would alias it to 2 kHz.
    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 6000 * t) * 20000).astype(np.int16).tobytes()
    out = np.frombuffer(resample(tone, 16000, 8000), dtype=np.int16).astype(float)
    assert len(out) == 8000 and np.sqrt((out[200:-200] ** 2).mean()) < 200


def test_split_sentences() -> None:
    assert split_sentences("Oui. La mairie est ouverte de 9 h à 17 h. Voulez-vous autre chose ?") == [
        "Oui. La mairie est ouverte de 9 h à 17 h.", "Voulez-vous autre chose ?"]


async def _speak(tts: CachedTTS, *texts: str):
    from pipecat.frames.frames import TTSSpeakFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test

    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame(t) for t in texts],
        pipeline_params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000),
    )
    return down


async def test_cached_tts_in_pipeline_yields_8k_audio() -> None:
    from pipecat.frames.frames import TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame

    voice = ToneVoice()
    cache = PromptCache(voice)
    cache.warm(["Bonjour, vous êtes bien à la mairie."])
    voice.calls.clear()
    tts = CachedTTS(voice, cache)
    down = await _speak(tts, "Bonjour, vous êtes bien à la mairie.")
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and all(f.sample_rate == 8000 and f.num_channels == 1 for f in audio)
    assert b"".join(f.audio for f in audio) == cache.get("Bonjour, vous êtes bien à la mairie.")
    assert voice.calls == [] and tts.last_timing["cached"]
    assert any(isinstance(f, TTSStartedFrame) for f in down) and any(isinstance(f, TTSStoppedFrame) for f in down)


async def test_cached_tts_synthesises_uncached_text_by_sentence() -> None:
    from pipecat.frames.frames import TTSAudioRawFrame

    voice = ToneVoice()
    tts = CachedTTS(voice, PromptCache(voice))
    down = await _speak(tts, "Votre demande est enregistrée. Le numéro de dossier est 42.")
    assert voice.calls == ["Votre demande est enregistrée.", "Le numéro de dossier est 42."]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and {f.sample_rate for f in audio} == {8000}
    assert not tts.last_timing["cached"]


async def test_cached_tts_with_real_espeak_voice() -> None:
    from pipecat.frames.frames import TTSAudioRawFrame

    voice = EspeakVoice("fr")
    tts = CachedTTS(voice, PromptCache(voice))
    down = await _speak(tts, "Ne quittez pas, je vous passe le secrétariat.")
    pcm = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    a = np.frombuffer(pcm, dtype=np.int16).astype(float)
    assert len(a) / 8000 > 1.0 and np.sqrt((a**2).mean()) > 500


class SlowVoice(ToneVoice):
    def _synthesize(self, text: str) -> bytes:
        import time

        time.sleep(0.15)
        return super()._synthesize(text)


async def test_cached_tts_stops_on_interruption() -> None:
    from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import SleepFrame, run_test

    text = " ".join(f"Ceci est la phrase numéro {i} de la réponse." for i in range(8))
    voice = SlowVoice()
    tts = CachedTTS(voice, PromptCache(voice))
    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame(text), SleepFrame(0.4), InterruptionFrame(), SleepFrame(0.5)],
        pipeline_params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=8000),
    )
    names = [type(f).__name__ for f in down]
    assert "InterruptionFrame" in names
    after = names[names.index("InterruptionFrame"):]
    assert "TTSAudioRawFrame" in names[: names.index("InterruptionFrame")]
    assert "TTSAudioRawFrame" not in after, "audio kept flowing after barge-in"
    assert len(voice.calls) < 8, "synthesis continued for the whole reply after barge-in"
