"""Small helpers shared by the seeded fuzzers (tests/test_fuzz_*.py)."""

from __future__ import annotations

from typing import Any


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside nested dicts and lists (the root excluded): the places a mutator can hit."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out
