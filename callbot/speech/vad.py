"""Silero VAD with one ONNX session per process.

pipecat's ``SileroVADAnalyzer`` builds an ``InferenceSession`` per instance, i.e. per
call: 50-70 ms on the event loop at every answer (it delayed the greeting of every
call, and of all other calls meanwhile) and a few MB each. The session is stateless;
the recurrent state and context live in ``SileroOnnxModel`` (``_state``, ``_context``),
so each call gets its own small model object around the shared session. onnxruntime
allows concurrent ``run`` calls on one session.

Also shared: the thread that scores audio. pipecat gives each analyzer its own
one-thread executor (one thread per call); one small pool serves all calls (each call
awaits its own windows in order, so per-call ordering is kept).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams

_lock = threading.Lock()
_session = None
_executor: ThreadPoolExecutor | None = None


def _shared() -> tuple[object, ThreadPoolExecutor]:
    global _session, _executor
    with _lock:
        if _session is None:
            from importlib import resources

            path = str(resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx"))
            _session = SileroOnnxModel(path, force_onnx_cpu=True).session
            _executor = ThreadPoolExecutor(2, thread_name_prefix="vad")
        return _session, _executor  # type: ignore[return-value]


def preload() -> None:
    """Load the shared session now (server start-up), not at the first call."""
    _shared()


class SharedSileroVAD(SileroVADAnalyzer):
    """``SileroVADAnalyzer`` over the process-wide session; per-call state only."""

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

    async def cleanup(self) -> None:
        # the executor is shared: do not let VADAnalyzer.cleanup shut it down
        self._executor = ThreadPoolExecutor(1)
        await super().cleanup()
