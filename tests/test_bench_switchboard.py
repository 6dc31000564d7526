"""scripts/bench-switchboard with tiny sizes: it runs end to end, its checks pass, it prints its numbers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.timeout(120),
]


def test_bench_switchboard_tiny(tmp_path) -> None:
    out_json = tmp_path / "sb.json"
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench-switchboard"), "--calls", "2", "--waiting", "2", "--seconds", "4", "--beep",
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: scripts/bench-switchboard --calls 2 --waiting 2 --seconds 4 --beep")
    assert re.search(r"^cpu: .+; \d+ CPUs; load average ", out, re.M)
    for name in ("entry -> offer (Redis)", "accept -> agent phone", "event-loop lag"):
        assert re.search(rf"^  {re.escape(name)} +p50 +\d+ ms  p95 +\d+ ms  max +\d+ ms  \(n=\d+\)", out, re.M), name
    assert "agent heard the caller (1 kHz) on 2/2 calls" in out
    assert re.search(r"bot process CPU: [\d.]+ % of one core over 4 s", out)
    assert "2/2 callers got audio" in out and "queue empty; abandoned events 2/2" in out
    assert out.rstrip().endswith("result: OK")
    data = json.loads(out_json.read_text())
    assert data["transfer"]["entry_to_offer_s"]["n"] == 2 and data["waiting"]["queue_empty"] is True
    assert data["failed"] == []
