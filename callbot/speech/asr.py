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
A decode that raises, or misses its deadline (for a slot, then for the decode:
``asr_timeout_secs`` scaled to the audio), raises ``StageFault`` instead of leaving the
caller in silence; what happens to its thread and slot is in ``callbot/faults.py``.

Batching (``asr_batching``, off by default): short-window decodes of all calls go through a
``MicroBatcher`` (``speech/batcher.py``) instead of the slots: ``asr_max_concurrent`` workers
each take what is queued (same beam, prompt length and window slot), encode it and decode it
in ONE ``generate``. Only the decoder gains (its small matrices fill up with a batch; the
encoder's are already large): ``scripts/bench-asr-batch`` on 2 cores (Zen 4, AVX-512 VNNI),
callers sending turns back to back: +25-39 % turns/s at 16 callers in four A/B runs (e.g. 6.14
-> 7.67, CPU per turn -20 to -26 %), +16-20 % at 8, +5-10 % at 4, nothing at 1-2 (a lone
decode runs exactly the unbatched path). ``bench-load --calls 20`` there (1.8 turns/s, Whisper
~57 % of a core) did not change: the recogniser was not saturated. The queue, beam rule,
deadlines and faults are the slot path's (``_atranscribe_batched``); a decode past its deadline
is counted in ``stalls`` per request, not per batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
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
from callbot.errors import ModelError, StageFault
from callbot.faults import Stalls, asr_deadline, inject, injected, within
from callbot.osthreads import name_thread
from callbot.speech.batcher import (
    n_best,
    BUCKET_S,
    ENCODE_EACH,
    MAX_BATCH,
    SPREAD_S,
    MicroBatcher,
    Prepared,
    WhisperBatch,
    batch_key,
)
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
    batch: int = 0  # decodes in the model call that served this one (asr_batching); 0 = decoded alone
    shed: bool = False  # decoded greedy because the machine was saturated (the ladder's "greedy" step)
    alternatives: tuple[str, ...] = ()  # the beam's other hypotheses, best first (short window, beam > 1)


def _plain(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


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
        batching: bool | None = None,
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
        self._init_queue(settings, max_concurrent)
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
        self._common = dict(return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                            suppress_tokens=self._suppress, no_repeat_ngram_size=3)  # generate() options but the cap
        self.set_batching(bool(getattr(settings, "asr_batching", False)) if batching is None else batching)
        try:  # the shared Silero session: otherwise the first call after start-up paid for it before its greeting
            from callbot.speech.vad import preload

            preload()
        except Exception:  # pragma: no cover - VAD problems surface at the first call
            log.exception("could not preload the Silero VAD")
        log.info(
            "Whisper loaded from %s in %.2f s (int8, %d threads, beam %d, window %s%s, %d concurrent)",
            self.model_dir, self.load_s, self.threads, self.beam_size, self.window,
            f" +{self.padding_s:g}s, >= {self.min_window_s:g}s" if self.window == "short" else "", self.max_concurrent,
        )
        if self._batcher is not None:
            log.info("Whisper decodes batched across calls (up to %d a batch, %d workers, %s)",
                     self._batcher.max_batch, self._batcher.workers,
                     f"windows rounded to {self.window_bucket_s:g} s" if self.window_bucket_s
                     else "each batch padded to its longest window")

    def set_batching(self, enabled: bool, *, bucket_s: float | None = None, max_batch: int = MAX_BATCH,
                     window_s: float = 0.0, encode_each: bool = ENCODE_EACH, spread_s: float = SPREAD_S,
                     share: bool = True) -> None:
        """Decode short windows through a ``MicroBatcher`` (``speech/batcher.py``), or one at a time.

        ``bucket_s`` > 0 rounds every window up to a multiple of it, batched or not: with the same
        ``bucket_s`` both ways give the same transcripts, whoever else is talking. ``bucket_s`` = 0
        (``BUCKET_S``, the default) keeps each window as it is and pads a batch to its longest
        (windows less than ``spread_s`` apart): a lone decode is then exactly the unbatched one.
        ``window_s``: how long the oldest queued request waits for company (0: not at all).
        Call it while nothing decodes (the bench switches modes between rounds).
        """
        if self._batcher is not None:
            self._batcher.close(wait=True)
            self._batcher = None
        self.window_bucket_s = float(BUCKET_S if bucket_s is None and enabled else bucket_s or 0.0)
        if not enabled:
            return
        fe = self.model.feature_extractor
        bucket_frames = int(round(self.window_bucket_s / fe.time_per_frame))
        spread_frames = int(round(spread_s / fe.time_per_frame))
        self._batch_run = WhisperBatch(self.model.model, self._common, self._finish, encode_each=encode_each,
                                       before=lambda: inject(self._inject, "asr"))
        self._batcher = MicroBatcher(self._run_batch, key=lambda p: batch_key(p, bucket_frames, spread_frames),
                                     workers=self.max_concurrent, max_batch=max_batch, window_s=window_s, share=share)

    @property
    def batcher(self) -> MicroBatcher[Prepared, AsrResult] | None:
        return self._batcher

    def _run_batch(self, items: list[Prepared]) -> list[AsrResult | BaseException]:
        """A batcher worker: one batch through the model, an ``AsrResult`` (or the error) per request."""
        t0 = time.perf_counter()
        outs = self._batch_run(items)
        asr_ms = (time.perf_counter() - t0) * 1000
        results: list[AsrResult | BaseException] = []
        for p, out in zip(items, outs):
            if isinstance(out, BaseException):
                results.append(out)
                continue
            res = self._result(*out, audio_s=p.audio_s, mode="short", beam=p.beam, asr_ms=asr_ms)
            res.queue_ms, res.batch = (t0 - p.queued) * 1000, len(items)
            results.append(res)
        return results

    def _batchable(self, mode: Window, audio_s: float) -> bool:
        return (self._batcher is not None and mode == "short" and audio_s >= 0.1
                and audio_s + self.padding_s <= MAX_WINDOW_S)

    def _init_queue(self, settings: Any, max_concurrent: int | None = None) -> None:
        """What ``atranscribe`` needs besides the model: slots, admission, deadlines, the thread pool."""
        from callbot.admission import AsrAdmission

        self.max_concurrent: int = int(max_concurrent or getattr(settings, "asr_max_concurrent", 2))
        self.admission = AsrAdmission(int(getattr(settings, "max_asr_calls", 0) or 0),
                                      int(getattr(settings, "max_asr_queue", 0) or 0),
                                      float(getattr(settings, "max_asr_response_s", 0) or 0),
                                      decode_slots=self.max_concurrent,
                                      brief_response_s=float(getattr(settings, "asr_brief_response_s", 0) or 0),
                                      greedy_response_s=float(getattr(settings, "asr_greedy_response_s", 0) or 0))
        self.waiting = 0  # decodes waiting for a slot (all calls of this process)
        self.running = 0  # decodes in progress (event-loop side bookkeeping)
        self.speculating = 0  # of which speculative (early decodes that may be thrown away)
        self.timeout_s = float(getattr(settings, "asr_timeout_secs", 0.0) or 0.0)
        self._inject = injected(str(getattr(settings, "fault_inject", "") or ""), "asr")
        self.stalls = Stalls(on_change=lambda n: setattr(self.admission, "stalled_decodes", n))
        self._executor = concurrent.futures.ThreadPoolExecutor(  # features, then wait for CTranslate2
            self.max_concurrent, thread_name_prefix="asr", initializer=name_thread, initargs=("whisper-call",))
        self._sems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
        self._sems_lock = threading.Lock()
        self._batcher: MicroBatcher[Prepared, AsrResult] | None = None  # set_batching, once the model is loaded
        self.window_bucket_s = 0.0

    def greedy_now(self, waiting: int, others_running: int) -> bool:
        """The degrading ladder has reached greedy decoding (``admission.AsrAdmission.step``)."""
        return self.admission.step(time.monotonic(), waiting, others_running) in ("greedy", "keypad")

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
        if self._batchable(mode, audio_s):
            assert self._batcher is not None
            return self._batcher.submit(self._prepare(audio, audio_s, prompt, beam)).result()
        t0 = time.perf_counter()
        alternatives: tuple[str, ...] = ()
        if audio_s < 0.1:
            raw, no_speech, logprob = "", 1.0, 0.0
        elif mode == "short":
            raw, no_speech, logprob, alternatives = self._decode_short(audio, audio_s, prompt, beam)
        else:
            raw, no_speech, logprob = self._decode_full(audio, audio_s, prompt, beam)
        return self._result(raw, no_speech, logprob, alternatives, audio_s=audio_s, mode=mode, beam=beam,
                            asr_ms=(time.perf_counter() - t0) * 1000)

    def _result(self, raw: str, no_speech: float, logprob: float, alternatives: tuple[str, ...] = (), *,
                audio_s: float, mode: str, beam: int, asr_ms: float) -> AsrResult:
        raw = raw.strip()
        ratio = _compression_ratio(raw)
        rejected = _judge(raw, no_speech, logprob, ratio)
        res = AsrResult(
            text="" if rejected else raw, audio_s=audio_s, asr_ms=asr_ms, no_speech_prob=no_speech,
            avg_logprob=logprob, compression_ratio=ratio, raw_text=raw, rejected=rejected, window=mode, beam=beam,
            alternatives=() if rejected else alternatives,
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

    def _window_frames(self, mel_frames: int) -> int:
        """Log-mel frames the encoder sees for an utterance of ``mel_frames``: the utterance,
        ``padding_s`` of silence, at least ``min_window_s``, rounded up to ``window_bucket_s``."""
        fe = self.model.feature_extractor
        frames = max(mel_frames + int(self.padding_s / fe.time_per_frame), int(self.min_window_s / fe.time_per_frame))
        if self.window_bucket_s > 0:  # batching: equal windows share a batch (speech/batcher.py)
            step = max(2, int(round(self.window_bucket_s / fe.time_per_frame)))
            frames = -(-frames // step) * step
        frames = min(fe.nb_max_frames, frames)
        return frames + frames % 2  # the encoder's stride-2 convolution wants an even length

    def _prepare(self, audio: np.ndarray, audio_s: float, prompt: str | None, beam: int) -> Prepared:
        """Features, window, prompt and token cap of one short-window decode."""
        fe = self.model.feature_extractor
        mel = fe(audio)[..., :-1]  # same features as transcribe(), without the 30 s pad
        frames = self._window_frames(mel.shape[-1])
        mel = np.pad(mel, ((0, 0), (0, max(0, frames - mel.shape[-1]))))[:, :frames]
        prompt_ids = self._prompt_tokens(prompt)
        cap_s = audio_s
        if self.window_bucket_s > 0:  # the same cap for every window of a bucket: a batch decodes as its requests alone
            cap_s = max(audio_s, frames * fe.time_per_frame - self.padding_s)
        max_length = min(self.model.max_length, len(prompt_ids) + self._max_new_tokens(cap_s))
        return Prepared(np.ascontiguousarray(mel, dtype=np.float32), prompt_ids, max_length, beam, audio_s, prompt,
                        time.perf_counter())

    def _decode_short(self, audio: np.ndarray, audio_s: float, prompt: str | None,
                      beam: int) -> tuple[str, float, float, tuple[str, ...]]:
        p = self._prepare(audio, audio_s, prompt, beam)
        enc = self.model.encode(p.mel)
        first = self.model.model.generate(enc, [p.prompt_ids], beam_size=beam, max_length=p.max_length,
                                          num_hypotheses=n_best(beam), **self._common)[0]
        return self._finish(lambda: enc, p, first)

    def _finish(self, enc: Callable[[], Any], p: Prepared, first: Any) -> tuple[str, float, float, tuple[str, ...]]:
        """Judge a first-pass result; if it looks like a loop or a guess, one bounded fallback
        on the same encoder output (``enc()``), alone. Returns (text, no_speech_prob, avg_logprob,
        the beam's other hypotheses)."""
        best = self._judged(first)
        alternatives = self._alternatives(first, best[0])
        if best[3] in ("repetitive", "low_confidence") and FALLBACK_TEMPERATURE:
            # One bounded fallback, as faster-whisper does at 0.2, 0.4 … 1.0 but once: sample
            # a few hypotheses from the same encoder output (decoder-only cost) and keep the
            # most confident one that is not repetitive.
            alt = self._generate(enc(), p.prompt_ids, dict(self._common, max_length=p.max_length), beam_size=1,
                                 num_hypotheses=FALLBACK_BEST_OF, sampling_topk=0,
                                 sampling_temperature=FALLBACK_TEMPERATURE)
            ok = [r for r in (best, alt) if r[3] != "repetitive"] or [best, alt]
            best = max(ok, key=lambda r: r[2])
            alternatives = ()
        return best[0], best[1], best[2], alternatives

    def _alternatives(self, result: Any, best: str) -> tuple[str, ...]:
        """The beam's other hypotheses, distinct from the best and from each other (case and punctuation aside)."""
        seen, out = {_plain(best)}, []
        for ids in result.sequences_ids[1:]:
            text = self._tokenizer.decode(ids).strip()
            if text and _plain(text) not in seen:
                seen.add(_plain(text))
                out.append(text)
        return tuple(out)

    def _generate(self, enc, prompt_ids: list[int], common: dict, **kw) -> tuple[str, float, float, str | None]:
        """One CTranslate2 decode: (text, no_speech_prob, avg_logprob, rejection or None)."""
        return self._judged(self.model.model.generate(enc, [prompt_ids], **common, **kw)[0])

    def _judged(self, result: Any) -> tuple[str, float, float, str | None]:
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
        Raises ``StageFault`` when the decode raises, or when the wait for a slot or the
        decode itself exceeds ``faults.asr_deadline`` (the decode then keeps its slot until
        its thread returns, counted in ``stalls``).
        """
        audio_s = len(pcm16k) / 2 / PIPELINE_IN_RATE
        deadline = asr_deadline(self.timeout_s, audio_s)
        if self._batchable(window or self.window, audio_s):
            return await self._atranscribe_batched(pcm16k, prompt, audio_s, deadline, speculative, on_start)
        sem = self._semaphore()
        t0 = time.perf_counter()
        self.waiting += 1
        try:
            async with asyncio.timeout(deadline):
                await sem.acquire()
        except TimeoutError:
            raise StageFault(f"no Whisper decode slot within {deadline:.1f} s ({self.waiting - 1} others waiting, "
                             f"{self.stalls.count} slots stalled)", stage="asr", kind="timeout") from None
        finally:
            self.waiting -= 1
        queue_ms = (time.perf_counter() - t0) * 1000
        # Greedy once the ladder says so: the encoder is the same, the beam's decoder steps are not
        # (scripts/bench-asr --beam 1).
        beam = self.busy_beam_size if self.greedy_now(self.waiting, self.running - self.speculating) else self.beam_size
        self.running += 1
        self.speculating += speculative
        if on_start is not None:
            on_start()

        def done(_f) -> None:
            self.running -= 1
            self.speculating -= speculative
            sem.release()

        def decode() -> AsrResult:
            inject(self._inject, "asr")
            return self.transcribe(pcm16k, prompt, window=window, beam_size=beam)

        try:
            fut = asyncio.get_running_loop().run_in_executor(self._executor, decode)
        except BaseException:
            done(None)
            raise
        fut.add_done_callback(done)
        res = await within(fut, deadline, stage="asr", stalls=self.stalls,
                           what=f"Whisper decode of {audio_s:.1f} s of audio{' (early)' if speculative else ''}")
        res.queue_ms = queue_ms
        res.shed = beam < self.beam_size
        if not speculative:  # early decodes run only on an idle recogniser: they would flatter the average
            self.admission.observe((queue_ms + res.asr_ms) / 1000, time.monotonic())
        return res

    async def _atranscribe_batched(self, pcm16k: bytes, prompt: str | None, audio_s: float, deadline: float | None,
                                   speculative: bool, on_start: Callable[[], None] | None) -> AsrResult:
        """``atranscribe`` through the batcher: features in the ASR pool, then the batcher's queue
        (the "slot" wait: until a worker takes the request), then the batch. Same bookkeeping
        (``waiting``, ``running``, beam under load), deadlines and faults as the slot path; a
        request cancelled while queued is dropped, one cancelled in a batch finishes there."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        began = loop.create_future()  # set when a worker takes the request
        waiting = True
        self.waiting += 1

        def leave_queue() -> None:
            nonlocal waiting
            if waiting:
                waiting = False
                self.waiting -= 1

        def begin() -> None:  # on the loop, from the worker
            if began.done():
                return
            leave_queue()
            self.running += 1
            self.speculating += speculative
            began.set_result(time.perf_counter())
            if on_start is not None:
                on_start()

        def end(_f) -> None:
            if began.done():
                self.running -= 1
                self.speculating -= speculative
            else:
                leave_queue()

        try:
            audio = np.frombuffer(pcm16k, dtype=np.int16).astype(np.float32) / 32768.0
            p = await loop.run_in_executor(self._executor, self._prepare, audio, audio_s, prompt, self.beam_size)
        except BaseException:
            leave_queue()
            raise
        # Greedy under load, as in the slot path (the others in the queue are the load here).
        p.beam = self.busy_beam_size if self.greedy_now(self.waiting - 1, self.running - self.speculating) \
            else self.beam_size
        assert self._batcher is not None
        cf = self._batcher.submit(p, on_start=lambda: loop.call_soon_threadsafe(begin))
        fut = asyncio.wrap_future(cf, loop=loop)
        fut.add_done_callback(end)
        try:
            await asyncio.wait((began, fut), timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            cf.cancel()  # still queued: dropped; already in a batch: finishes there
            raise
        if not began.done() and not fut.done() and cf.cancel():
            raise StageFault(f"no Whisper batch within {deadline:.1f} s ({self.waiting} waiting, "
                             f"{self.stalls.count} decodes stalled)", stage="asr", kind="timeout")
        if fut.cancelled():
            raise StageFault("Whisper stopped before this decode", stage="asr", kind="error")
        res = await within(fut, deadline, stage="asr", stalls=self.stalls,
                           what=f"Whisper decode of {audio_s:.1f} s of audio{' (early)' if speculative else ''}")
        started = began.result() if began.done() else t0
        res.queue_ms = (started - t0) * 1000
        res.shed = p.beam < self.beam_size
        if not speculative:
            self.admission.observe((res.queue_ms + res.asr_ms) / 1000, time.monotonic())
        return res

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
