"""Silero VAD for every call of the process: one ONNX session, scored in batches.

pipecat's ``SileroVADAnalyzer`` builds an ``InferenceSession`` per call (50-70 ms on
the event loop at every answer) and hands every 20 ms audio frame to its own thread,
where one 32 ms window costs one ``session.run``. At 20 calls that was ~1000 thread
hand-offs and ~600 ONNX runs a second: ~40 % of a core (docs/performance.md).

Here the session is shared and the windows of all calls are scored together: a call's
``analyze_audio`` joins the next batch; one thread runs the batch (one ``session.run``
with a row per call, 0.11 ms per window instead of 0.29 ms alone) and then each call's
own state machine (pipecat's ``_run_analyzer``) with the scores it got. A batch gathers
for ``BATCH_WAIT_S`` (8 ms) after its first request, a small delay next to the VAD's
250 ms pause. Per-call state (Silero's recurrent state and context, the VAD state)
stays in the call's analyzer; a call's frames are awaited in order, so its windows
are scored in order.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from callbot.osthreads import name_thread

BATCH_WAIT_S = 0.008  # gathering time before a batch runs (see _Batcher.submit)
# Speech that starts a turn while the bot is silent: a lone "oui" or "non" is 0.2-0.3 s, too short
# for pipecat's defaults (0.2 s of windows with confidence >= 0.7 *and* a smoothed volume >= 0.6,
# which rises slowly). Measured on the fixtures through G.711, 8 frame offsets each: "oui"/"non"
# caught 0/8 with the defaults; 8/8 and 8/8 with 0.1 s and volume 0.3; at -10 dB, 6/8 and 8/8
# (0/8 before). Over the bot's voice, barge-in keeps the params' values: a cough must not cut a prompt.
LISTEN_START_SECS = 0.1
LISTEN_MIN_VOLUME = 0.3

_lock = threading.RLock()
_session = None
_executor: ThreadPoolExecutor | None = None
_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()


def _shared() -> tuple[object, ThreadPoolExecutor]:
    global _session, _executor
    with _lock:
        if _session is None:
            from importlib import resources

            path = str(resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx"))
            _session = SileroOnnxModel(path, force_onnx_cpu=True).session
            _executor = ThreadPoolExecutor(1, thread_name_prefix="vad", initializer=name_thread, initargs=("vad",))
        return _session, _executor  # type: ignore[return-value]


def preload() -> None:
    """Load the shared session now (server start-up), not at the first call."""
    _shared()


def calls_per_batch() -> float:
    """Mean requests per ONNX batch so far on the running loop (benchmarks)."""
    b = _batcher()
    return b.requests / max(1, b.batches)


def _batcher() -> _Batcher:
    loop = asyncio.get_running_loop()
    with _lock:
        b = _batchers.get(loop)
        if b is None:
            b = _batchers[loop] = _Batcher(loop)
        return b


class _Batcher:
    """Collects (analyzer, audio) requests and runs them as one batch in the VAD thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._session, self._executor = _shared()
        self._pending: list[tuple[SharedSileroVAD, bytes, asyncio.Future]] = []
        self._running = False
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        self.requests = 0

    def submit(self, vad: SharedSileroVAD, buffer: bytes) -> asyncio.Future:
        fut = self._loop.create_future()
        self._pending.append((vad, buffer, fut))
        if not self._running and self._timer is None:
            # Frames of different calls arrive spread over the 20 ms frame period: wait a
            # few ms so that one run scores many calls (the VAD's own pause is 250 ms).
            self._timer = self._loop.call_later(BATCH_WAIT_S, self._start)
        return fut

    def _start(self) -> None:
        self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._running = True
        self.batches += 1
        self.requests += len(batch)
        cf = self._executor.submit(self._run, [(v, b) for v, b, _ in batch])
        cf.add_done_callback(lambda f: self._loop.call_soon_threadsafe(self._done, batch, f))

    def _done(self, batch, cf) -> None:
        self._running = False
        exc = cf.exception()
        states = None if exc else cf.result()
        for i, (_v, _b, fut) in enumerate(batch):
            if fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(states[i])
        if self._pending and self._timer is None:
            self._timer = self._loop.call_later(BATCH_WAIT_S, self._start)

    def _run(self, batch: list[tuple[SharedSileroVAD, bytes]]) -> list[VADState]:
        """In the VAD thread: score every full window, then each analyzer's state machine."""
        # Windows each request will consume, in order; a call may (rarely) appear twice.
        data: dict[int, bytearray] = {}
        todo: dict[int, collections.deque] = {}
        vads: dict[int, SharedSileroVAD] = {}
        for vad, buf in batch:
            key = id(vad)
            vads[key] = vad
            d = data.setdefault(key, bytearray(vad._vad_buffer))
            d += buf
        for key, d in data.items():
            n = vads[key]._vad_frames_num_bytes
            todo[key] = collections.deque(bytes(d[i:i + n]) for i in range(0, len(d) - n + 1, n))
        while any(todo.values()):
            keys = [k for k, q in todo.items() if q]
            for sr in {vads[k].sample_rate for k in keys}:  # one window size per ONNX run
                same = [k for k in keys if vads[k].sample_rate == sr]
                self._score([vads[k] for k in same], [todo[k].popleft() for k in same])
        return [vad._run_analyzer(buf) for vad, buf in batch]

    def _score(self, vads: list[SharedSileroVAD], windows: list[bytes]) -> None:
        """One ONNX run for one window of each analyzer; results queue in ``vad._scores``."""
        sr = vads[0].sample_rate
        ctx = 64 if sr == 16000 else 32
        x = np.stack([np.frombuffer(w, np.int16) for w in windows]).astype(np.float32) / 32768.0
        contexts = [v._model._context if v._model._context.shape[-1] == ctx else np.zeros((1, ctx), np.float32)
                    for v in vads]
        x = np.concatenate((np.concatenate(contexts, axis=0), x), axis=1)
        state = np.concatenate([v._model._state for v in vads], axis=1)
        out, new_state = self._session.run(None, {"input": x, "state": state, "sr": np.array(sr, dtype=np.int64)})
        for i, v in enumerate(vads):
            v._model._state = new_state[:, i:i + 1, :].copy()
            v._model._context = x[i:i + 1, -ctx:].copy()
            v._scores.append(float(out[i, 0]))


class SharedSileroVAD(SileroVADAnalyzer):
    """``SileroVADAnalyzer`` scored by the process-wide batcher; per-call state only."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        session, executor = _shared()
        self._executor.shutdown(wait=False)
        self._executor = executor
        model = SileroOnnxModel.__new__(SileroOnnxModel)
        model.session = session
        model.sample_rates = [8000, 16000]
        model.reset_states()
        self._model = model
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._scores: collections.deque[float] = collections.deque()
        self.enabled = True  # False for calls in keypad mode (admission control)
        self.follow_bot(False)

    def set_params(self, params: VADParams) -> None:
        super().set_params(params)
        if not self.sample_rate:
            return
        window = self._vad_frames / self.sample_rate
        self._start_frames = (max(1, round(min(LISTEN_START_SECS, params.start_secs) / window)),
                              self._vad_start_frames)
        self._volumes = (min(LISTEN_MIN_VOLUME, params.min_volume), params.min_volume)
        self.follow_bot(getattr(self, "_bot_talking", False))

    def follow_bot(self, talking: bool) -> None:
        """Start a turn after ``LISTEN_START_SECS`` of speech at ``LISTEN_MIN_VOLUME`` while the bot
        is silent, with the params' values while it talks (barge-in). Only the thresholds change: a
        count in progress carries on (``set_params`` would reset the state)."""
        self._bot_talking = talking
        if talking and self._vad_state == VADState.STARTING:
            return  # speech that began before the prompt is the caller going on, not a barge-in
        self._apply_thresholds()

    def _apply_thresholds(self) -> None:
        frames = getattr(self, "_start_frames", None)
        if frames is None:
            return
        talking = self._bot_talking
        self._vad_start_frames = frames[1] if talking else frames[0]
        volume = self._volumes[1] if talking else self._volumes[0]
        if self._params.min_volume != volume:
            self._params = self._params.model_copy(update={"min_volume": volume})

    def _run_analyzer(self, buffer: bytes) -> VADState:
        state = super()._run_analyzer(buffer)
        frames = getattr(self, "_start_frames", None)
        if self._bot_talking and state != VADState.STARTING and frames and self._vad_start_frames != frames[1]:
            self._apply_thresholds()  # the start that began before the prompt is settled
        return state

    @property
    def quiet_secs(self) -> float:
        """How long the caller has been quiet in a pause the VAD has not closed yet, else 0.

        The recogniser starts decoding early on it (``speech/stt.py``): the words are all
        there well before ``stop_secs`` of quiet ends the segment.
        """
        if self._vad_state != VADState.STOPPING:
            return 0.0
        return self._vad_stopping_count * self._vad_frames / self.sample_rate

    @property
    def speech_starting(self) -> bool:
        """Speech heard but not yet long enough (``start_secs``) for the VAD to report it.

        The flow waits for this to settle before it ends a turn: a caller who resumes after
        a comma is otherwise cut off during the ~0.2 s the VAD takes to confirm.
        """
        return self._vad_state == VADState.STARTING

    async def analyze_audio(self, buffer: bytes) -> VADState:
        if not self.enabled:
            return VADState.QUIET  # keypad-mode call: no speech to detect, no CPU spent
        if self.sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD needs 8 or 16 kHz audio, got {self.sample_rate} Hz")
        return await _batcher().submit(self, bytes(buffer))

    def voice_confidence(self, buffer) -> float:
        """The batch's score for this window (``_run_analyzer`` asks in window order)."""
        confidence = self._scores.popleft() if self._scores else 0.0
        self._maybe_reset_model(confidence)
        return confidence

    async def cleanup(self) -> None:
        # the executor is shared: do not let VADAnalyzer.cleanup shut it down
        self._executor = ThreadPoolExecutor(1)
        await super().cleanup()
