"""Whisper decodes of several calls in one model call: a micro-batcher in front of CTranslate2.

``SharedWhisper`` with ``asr_batching`` on hands every short-window decode to a ``MicroBatcher``
instead of running it alone in a decode slot. Worker threads (``asr_max_concurrent`` of them,
the CTranslate2 replicas) take what is queued when they are free: all the requests that can
share a batch with the oldest one (same beam, same prompt length, same window), split evenly
between the idle workers so that both cores decode, up to ``max_batch``. A lone request on an
idle recogniser starts at once (``window_s`` = 0: no gathering delay); under load the queue
fills while the previous batches run, so batches form by themselves.

What one batch costs (``WhisperBatch``): each request's log-mel padded to the batch's window,
the encoder run on them (one ``encode`` of the whole batch, or one per request: measured, see
``ENCODE_EACH``), the encoder outputs stacked and decoded by ONE ``generate`` with every
request's prompt. CTranslate2 requires the ``<|startoftranscript|>`` token at the same
position in every prompt of a batch, hence the prompt length in the grouping key. Decoding a
stacked batch gives the same tokens and scores as decoding each request alone with the same
encoder output (``tests/test_asr_batcher.py``).

Windows: the encoder must see every request of a batch at one length (the decoder attends to
all of it: padding its output instead changes the text). By default (``BUCKET_S`` = 0) windows
(utterance + ``padding_s``, at least ``min_window_s``) on the same ``SPREAD_S`` slot share a
batch, padded to the longest: a request alone is decoded exactly as without batching, one in a
batch gets up to ``SPREAD_S`` more padding, so its text can depend on who else was talking.
``bucket_s`` > 0 rounds every window up to a multiple of it instead and batches equal windows
only: the text is then the same alone or batched, at the cost of smaller batches (more keys).
Extra padding is accuracy-neutral here: the 72 ``scripts/bench-asr`` clips (with a segment's
1 s lead-in and 0.5 s tail) scored WER 0.271 / 0.270 / 0.263 / 0.266 at beam 1 and 0.197 /
0.200 / 0.203 / 0.204 at beam 5 for the exact window, 1 s buckets, 2 s buckets, and 0-2 s of
random extra padding. ``scripts/bench-asr-batch`` compares the modes with the one-at-a-time path.

Failures: an exception in a batch fails the futures of that batch only, with a
``BatchError`` that says how many requests it took down; the worker carries on with the next.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

# The beam's other finished hypotheses, kept for the recogniser: when Whisper's best is not
# understood, the next one often is ("la mère y" / "la mairie"; docs/understanding.md).
N_BEST = 4


def n_best(beam: int) -> int:
    """Hypotheses to ask the beam for: all its finished ones up to ``N_BEST`` (greedy has one)."""
    return max(1, min(beam, N_BEST))


import numpy as np

from callbot.osthreads import name_thread

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - a request
R = TypeVar("R")  # its result

MAX_BATCH = 8
# Window rounding when batching. 0: no rounding, each batch padded to its longest window (windows
# on a SPREAD_S grid batch together). scripts/bench-asr-batch, 2 cores, 16 callers: 7.55 turns/s
# (0) vs 7.31 (1 s buckets) vs 5.44 one at a time; a lone decode is then exactly the unbatched one.
BUCKET_S = 0.0
SPREAD_S = 2.0  # bucket_s = 0: windows in the same SPREAD_S slot batch together (< SPREAD_S of extra padding)
# One encode per request, then one generate for the batch: on the 2-core test machines the
# encoder of a batch of 8 took 1.4 s vs 1.0 s for 8 single encodes (1 thread), while the decoder
# of the batch took 0.55 s vs 1.2 s (greedy). The encoder's matrices are already large.
ENCODE_EACH = True


class BatchError(RuntimeError):
    """A batch failed: every request in it gets this (``__cause__`` is the original exception)."""


@dataclass(eq=False)
class _Job(Generic[I]):
    item: I
    future: concurrent.futures.Future
    key: Hashable
    submitted: float
    on_start: Callable[[], None] | None = None
    started: float = 0.0


@dataclass
class BatchStats:
    batches: int = 0  # model calls made (one per batch)
    items: int = 0  # requests served in them
    failed_batches: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches

    def mean(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[I, R]):
    """Requests from many threads or calls, served by ``workers`` threads in batches.

    ``run(items)`` gets a list of requests sharing one ``key`` and returns one result per
    request, in order; a result that is an exception fails that request only. ``submit``
    returns a ``concurrent.futures.Future`` (``asyncio.wrap_future`` it on an event loop;
    cancelling it before a worker takes it drops the request). ``on_start`` (optional, per
    request) is called from the worker thread when its batch starts.
    """

    def __init__(
        self,
        run: Callable[[list[I]], Sequence[R | BaseException]],
        *,
        key: Callable[[I], Hashable] = lambda _item: None,
        workers: int = 1,
        max_batch: int = MAX_BATCH,
        window_s: float = 0.0,
        share: bool = True,
        name: str = "whisper-batch",
    ) -> None:
        self._run = run
        self._key = key
        self.max_batch = max(1, int(max_batch))
        self.window_s = max(0.0, float(window_s))
        self.share = share  # split what is queued between the idle workers (both cores decode)
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: deque[_Job[I]] = deque()
        self._idle = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, args=(name,), name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def pending(self) -> int:
        """Requests no worker has taken yet."""
        return len(self._queue)

    def submit(self, item: I, on_start: Callable[[], None] | None = None) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        job = _Job(item, fut, self._key(item), time.perf_counter(), on_start)
        with self._cond:
            if self._closed:
                raise RuntimeError("the Whisper batcher is closed")
            self._queue.append(job)
            self._cond.notify()
        return fut

    def close(self, wait: bool = False) -> None:
        """Stop the workers after the batches in progress; requests still queued are cancelled."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            job.future.cancel()
        if wait:
            for t in self._threads:
                t.join()

    # ------------------------------------------------------------------ workers
    def _compatible(self, key: Hashable) -> list[_Job[I]]:
        return [j for j in self._queue if j.key == key]

    def _take(self) -> list[_Job[I]] | None:
        with self._cond:
            self._idle += 1
            try:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                if self.window_s:  # gather: the oldest request waits at most window_s for company
                    while True:
                        head = self._queue[0]
                        left = head.submitted + self.window_s - time.perf_counter()
                        if left <= 0 or len(self._compatible(head.key)) >= self.max_batch or self._closed:
                            break
                        self._cond.wait(left)
                        if not self._queue:
                            return []
                    if self._closed:
                        return None
                head = self._queue[0]
                same = self._compatible(head.key)
                n = self.max_batch
                if self.share and self._idle > 1:  # leave the other idle workers a fair part
                    n = min(n, math.ceil(len(same) / self._idle))
                batch = same[:n]
                taken = {id(j) for j in batch}
                self._queue = deque(j for j in self._queue if id(j) not in taken)
                if self._queue:
                    self._cond.notify()  # another idle worker may take the rest
            finally:
                self._idle -= 1
        now = time.perf_counter()
        started = []
        for j in batch:
            if j.future.set_running_or_notify_cancel():  # False: cancelled while queued
                j.started = now
                started.append(j)
        for j in started:
            if j.on_start is not None:
                try:
                    j.on_start()
                except Exception:  # pragma: no cover - a caller's callback must not stop the batch
                    log.exception("on_start callback failed")
        return started

    def _work(self, name: str) -> None:
        name_thread(name)
        while True:
            try:
                batch = self._take()
            except Exception:  # pragma: no cover - a bug here must not leave callers waiting forever
                log.exception("Whisper batcher: could not form a batch")
                self.close()
                return
            if batch is None:
                return
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[_Job[I]]) -> None:
        n = len(batch)
        try:
            results = list(self._run([j.item for j in batch]))
            if len(results) != n:
                raise RuntimeError(f"batch of {n} returned {len(results)} results")
        except BaseException as e:  # noqa: BLE001 - delivered to the callers, the worker goes on
            with self._cond:
                self.stats.failed_batches += 1
            err = BatchError(f"Whisper batch of {n} request{'s' if n > 1 else ''} failed: {type(e).__name__}: {e}")
            err.__cause__ = e
            log.warning("%s", err)
            for j in batch:
                j.future.set_exception(err)
            if not isinstance(e, Exception):
                raise
            return
        finally:
            with self._cond:
                self.stats.batches += 1
                self.stats.items += n
                self.stats.largest = max(self.stats.largest, n)
                self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
        for j, r in zip(batch, results):
            if isinstance(r, BaseException):
                j.future.set_exception(r)
            else:
                j.future.set_result(r)


# ---------------------------------------------------------------------- Whisper
@dataclass(eq=False)
class Prepared:
    """One decode, ready for the model: what ``SharedWhisper._prepare`` computes from the audio."""

    mel: np.ndarray  # [n_mels, frames]: the utterance's log-mel, zero-padded to its window
    prompt_ids: list[int]
    max_length: int  # prompt + new tokens
    beam: int
    audio_s: float
    prompt: str | None = None
    queued: float = 0.0  # perf_counter when submitted

    @property
    def frames(self) -> int:
        return int(self.mel.shape[-1])


def batch_key(p: Prepared, bucket_frames: int, spread_frames: int) -> Hashable:
    """Requests with equal keys can share a batch (see the module docstring)."""
    window = p.frames if bucket_frames else p.frames // max(1, spread_frames)
    return (p.beam, len(p.prompt_ids), window)


class WhisperBatch:
    """Runs a batch of ``Prepared`` requests on a faster-whisper ``WhisperModel``'s CTranslate2 model.

    ``finish(enc_one, prepared, first)`` (``SharedWhisper._finish``) judges each first-pass
    result and runs the bounded fallback decode of that request alone if needed; it returns
    whatever the caller's future should hold.
    """

    def __init__(self, model: Any, common: dict[str, Any], finish: Callable[[Any, Prepared, Any], Any],
                 *, encode_each: bool = ENCODE_EACH, before: Callable[[], None] | None = None) -> None:
        self.model = model  # ctranslate2.models.Whisper
        self.common = common  # generate() options shared by every request (suppress_tokens, …)
        self.finish = finish
        self.encode_each = encode_each
        self.before = before  # called once per batch in the worker thread (fault injection)
        self.encode_calls = 0
        self.generate_calls = 0

    def encode(self, mels: np.ndarray) -> np.ndarray:
        """[batch, n_mels, frames] -> [batch, frames // 2, d_model] float32 (on the CPU)."""
        import ctranslate2

        if self.encode_each and len(mels) > 1:
            outs = []
            for m in mels:
                self.encode_calls += 1
                outs.append(np.array(self.model.encode(ctranslate2.StorageView.from_array(m[None]), to_cpu=True)))
            return np.concatenate(outs)
        self.encode_calls += 1
        return np.array(self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)),
                                          to_cpu=True))

    def __call__(self, items: list[Prepared]) -> list[Any]:
        import ctranslate2

        if self.before is not None:
            self.before()
        if len(items) == 1:  # alone: exactly the one-at-a-time path, no copies
            p = items[0]
            self.encode_calls += 1
            sv = self.model.encode(ctranslate2.StorageView.from_array(p.mel[None]))
            self.generate_calls += 1
            first = self.model.generate(sv, [p.prompt_ids], beam_size=p.beam, max_length=p.max_length,
                                        num_hypotheses=n_best(p.beam), **self.common)[0]
            try:
                return [self.finish(lambda: sv, p, first)]
            except Exception as e:
                return [e]
        frames = max(p.frames for p in items)
        mels = np.zeros((len(items), items[0].mel.shape[0], frames), np.float32)
        for i, p in enumerate(items):
            mels[i, :, : p.frames] = p.mel
        enc = self.encode(mels)
        self.generate_calls += 1
        firsts = self.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(enc)), [p.prompt_ids for p in items],
            beam_size=items[0].beam, max_length=max(p.max_length for p in items),
            num_hypotheses=n_best(items[0].beam), **self.common)
        out: list[Any] = []
        for i, (p, first) in enumerate(zip(items, firsts)):
            try:
                out.append(self.finish(lambda i=i: ctranslate2.StorageView.from_array(enc[i:i + 1]), p, first))
            except Exception as e:  # this request only
                out.append(e)
        return out
