"""``callbot/heap.py``: long-lived objects frozen out of the cyclic GC, never while a call is in progress."""

from __future__ import annotations

import asyncio
import gc

import pytest

from callbot.heap import HeapFreezer


@pytest.fixture(autouse=True)
def _unfreeze():
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


async def test_freezes_at_once_without_calls():
    gc.unfreeze()
    kept = [[i] for i in range(1000)]  # long-lived, tracked by the collector
    assert HeapFreezer(lambda: 0).freeze()
    assert gc.get_freeze_count() >= len(kept)


async def test_waits_for_the_last_call_to_end():
    gc.unfreeze()
    calls = [2]
    heap = HeapFreezer(lambda: calls[0])
    assert not heap.freeze() and heap.pending and gc.get_freeze_count() == 0  # a flow reload during calls
    calls[0] = 1
    heap.call_ended()  # one call still up: nothing yet
    await asyncio.sleep(1.1)
    assert heap.pending and gc.get_freeze_count() == 0
    calls[0] = 0
    heap.call_ended()  # the last one: frozen a second later
    assert heap.pending
    await asyncio.sleep(1.1)
    assert not heap.pending and gc.get_freeze_count() > 0


async def test_a_call_ending_with_nothing_pending_does_nothing():
    gc.unfreeze()
    heap = HeapFreezer(lambda: 0)
    heap.call_ended()
    await asyncio.sleep(0)
    assert not heap.pending and gc.get_freeze_count() == 0
