"""scripts/bench-understanding: the spoken chain on three utterances, and its output format."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from callbot_testing.bench.understanding import align, norm_words

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    ("utterance", "intent"),
    ("je voudrais un acte de naissance", "etat_civil_naissance"),
    ("je voudrais parler à un agent", "parler_agent"),
    ("il y a un lampadaire en panne dans ma rue", "eclairage"),
    ("au revoir", "au_revoir"),  # left out by --limit 3
]


def test_word_errors_ignore_case_and_punctuation() -> None:
    assert norm_words("Bonjour, c'est l'état-civil ?") == ["bonjour", "c", "est", "l", "état", "civil"]
    assert norm_words("J'ai 16 ans", folded=True) == ["j", "ai", "seize", "ans"]
    errors, edits = align(norm_words("le skate park il est où"), norm_words("Le skatepark, il est tout."))
    assert errors == 3 and len(edits) == 3 and edits[-1] == ("où", "tout")


@pytest.mark.skipif(not shutil.which("pico2wave"), reason="needs pico2wave (libttspico-utils) for French audio")
def test_bench_on_three_utterances(tmp_path) -> None:
    tsv = tmp_path / "mini.tsv"
    tsv.write_text("".join(f"{u}\t{i}\n" for u, i in ROWS), encoding="utf-8")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench-understanding"), "--tsv", str(tsv), "--limit", "3",
         "--cache-dir", str(tmp_path / "audio")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"3 utterances from {tsv}; flow mairie version ")
    assert re.match(r"audio: 3 synthesised \([\d.]+ s\), 0 cached in ", lines[1])
    assert lines[2].startswith("caller voice: mb-fr1; whisper: window ") and "prompt: " in lines[2]
    miss = re.compile(r"miss  \w+ +-> +(\w+|\(no match\)|\(nothing heard\)|\(clarify [\w |]+\)) +\d\.\d\d  "
                      r"\[(asr|recogniser|rejected)\]$")
    for i, line in enumerate(lines):
        if line.startswith("miss  "):  # miss EXPECTED -> PREDICTED CONF [CAUSE], then what was said and heard
            assert miss.match(line), line
            assert lines[i + 1].startswith("      said:  ") and lines[i + 2].startswith("      heard: ")
    assert any(re.match(r"miss causes: asr \d+, recogniser \d+, rejected \d+ ", line) for line in lines)
    assert any(re.match(r"ASR WER: \d\.\d{3} \(\d+/\d+ words\); folded ", line) for line in lines)
    assert any(re.match(r"ASR ms: p50 \d+, p95 \d+, max \d+$", line) for line in lines)
    assert "text accuracy (same rows): 1.000 (3/3)" in lines
    m = re.fullmatch(r"spoken accuracy: (\d\.\d{3}) \((\d)/3\)", lines[-1])
    assert m and float(m.group(1)) == pytest.approx(int(m.group(2)) / 3, abs=1e-3)
    assert int(m.group(2)) >= 1  # the chain works end to end (Whisper base can slip on short phrases)
    assert len(list((tmp_path / "audio").glob("*.pcm"))) == 3


def test_bench_nlu_beside_a_busy_process(tmp_path) -> None:
    """scripts/bench-nlu runs, prints the CPU flags and p50/p95, and stops its spinning neighbour."""
    tsv = tmp_path / "mini.tsv"
    tsv.write_text("".join(f"{u}\t{i}\n" for u, i in ROWS[:4]), encoding="utf-8")
    proc = subprocess.run([str(ROOT / "scripts" / "bench-nlu"), "--tsv", str(tsv), "--busy", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^cpu: .*; \d+ CPUs$", proc.stdout, re.M), proc.stdout
    m = re.search(r"3 sentences from mini.tsv beside 1 busy process\(es\) \(OMP_WAIT_POLICY=PASSIVE\): .* "
                  r"p50 ([\d.]+) ms, p95 ([\d.]+) ms", proc.stdout)
    assert m, proc.stdout
    assert float(m.group(1)) <= float(m.group(2))
    spinning = subprocess.run(["pgrep", "-f", "while time.time\\(\\) < t: pass"], capture_output=True, text=True)
    assert not spinning.stdout.strip()
