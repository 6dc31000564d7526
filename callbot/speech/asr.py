"""Whisper speech recognition shared by every call in the process.

Why not pipecat's ``WhisperSTTService``: it loads a model per instance (one per
call: ~2 s and ~150 MB each), exposes neither ``cpu_threads`` nor beam size, and
uses faster-whisper's unbounded temperature fallback. Here one ``SharedWhisper``
holds the model; ``WhisperSTT`` (one per call) only borrows it.

Latency: faster-whisper pads every input to a 30 s window and on 2 cores the
encoder dominates. ``window="short"`` encodes only the utterance plus ``padding_s`` of
silence (or more, up to ``min_window_s`` in all; CTranslate2 accepts a shorter mel
input) and decodes with a token cap and no-repeat n-grams so short windows cannot loop.
Shorter windows were measured and not adopted: 3 s of padding in a window of at least
9 s scored as well on ``scripts/bench-asr`` (WER 0.193 vs 0.204) with 20 % fewer frames
on a 5 s turn (encoder 209 -> 154 ms), but made Whisper repeat the call fixture "je
voudrais un acte de naissance" in one of two runs (2 s / 8 s: every time). ``scripts/bench-asr``
compares both modes; ``window="full"`` keeps the stock path.

Guard rails: decodes are admitted through a small semaphore (``asr_max_concurrent``
slots of ``asr_threads`` CPU threads each; on 2 cores 2 slots x 2 threads: a decode
alone takes 0.39 s instead of 0.62 s with 1 thread, and two at once keep the same
throughput, 2.9 decodes/s, as 2 x 1), and outputs that look like
hallucinations (repetitive, very low confidence, or silence) become empty text
with ``AsrResult.rejected`` saying why, so the flow can ask the caller to repeat.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from callbot.constants import PIPELINE_IN_RATE
from callbot.errors import ModelError
from callbot.osthreads import name_thread
from callbot.speech.models import Progress, whisper_model_dir

log = logging.getLogger(__name__)

Window = Literal["short", "full"]

WARM_UP_AUDIO_S = 4.0  # the throw-away decode at start-up: about a caller turn

# Rejection thresholds (Whisper's own defaults for fallback decisions).
COMPRESSION_RATIO_MAX = 2.4
LOGPROB_MIN = -1.0
NO_SPEECH_MIN = 0.6
TOKENS_PER_SECOND = 15  # generous for French speech (~5 tokens/s); bounds loops
TOKENS_BASE = 20
MAX_WINDOW_S = 30.0
FALLBACK_TEMPERATURE = 0.4  # single retry (short window); 0 disables
FALLBACK_BEST_OF = 3


@dataclass
class AsrResult:
    """One transcription. ``text`` is empty when nothing usable was heard."""

    text: str
    audio_s: float
    asr_ms: float  # decode wall time (excludes queueing)
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    raw_text: str = ""  # what Whisper said before rejection
    rejected: str | None = None  # "no_speech" | "repetitive" | "low_confidence" | "empty"
    window: str = "full"
    beam: int = 0  # beam size used (busy_beam_size under load)
    queue_ms: float = 0.0  # time waiting for a decode slot (atranscribe only)
    turn: int = 0  # WhisperSTT: the caller turn this segment belongs to
    segments: int = 1  # WhisperSTT: >1 = a re-decode of the whole turn so far (supersedes)
    early: bool = False  # WhisperSTT: decoded from the start of the pause, before the VAD stop


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _judge(text: str, no_speech: float, logprob: float, ratio: float) -> str | None:
    if not text.strip():
        return "empty"
    if no_speech > NO_SPEECH_MIN:
        # Whisper's own rule also requires a low logprob, but beam search on a short
        # window turns silence into confident phrases ("C'est la première fois.",
        # logprob -0.23, no_speech 0.68); on the bench, speech stayed below 0.50.
        return "no_speech"
    if ratio > COMPRESSION_RATIO_MAX:
        return "repetitive"
    if logprob < LOGPROB_MIN:
        return "low_confidence"
    return None


class SharedWhisper:
    """One faster-whisper model per process, safe to call from many calls at once.

    ``transcribe`` is synchronous (run it in a thread); ``atranscribe`` queues
    callers behind ``max_concurrent`` decode slots and runs the decode in a
    dedicated thread pool so ASR never starves the default executor.
    """

    def __init__(
        self,
        settings: Any,
        *,
        model_dir=None,
        window: Window | None = None,
        padding_s: float | None = None,
        max_concurrent: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        # CTranslate2's OpenMP threads must sleep, not spin, while they wait for each other:
        # a decode's 2 threads share the cores with the event loop and the VAD, and a spinning
        # partner of a preempted thread burns the time the other one needs. Read once, when
        # libgomp loads (with ctranslate2); a value set by the operator wins.
        # bench-latency: the 5 s re-decode 1164 -> 763-912 ms, no cost alone (0.386 s either way).
        if "ctranslate2" not in sys.modules:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.language: str = getattr(settings, "asr_language", "fr") or "fr"
        self.beam_size: int = int(getattr(settings, "asr_beam_size", 5))
        self.busy_beam_size: int = min(self.beam_size, int(getattr(settings, "asr_busy_beam_size", self.beam_size)))
        self.threads: int = int(getattr(settings, "asr_threads", 2))
        self.window: Window = window or getattr(settings, "asr_window", "short")
        self.padding_s: float = float(padding_s if padding_s is not None else getattr(settings, "asr_window_padding_s", 6.0))
        self.min_window_s: float = float(getattr(settings, "asr_window_min_s", 0.0))
        self.max_concurrent: int = int(max_concurrent or getattr(settings, "asr_max_concurrent", 2))
        from callbot.admission import AsrAdmission

        self.admission = AsrAdmission(int(getattr(settings, "max_asr_calls", 0) or 0),
                                      int(getattr(settings, "max_asr_queue", 0) or 0),
                                      float(getattr(settings, "max_asr_response_s", 0) or 0))
        self.waiting = 0  # decodes waiting for a slot (all calls of this process)
        self.running = 0  # decodes in progress (event-loop side bookkeeping)
        self.speculating = 0  # of which speculative (early decodes that may be thrown away)
        self.model_dir = model_dir or whisper_model_dir(settings, progress)
        self.nice: int = int(getattr(settings, "asr_nice", 0))
        t0 = time.monotonic()
        try:
            self.model = self._niced(lambda: WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.threads,
                num_workers=self.max_concurrent,
            ))
        except Exception as e:  # CTranslate2 raises RuntimeError/ValueError on bad folders
            raise ModelError(f"cannot load Whisper model from {self.model_dir}: {e}", code="asr_load_failed") from e
        self.load_s = time.monotonic() - t0
        if not self.model.model.is_multilingual:
            raise ModelError(f"{self.model_dir} is an English-only Whisper model; French needs a multilingual one")
        self._tokenizer = Tokenizer(self.model.hf_tokenizer, True, task="transcribe", language=self.language)
        from faster_whisper.transcribe import get_suppressed_tokens

        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        self._executor = concurrent.futures.ThreadPoolExecutor(  # features, then wait for CTranslate2
            self.max_concurrent, thread_name_prefix="asr", initializer=name_thread, initargs=("whisper-call",))
        try:  # the shared Silero session: otherwise the first call after start-up paid for it before its greeting
            from callbot.speech.vad import preload

            preload()
        except Exception:  # pragma: no cover - VAD problems surface at the first call
            log.exception("could not preload the Silero VAD")
        self._sems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._sems_lock = threading.Lock()
        log.info(
            "Whisper loaded from %s in %.2f s (int8, %d threads, beam %d, window %s%s, %d concurrent)",
            self.model_dir, self.load_s, self.threads, self.beam_size, self.window,
            f" +{self.padding_s:g}s, >= {self.min_window_s:g}s" if self.window == "short" else "", self.max_concurrent,
        )

    def _niced(self, build: Callable[[], Any]) -> Any:
        """Build the model in a thread named ``whisper``, of lower priority (``asr_nice``).

        CTranslate2 decodes in its own worker threads, created with the model, and Linux
        threads inherit the name and nice value of the thread that creates them. Under load
        the event loop paces every call's outgoing audio: if it waits behind the decoder,
        callers hear gaps. A late transcript costs less than a gap.
        """

        def init() -> None:
            name_thread("whisper")
            if self.nice <= 0 or not hasattr(os, "setpriority"):
                return
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:  # pragma: no cover - not permitted in some containers
                log.warning("could not lower the Whisper threads' priority")

        with concurrent.futures.ThreadPoolExecutor(1, "asr-load", initializer=init) as pool:
            return pool.submit(build).result()

    def warm_up_sync(self) -> float:
        """Run one throw-away decode per worker, at once, before the first caller (blocking).

        CTranslate2's first decode on each worker allocates its buffers: the first caller
        after a start paid ~50-90 ms more per decode (measured with ``horaires.wav``).
        Returns the seconds spent.
        """
        t0 = time.perf_counter()
        # Quiet noise: the encoder and the first decoder steps run; what they hear does not matter.
        pcm = np.random.default_rng(0).normal(0, 300, int(WARM_UP_AUDIO_S * PIPELINE_IN_RATE)).astype(np.int16)
        with concurrent.futures.ThreadPoolExecutor(self.max_concurrent) as pool:
            list(pool.map(lambda _: self.transcribe(pcm.tobytes()), range(self.max_concurrent)))
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ sync
    def transcribe(self, pcm16k: bytes, prompt: str | None = None, *, window: Window | None = None,
                   beam_size: int | None = None) -> AsrResult:
        """Transcribe 16 kHz mono PCM16. Blocking: call from a worker thread."""
        audio = np.frombuffer(pcm16k, dtype=np.int16).astype(np.float32) / 32768.0
        audio_s = len(audio) / PIPELINE_IN_RATE
        mode = window or self.window
        beam = beam_size or self.beam_size
        if mode == "short" and audio_s + self.padding_s > MAX_WINDOW_S:
            mode = "full"  # long turns: the stock path walks 30 s windows
        t0 = time.perf_counter()
        if audio_s < 0.1:
            raw, no_speech, logprob = "", 1.0, 0.0
        elif mode == "short":
            raw, no_speech, logprob = self._decode_short(audio, audio_s, prompt, beam)
        else:
            raw, no_speech, logprob = self._decode_full(audio, audio_s, prompt, beam)
        asr_ms = (time.perf_counter() - t0) * 1000
        raw = raw.strip()
        ratio = _compression_ratio(raw)
        rejected = _judge(raw, no_speech, logprob, ratio)
        res = AsrResult(
            text="" if rejected else raw, audio_s=audio_s, asr_ms=asr_ms, no_speech_prob=no_speech,
            avg_logprob=logprob, compression_ratio=ratio, raw_text=raw, rejected=rejected, window=mode, beam=beam,
        )
        log.debug("asr %.2fs audio in %.0f ms (%s): %r%s", audio_s, asr_ms, mode, raw,
                  f" rejected={rejected}" if rejected else "")
        return res

    def _max_new_tokens(self, audio_s: float) -> int:
        return int(TOKENS_BASE + TOKENS_PER_SECOND * audio_s)

    def _prompt_tokens(self, prompt: str | None) -> list[int]:
        tok = self._tokenizer
        tokens: list[int] = []
        if prompt and prompt.strip():
            prev = tok.encode(" " + prompt.strip())[-(self.model.max_length // 2 - 1):]
            tokens = [tok.sot_prev, *prev]
        return [*tokens, *tok.sot_sequence, tok.no_timestamps]

    def _decode_short(self, audio: np.ndarray, audio_s: float, prompt: str | None,
                      beam: int) -> tuple[str, float, float]:
        fe = self.model.feature_extractor
        mel = fe(audio)[..., :-1]  # same features as transcribe(), without the 30 s pad
        frames = max(mel.shape[-1] + int(self.padding_s / fe.time_per_frame), int(self.min_window_s / fe.time_per_frame))
        frames = min(fe.nb_max_frames, frames)
        frames += frames % 2  # the encoder's stride-2 convolution wants an even length
        mel = np.pad(mel, ((0, 0), (0, max(0, frames - mel.shape[-1]))))[:, :frames]
        enc = self.model.encode(np.ascontiguousarray(mel, dtype=np.float32))
        prompt_ids = self._prompt_tokens(prompt)
        max_length = min(self.model.max_length, len(prompt_ids) + self._max_new_tokens(audio_s))
        common = dict(max_length=max_length, return_scores=True, return_no_speech_prob=True,
                      suppress_blank=True, suppress_tokens=self._suppress, no_repeat_ngram_size=3)
        best = self._generate(enc, prompt_ids, common, beam_size=beam)
        if best[3] in ("repetitive", "low_confidence") and FALLBACK_TEMPERATURE:
            # One bounded fallback, as faster-whisper does at 0.2, 0.4 … 1.0 but once: sample
            # a few hypotheses from the same encoder output (decoder-only cost) and keep the
            # most confident one that is not repetitive.
            alt = self._generate(enc, prompt_ids, common, beam_size=1, num_hypotheses=FALLBACK_BEST_OF,
                                 sampling_topk=0, sampling_temperature=FALLBACK_TEMPERATURE)
            ok = [r for r in (best, alt) if r[3] != "repetitive"] or [best, alt]
            best = max(ok, key=lambda r: r[2])
        return best[0], best[1], best[2]

    def _generate(self, enc, prompt_ids: list[int], common: dict, **kw) -> tuple[str, float, float, str | None]:
        """One CTranslate2 decode: (text, no_speech_prob, avg_logprob, rejection or None)."""
        result = self.model.model.generate(enc, [prompt_ids], **common, **kw)[0]
        tokens = result.sequences_ids[0]
        text = self._tokenizer.decode(tokens).strip()
        logprob = float(result.scores[0] / (len(tokens) + 1)) if tokens else 0.0  # as faster-whisper (length_penalty 1)
        no_speech = float(result.no_speech_prob)
        return text, no_speech, logprob, _judge(text, no_speech, logprob, _compression_ratio(text))

    def _decode_full(self, audio: np.ndarray, audio_s: float, prompt: str | None,
                     beam: int) -> tuple[str, float, float]:
        segments, _ = self.model.transcribe(
            audio, language=self.language, beam_size=beam, initial_prompt=prompt or None,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            temperature=(0.0, 0.4),  # one bounded fallback, not six
            compression_ratio_threshold=COMPRESSION_RATIO_MAX, log_prob_threshold=LOGPROB_MIN,
            no_speech_threshold=NO_SPEECH_MIN, max_new_tokens=self._max_new_tokens(min(audio_s, MAX_WINDOW_S)),
            no_repeat_ngram_size=3,
        )
        segs = list(segments)  # decoding happens while iterating: keep it in this thread
        if not segs:
            return "", 1.0, 0.0
        text = " ".join(s.text.strip() for s in segs)
        return text, max(s.no_speech_prob for s in segs), min(s.avg_logprob for s in segs)

    # ----------------------------------------------------------------- async
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._sems_lock:
            sem = self._sems.get(loop)
            if sem is None:
                sem = self._sems[loop] = asyncio.Semaphore(self.max_concurrent)
            return sem

    def idle(self) -> bool:
        """Nothing decodes or waits: a speculative decode costs no caller anything. (Letting
        a speculation start beside a thrown-away one put three decodes on the two cores in
        one pause, the real one among them, in bench-latency.)"""
        return self.running == 0 and self.waiting == 0

    async def atranscribe(self, pcm16k: bytes, prompt: str | None = None, *, window: Window | None = None,
                          speculative: bool = False, on_start: Callable[[], None] | None = None) -> AsrResult:
        """Queue for a decode slot, then transcribe in the ASR thread pool.

        If the caller is cancelled mid-decode, the slot is held until the thread
        actually finishes, so cancelled calls cannot oversubscribe the CPU.
        ``speculative`` decodes (``stt.py``'s early decodes, often thrown away) do not
        count as load when the next decode picks its beam. ``on_start`` is called when
        the decode leaves the queue (cancelling before that costs no CPU).
        """
        sem = self._semaphore()
        t0 = time.perf_counter()
        self.waiting += 1
        try:
            await sem.acquire()
        finally:
            self.waiting -= 1
        queue_ms = (time.perf_counter() - t0) * 1000
        # Under load (another decode running or waiting) greedy decoding: the encoder is
        # the same, the beam's decoder steps are not (scripts/bench-asr --beam 1).
        beam = self.busy_beam_size if (self.running - self.speculating or self.waiting) else self.beam_size
        self.running += 1
        self.speculating += speculative
        if on_start is not None:
            on_start()

        def done(_f) -> None:
            self.running -= 1
            self.speculating -= speculative
            sem.release()

        try:
            fut = asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: self.transcribe(pcm16k, prompt, window=window, beam_size=beam)
            )
        except BaseException:
            done(None)
            raise
        fut.add_done_callback(done)
        res = await asyncio.shield(fut)
        res.queue_ms = queue_ms
        if not speculative:  # early decodes run only on an idle recogniser: they would flatter the average
            self.admission.observe((queue_ms + res.asr_ms) / 1000, time.monotonic())
        return res

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
