"""pipecat TTS service over a local ``Voice`` and the ``PromptCache``.

Static prompts are replayed from the cache with no synthesis at all; other text
is split into sentences and each sentence synthesised in a worker thread, so
the first sentence starts playing while the next is rendered and the event
loop (shared by every call) never blocks on the engine.

Interruptions (barge-in) are handled by pipecat's ``TTSService`` exactly as for
its built-in services: ``run_tts`` only yields frames into the audio context;
on ``InterruptionFrame`` the base class drops the context and stops consuming
this generator. A sentence already being synthesised in a thread finishes in
the background and is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from callbot.speech.prompt_cache import PromptCache, normalize_text, resample

log = logging.getLogger(__name__)

# Sentence ends: . ! ? … followed by space; keeps the punctuation with its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=\S)")
MIN_SENTENCE_CHARS = 20  # glue very short pieces ("Oui.") to the next one
# Engines pad their output with silence (Pico: ~0.1-0.6 s). At the start of a reply it is
# pure latency for the caller; at the end of the goodbye it delays the hang-up (the bot
# waits for the playback mark). Keep a little so nothing is clipped.
SILENCE_LEVEL = 200  # int16 amplitude below which audio counts as silence
KEEP_LEAD_S = 0.02
KEEP_TAIL_S = 0.25


def trim_silence(pcm: bytes, rate: int, *, lead: bool = True, tail: bool = True) -> bytes:
    """Cut leading/trailing silence of PCM16 down to ``KEEP_LEAD_S`` / ``KEEP_TAIL_S``."""
    a = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(a.astype(np.int32)) > SILENCE_LEVEL)
    if not len(loud):
        return pcm
    start = max(0, int(loud[0]) - int(KEEP_LEAD_S * rate)) if lead else 0
    end = min(len(a), int(loud[-1]) + 1 + int(KEEP_TAIL_S * rate)) if tail else len(a)
    return a[start:end].tobytes()


def split_sentences(text: str) -> list[str]:
    parts = [p for p in _SENTENCE_END.split(normalize_text(text)) if p]
    out: list[str] = []
    for p in parts:
        if out and len(out[-1]) < MIN_SENTENCE_CHARS:
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


class CachedTTS(TTSService):
    """TTS service: cached audio at once, otherwise sentence-by-sentence synthesis.

    Output frames are ``TTSAudioRawFrame`` at ``cache.out_rate`` (8 kHz by
    default, the pipeline's ``audio_out_sample_rate``). Per-utterance timing is
    logged and kept in ``last_timing`` (``cached``, ``first_audio_ms``).
    """

    def __init__(self, voice: Any, cache: PromptCache, *, chunk_ms: int = 200, **kwargs: Any) -> None:
        kwargs.setdefault("sample_rate", cache.out_rate)
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        super().__init__(
            settings=TTSSettings(model=voice.engine, voice=voice.name, language=voice.language), **kwargs
        )
        self._voice = voice
        self._cache = cache
        self._chunk_ms = chunk_ms
        self.last_timing: dict[str, Any] = {}

    def can_generate_metrics(self) -> bool:
        return True

    def _frames(self, pcm: bytes, context_id: str) -> list[TTSAudioRawFrame]:
        step = max(2, int(self.sample_rate * self._chunk_ms / 1000) * 2)
        return [
            TTSAudioRawFrame(pcm[i : i + step], self.sample_rate, 1, context_id=context_id)
            for i in range(0, len(pcm), step)
        ]

    def _audio_for(self, sentence: str) -> tuple[bytes, bool]:
        """(PCM at self.sample_rate, was_cached). Blocking: runs in a worker thread."""
        pcm = self._cache.get(sentence)
        cached = pcm is not None
        if pcm is None:
            pcm = self._cache.render(sentence)
        if self.sample_rate != self._cache.out_rate:
            pcm = resample(pcm, self._cache.out_rate, self.sample_rate)
        return pcm, cached

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        t0 = time.perf_counter()
        first_ms: float | None = None
        await self.start_tts_usage_metrics(text)
        try:
            whole = self._cache.get(text)
            if whole is not None and self.sample_rate == self._cache.out_rate:
                pieces: list[tuple[bytes, bool] | str] = [(whole, True)]
            else:
                pieces = split_sentences(text) if whole is None else [text]
            all_cached = True
            for i, piece in enumerate(pieces):
                if isinstance(piece, str):
                    pcm, cached = await asyncio.to_thread(self._audio_for, piece)
                else:
                    pcm, cached = piece
                pcm = trim_silence(pcm, self.sample_rate, lead=i == 0, tail=i == len(pieces) - 1)
                all_cached &= cached
                if first_ms is None:
                    first_ms = (time.perf_counter() - t0) * 1000
                    await self.stop_ttfb_metrics()
                for frame in self._frames(pcm, context_id):
                    yield frame
            self.last_timing = {"cached": all_cached, "first_audio_ms": first_ms,
                                "total_ms": (time.perf_counter() - t0) * 1000}
            log.debug("tts %s first audio %.0f ms: %r", "cached" if all_cached else "synth", first_ms or 0, text)
        except Exception as e:
            log.exception("TTS failed for %r", text)
            yield ErrorFrame(error=f"TTS failed: {e}")
        finally:
            await self.stop_ttfb_metrics()
