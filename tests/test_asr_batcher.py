"""Whisper decodes batched across calls (``callbot/speech/batcher.py``, ``asr_batching``).

The ``MicroBatcher`` itself with a fake model (grouping, bursts, failures, cancellation, the
event loop), then ``SharedWhisper`` with the real Whisper base on the caller fixtures: batched
transcripts are word for word (and score for score) those of one decode at a time with the
same window, a burst takes fewer model calls than requests, and a failed batch becomes a
``StageFault`` for its callers only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from callbot.config import Settings
from callbot.errors import StageFault
from callbot.speech.batcher import BatchError, MicroBatcher

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "audio"
PROMPT = "Mairie de Saint-Martin, mairie, état civil, carte d'identité, passeport, lampadaire"


class FakeModel:
    """``run`` for a MicroBatcher: records each batch, takes ``secs`` per call, fails on request."""

    def __init__(self, secs: float = 0.05) -> None:
        self.secs = secs
        self.batches: list[list[object]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[object]) -> list[object]:
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.secs)
        if any(i == "boom" for i in items):
            raise RuntimeError("the model fell over")
        return [ValueError(f"bad item {i}") if i == "bad" else f"done:{i}" for i in items]


def _batcher(model: FakeModel, **kw) -> MicroBatcher:
    kw.setdefault("key", lambda item: str(item).split("-")[0])
    return MicroBatcher(model, **kw)


# ---------------------------------------------------------------- MicroBatcher, fake model
def test_a_burst_is_served_in_fewer_model_calls_than_requests() -> None:
    model = FakeModel(0.1)
    b = _batcher(model, workers=1, max_batch=8)
    try:
        futs = [b.submit(f"a-{i}") for i in range(12)]
        assert [f.result(timeout=10) for f in futs] == [f"done:a-{i}" for i in range(12)]
    finally:
        b.close(wait=True)
    assert len(model.batches) < 12
    assert max(len(x) for x in model.batches) == 8, "what queued while the first call ran goes in one batch"
    assert b.stats.items == 12 and b.stats.batches == len(model.batches)


def test_only_requests_with_the_same_key_share_a_batch() -> None:
    model = FakeModel(0.05)
    b = _batcher(model, workers=1, max_batch=16, window_s=0.05)
    try:
        futs = [b.submit(f"{k}-{i}") for i in range(6) for k in ("x", "y", "z")]
        for f in futs:
            f.result(timeout=10)
    finally:
        b.close(wait=True)
    assert all(len({str(i).split("-")[0] for i in batch}) == 1 for batch in model.batches)
    assert len(model.batches) <= 6  # at most one batch per key after the first gathering window


def test_gathering_window_waits_for_company() -> None:
    model = FakeModel(0.01)
    b = _batcher(model, workers=1, max_batch=8, window_s=0.2)
    try:
        futs = []
        for i in range(4):  # a request every 10 ms: all inside the first one's window
            futs.append(b.submit(f"a-{i}"))
            time.sleep(0.01)
        for f in futs:
            f.result(timeout=10)
    finally:
        b.close(wait=True)
    assert [len(x) for x in model.batches] == [4]


def test_idle_workers_share_a_burst() -> None:
    model = FakeModel(0.2)
    b = _batcher(model, workers=2, max_batch=8, window_s=0.05)
    try:
        futs = [b.submit(f"a-{i}") for i in range(8)]
        for f in futs:
            f.result(timeout=10)
    finally:
        b.close(wait=True)
    assert sorted(len(x) for x in model.batches) == [4, 4], "both cores decode: half of the burst each"


def test_a_failed_batch_fails_only_its_own_requests() -> None:
    model = FakeModel(0.05)
    b = _batcher(model, workers=1, max_batch=8)
    try:
        block = b.submit("w-0")  # keeps the worker busy while the next ones queue
        good = [b.submit(f"a-{i}") for i in range(3)]
        doomed = [b.submit(x) for x in ("boom", "boom-1", "boom-2")]
        bad_item = b.submit("a-bad")
        bad = b.submit("bad")  # key "bad": alone in its batch, and its result is an exception
        results = [f.result(timeout=10) for f in [block, *good]]
        assert results == ["done:w-0", "done:a-0", "done:a-1", "done:a-2"]
        for f in doomed:
            with pytest.raises(BatchError, match=r"batch of 3 requests failed: RuntimeError: the model fell over"):
                f.result(timeout=10)
            assert isinstance(f.exception().__cause__, RuntimeError)
        assert bad_item.result(timeout=10) == "done:a-bad"
        with pytest.raises(ValueError, match="bad item bad"):  # one request's own error: that request only
            bad.result(timeout=10)
        assert b.submit("a-after").result(timeout=10) == "done:a-after", "the worker goes on"
    finally:
        b.close(wait=True)
    assert b.stats.failed_batches == 1


def test_a_request_cancelled_while_queued_is_not_decoded() -> None:
    model = FakeModel(0.2)
    b = _batcher(model, workers=1)
    started: list[str] = []
    try:
        first = b.submit("a-0", on_start=lambda: started.append("a-0"))
        time.sleep(0.05)  # the worker has taken it
        second = b.submit("a-1", on_start=lambda: started.append("a-1"))
        assert second.cancel()
        assert first.result(timeout=10) == "done:a-0"
        assert b.submit("a-2").result(timeout=10) == "done:a-2"
    finally:
        b.close(wait=True)
    assert ["a-1" in batch for batch in model.batches] == [False, False]
    assert started == ["a-0"]
    assert not first.cancel(), "a request in a batch finishes there"


def test_close_cancels_what_is_still_queued() -> None:
    model = FakeModel(0.2)
    b = _batcher(model, workers=1)
    first = b.submit("a-0")
    time.sleep(0.05)
    queued = b.submit("a-1")
    b.close(wait=True)
    assert first.result(timeout=1) == "done:a-0"
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit("a-2")


async def test_waiting_for_a_batch_does_not_block_the_event_loop() -> None:
    model = FakeModel(0.3)
    b = _batcher(model, workers=1, max_batch=4)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(asyncio.wrap_future(b.submit(f"a-{i}")) for i in range(9)))
    finally:
        tick.cancel()
        b.close(wait=True)
    assert results == [f"done:a-{i}" for i in range(9)]
    assert len(lags) > 50 and max(lags) < 0.1, f"event loop held for {max(lags) * 1000:.0f} ms"


# ------------------------------------------------------------ SharedWhisper, real Whisper base
def _clips() -> list[bytes]:
    from callbot_testing.audio import read_wav

    rng = np.random.default_rng(0)
    out = []
    for path in sorted(FIXTURES.glob("*.wav")):  # as a segment: ~1 s of lead-in, 0.5 s after
        pcm = read_wav(path, 16000)
        out.append(np.concatenate([rng.normal(0, 20, 16000).astype(np.int16), pcm,
                                   rng.normal(0, 20, 8000).astype(np.int16)]).tobytes())
    return out


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return _clips()


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    from callbot.speech.asr import SharedWhisper

    w = SharedWhisper(Settings.load(cache_dir=tmp_path_factory.mktemp("cache")), batching=True)
    yield w
    w.close()


@pytest.fixture
def batched(whisper):
    whisper.set_batching(True, window_s=0.02)  # deterministic bursts: the whole burst in the first batches
    yield whisper
    whisper.set_batching(True)


def test_asr_batching_setting(monkeypatch) -> None:
    assert Settings.load().asr_batching is False  # off until it measures better (scripts/bench-asr-batch)
    monkeypatch.setenv("CALLBOT_ASR_BATCHING", "1")
    assert Settings.load().asr_batching is True


@pytest.mark.parametrize("beam", [1, 5])
def test_batched_transcripts_are_those_of_one_decode_at_a_time(batched, clips, beam, monkeypatch) -> None:
    from callbot.speech import asr

    monkeypatch.setattr(asr, "FALLBACK_TEMPERATURE", 0.0)  # the sampled fallback is random either way
    w = batched
    w.set_batching(False, bucket_s=1.0)  # one at a time, same windows
    alone = [w.transcribe(c, PROMPT, beam_size=beam) for c in clips]
    assert all(r.batch == 0 for r in alone)
    w.set_batching(True, bucket_s=1.0, window_s=0.05)
    with concurrent.futures.ThreadPoolExecutor(len(clips)) as pool:  # a burst from as many callers
        together = list(pool.map(lambda c: w.transcribe(c, PROMPT, beam_size=beam), clips))
    assert max(r.batch for r in together) > 1, "the burst must have been batched"
    assert w.batcher.stats.batches < len(clips)
    for a, b in zip(alone, together):
        assert (b.raw_text, b.avg_logprob, b.no_speech_prob) == (a.raw_text, a.avg_logprob, a.no_speech_prob)
        assert (b.text, b.rejected, b.beam, b.window) == (a.text, a.rejected, a.beam, a.window)
    assert sum("horaires" in r.text.lower() for r in together) == 1


def test_padding_to_the_longest_keeps_equal_windows_as_they_were(batched, clips, monkeypatch) -> None:
    """bucket_s=0: no rounding; a batch of equal windows decodes exactly as the production path."""
    from callbot.speech import asr

    monkeypatch.setattr(asr, "FALLBACK_TEMPERATURE", 0.0)
    w = batched
    w.set_batching(False)
    assert w.window_bucket_s == 0
    alone = w.transcribe(clips[5], PROMPT, beam_size=1)
    w.set_batching(True, bucket_s=0.0, window_s=0.05)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda c: w.transcribe(c, PROMPT, beam_size=1), [clips[5]] * 6))
    assert max(r.batch for r in together) > 1
    assert {(r.raw_text, r.avg_logprob) for r in together} == {(alone.raw_text, alone.avg_logprob)}


async def test_concurrent_calls_share_model_calls(batched, clips, monkeypatch) -> None:
    from callbot.speech import asr

    monkeypatch.setattr(asr, "FALLBACK_TEMPERATURE", 0.0)  # same clip, same text: no sampling
    w = batched
    run = w._batch_run
    calls0 = run.generate_calls
    same_length = [clips[i] for i in (1, 2, 7)] * 3  # three calls each at three points of a turn
    results = await asyncio.gather(*(w.atranscribe(c, PROMPT) for c in same_length))
    calls = run.generate_calls - calls0
    assert calls < len(same_length), f"{len(same_length)} decodes took {calls} generate calls"
    assert max(r.batch for r in results) >= 3
    assert all(r.text for r in results)
    assert [r.raw_text for r in results[:3]] == [r.raw_text for r in results[3:6]] == [r.raw_text for r in results[6:]]
    assert (w.waiting, w.running, w.speculating) == (0, 0, 0)
    assert w.idle()


async def test_a_failed_batch_is_a_stage_fault_for_its_callers_only(batched, clips) -> None:
    w = batched
    run = w._batch_run
    failed = threading.Event()

    def fail_once() -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("CTranslate2 exploded")

    run.before = fail_once
    try:
        outcomes = await asyncio.gather(*(w.atranscribe(c, PROMPT) for c in clips[:3]), return_exceptions=True)
        after = await w.atranscribe(clips[5], PROMPT)
    finally:
        run.before = None
    faults = [o for o in outcomes if isinstance(o, BaseException)]
    assert faults and all(isinstance(f, StageFault) and f.kind == "error" for f in faults)
    assert all("batch of" in str(f) and "CTranslate2 exploded" in str(f) for f in faults)
    assert "horaires" in after.text.lower(), "the next batch decodes normally"
    assert (w.waiting, w.running) == (0, 0)


async def test_batched_decodes_leave_the_event_loop_free(batched, clips) -> None:
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(batched.atranscribe(c, PROMPT) for c in clips[:6]))
    finally:
        tick.cancel()
    assert all(r.asr_ms > 0 for r in results)
    slowest = max(r.asr_ms for r in results) / 1000
    # Features and the model run in worker threads: the loop is late by far less than a decode
    # (generous, the test machines are shared).
    assert max(lags) < min(0.15, slowest / 2), f"event loop held for {max(lags) * 1000:.0f} ms"


async def test_cancelled_while_queued_costs_nothing(batched, clips) -> None:
    w = batched
    w.set_batching(True, window_s=0.3)  # the first request waits for company: the second one is still queued
    items0 = w.batcher.stats.items
    first = asyncio.ensure_future(w.atranscribe(clips[1], PROMPT))
    second = asyncio.ensure_future(w.atranscribe(clips[2], PROMPT))
    await asyncio.sleep(0.05)
    assert w.waiting == 2
    second.cancel()
    res = await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert res.text and res.batch == 1
    assert w.batcher.stats.items - items0 == 1
    assert (w.waiting, w.running) == (0, 0)
