"""OS names for the server's threads, so ``top -H``, ``ps -L`` and ``scripts/bench-load`` can
tell the event loop (``callbot``), the VAD (``vad``) and Whisper (``whisper…``) apart.

Python names its threads only for itself; the kernel sees every one as ``python``. Linux
threads inherit the name of the thread that creates them, so naming the thread that loads
CTranslate2 also names its native worker and OpenMP threads. A no-op where ``prctl`` is missing.
"""

from __future__ import annotations

import ctypes

_PR_SET_NAME = 15
NAME_MAX = 15  # bytes, the kernel's limit


def name_thread(name: str) -> None:
    """Give the calling thread this OS name (truncated to 15 bytes)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:NAME_MAX], 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
