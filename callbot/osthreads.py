"""OS names for the server's threads, so ``top -H``, ``ps -L`` and ``scripts/bench-load`` can
tell the event loop (``callbot``), the VAD (``vad``) and Whisper (``whisper…``) apart.

Python names its threads only for itself; the kernel sees every one as ``python``. Linux
threads inherit the name of the thread that creates them, so naming the thread that loads
CTranslate2 also names its native worker and OpenMP threads. A no-op where ``prctl`` is missing.

``prestart`` starts a thread pool's threads at start-up, so that no call waits for one to start.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading
from concurrent.futures import Executor

log = logging.getLogger(__name__)

_PR_SET_NAME = 15
NAME_MAX = 15  # bytes, the kernel's limit


def name_thread(name: str) -> None:
    """Give the calling thread this OS name (truncated to 15 bytes)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:NAME_MAX], 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def default_executor_workers() -> int:
    """Threads of the event loop's default executor (``asyncio.to_thread``): ThreadPoolExecutor's default."""
    return min(32, (os.cpu_count() or 1) + 4)


async def prestart(executor: Executor | None, workers: int) -> None:
    """Start ``workers`` threads of a thread pool now (``None``: the running loop's default executor).

    A ThreadPoolExecutor starts a thread on a ``submit`` that finds none idle, and ``Thread.start()``
    then waits until the new thread has run: on the event loop, in the middle of a call, for as long
    as the new thread waits for a CPU on a busy machine (a 270 ms stall of every call was seen at the
    first moment two decodes overlapped, ``tests/e2e/test_event_loop.py``). Here ``workers`` tasks meet
    at a barrier, so each needs a thread of its own: all are started before the first call.
    """
    barrier = threading.Barrier(workers)
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(loop.run_in_executor(executor, barrier.wait, 10.0) for _ in range(workers)),
                                   return_exceptions=True)
    if any(isinstance(r, BaseException) for r in results):  # a thread was busy elsewhere: best effort
        log.warning("prestart: %d of %d pool threads met; the others start when first needed",
                    sum(not isinstance(r, BaseException) for r in results), workers)
