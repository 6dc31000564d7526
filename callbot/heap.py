"""What start-up builds for the life of the process, taken out of the cyclic garbage collector's sight.

Models, flows and the intent recogniser's lexical index are ~200 000 Python objects (780 000
references). CPython's full (generation 2) collection walks every tracked object, so one ran for
100-140 ms of CPU **on the event loop** whenever the calls' allocations triggered it: every call in
progress stalled (``tests/e2e/test_event_loop.py``; measured with ``callbot_testing/loopwatch.py``).
``gc.freeze()`` moves them to the permanent generation: still freed by reference counting, never
walked again; a full collection then walks only what the calls in progress have made (2-5 ms of
CPU at 1-3 calls, ~15 ms at 10 in asyncio debug mode). Frozen objects that later become *cyclic* garbage are never reclaimed, so we freeze only
when no call is in progress (after a ``gc.collect()``): at start-up, and after a flow reload once
the last call of the moment has ended.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class HeapFreezer:
    def __init__(self, calls_in_progress: Callable[[], int]) -> None:
        self._calls = calls_in_progress
        self.pending = False

    def freeze(self) -> bool:
        """Collect and freeze now if no call is in progress, else as soon as the last one ends."""
        if self._calls():
            self.pending = True
            return False
        self.pending = False
        t0 = time.perf_counter()
        gc.collect()
        gc.freeze()
        log.info("%d long-lived objects out of the cyclic GC (%.0f ms)", gc.get_freeze_count(),
                 (time.perf_counter() - t0) * 1000)
        return True

    def call_ended(self) -> None:
        """A call has ended: a freeze left pending runs a second later (the call's objects released by then)."""
        if self.pending:
            asyncio.get_running_loop().call_later(1.0, lambda: self.pending and self.freeze())
