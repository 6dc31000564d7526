"""Runs every YAML conversation test in tests/flows/ (also: ``callbot flows test``)."""

from pathlib import Path

import pytest

from callbot.flows.testing import run_file

FILES = sorted((Path(__file__).parent / "flows").glob("*.yaml"))
CASES = [(f, r) for f in FILES for r in run_file(f)]


@pytest.mark.parametrize("path,result", CASES, ids=[f"{f.stem}: {r.name}" for f, r in CASES])
def test_conversation(path, result):
    assert result.ok, "\n".join(result.problems)
