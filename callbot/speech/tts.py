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

Faults: synthesis runs in its own small thread pool (a hung engine must not take the
default executor the whole process shares) and each sentence has a deadline
(``faults.tts_deadline``). A sentence that raises or misses it is never silence: the
flow's pre-rendered apology (``fault_text``) plays in its place, ``on_tts_fault`` fires (the
flow then offers its keypad menu, all pre-rendered), and this call speaks only cached
prompts from then on. While any synthesis is stalled past its deadline, every call does
(the voice serialises its callers behind one lock). See ``callbot/faults.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from callbot.errors import StageFault
from callbot.faults import Stalls, inject, injected, tts_deadline, within
from callbot.osthreads import name_thread
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
SYNTH_THREADS = 2  # the voice synthesises one sentence at a time (its lock): one runs, one waits its turn
STALLS = Stalls()  # syntheses past their deadline, process-wide like the voice's lock
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _synth_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(SYNTH_THREADS, thread_name_prefix="tts",
                                                      initializer=name_thread, initargs=("tts",))
    return _pool


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
    ``timeout_secs``: the synthesis deadline's base (``Settings.tts_timeout_secs``, 0 = none);
    ``fault_text``: the pre-rendered apology said instead of a sentence that failed;
    ``fault_inject``: ``Settings.fault_inject`` (tests only).
    """

    def __init__(self, voice: Any, cache: PromptCache, *, chunk_ms: int = 200, timeout_secs: float = 0.0,
                 fault_text: str | None = None, fault_inject: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("sample_rate", cache.out_rate)
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        super().__init__(
            settings=TTSSettings(model=voice.engine, voice=voice.name, language=voice.language), **kwargs
        )
        self._voice = voice
        self._cache = cache
        self._chunk_ms = chunk_ms
        self._timeout_s = timeout_secs
        self._fault_text = fault_text
        self._inject = injected(fault_inject, "tts")
        self._register_event_handler("on_tts_fault")
        self.synthesis_on = True  # False after a fault: this call speaks cached prompts only
        self._apologised = False  # the apology was the last thing played: do not say it twice in a row
        self.last_timing: dict[str, Any] = {}

    def can_generate_metrics(self) -> bool:
        return True

    def _frames(self, pcm: bytes, context_id: str) -> list[TTSAudioRawFrame]:
        step = max(2, int(self.sample_rate * self._chunk_ms / 1000) * 2)
        return [
            TTSAudioRawFrame(pcm[i : i + step], self.sample_rate, 1, context_id=context_id)
            for i in range(0, len(pcm), step)
        ]

    def _at_rate(self, pcm: bytes) -> bytes:
        rate = self._cache.out_rate
        return pcm if self.sample_rate == rate else resample(pcm, rate, self.sample_rate)

    def _audio_for(self, sentence: str) -> tuple[bytes, bool]:
        """(PCM at self.sample_rate, was_cached). Blocking: runs in a worker thread."""
        pcm = self._cache.get(sentence)
        cached = pcm is not None
        if pcm is None:
            inject(self._inject, "tts")
            pcm = self._cache.render(sentence)
        return self._at_rate(pcm), cached

    async def _audio(self, sentence: str) -> tuple[bytes, bool]:
        """``_audio_for`` in the synthesis pool, within the deadline; cache only once synthesis is off."""
        if not self.synthesis_on or STALLS.count:
            pcm = self._cache.get(sentence)
            if pcm is not None:
                return self._at_rate(pcm), True
            why = ("off for this call since an earlier fault" if not self.synthesis_on
                   else f"waiting for {STALLS.count} synthesis past its deadline")
            raise StageFault(f"speech synthesis {why}", stage="tts",
                             kind="error" if not self.synthesis_on else "timeout")
        fut = asyncio.get_running_loop().run_in_executor(_synth_pool(), self._audio_for, sentence)
        return await within(fut, tts_deadline(self._timeout_s, len(sentence)), stage="tts", stalls=STALLS,
                            what=f"synthesis of a {len(sentence)}-character sentence with {self._voice.engine}")

    async def _on_fault(self, fault: StageFault) -> bytes | None:
        """A sentence cannot be said: tell the call, and return the apology to play instead (None:
        it was the last thing played already, or it is not pre-rendered)."""
        self.synthesis_on = False
        log.warning("speech synthesis fault: %s", fault)
        await self._call_event_handler("on_tts_fault", fault)
        if self._apologised:
            return None
        apology = self._cache.get(self._fault_text) if self._fault_text else None
        if apology is None:
            log.error("no pre-rendered apology to say instead (fault_text %r): the caller hears nothing here",
                      self._fault_text)
            return None
        self._apologised = True
        return self._at_rate(apology)

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
                last = i == len(pieces) - 1
                if isinstance(piece, str):
                    try:
                        pcm, cached = await self._audio(piece)
                    except StageFault as fault:  # the rest of the text would need the engine too
                        apology = await self._on_fault(fault)
                        if apology is None:
                            break
                        pcm, cached, last = apology, True, True
                    else:
                        self._apologised = False
                else:
                    pcm, cached = piece
                    self._apologised = False
                pcm = trim_silence(pcm, self.sample_rate, lead=i == 0, tail=last)
                all_cached &= cached
                if first_ms is None:
                    first_ms = (time.perf_counter() - t0) * 1000
                    await self.stop_ttfb_metrics()
                for frame in self._frames(pcm, context_id):
                    yield frame
                if last:
                    break
            self.last_timing = {"cached": all_cached, "first_audio_ms": first_ms,
                                "total_ms": (time.perf_counter() - t0) * 1000}
            log.debug("tts %s first audio %.0f ms: %r", "cached" if all_cached else "synth", first_ms or 0, text)
        except Exception as e:
            log.exception("TTS failed for %r", text)
            yield ErrorFrame(error=f"TTS failed: {e}")
        finally:
            await self.stop_ttfb_metrics()
