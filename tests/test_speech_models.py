"""Whisper model folder: bundled reassembly and asr_model validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.config import Settings
from callbot.errors import ModelError
from callbot.speech import models


def test_reassembly_size_progress_and_idempotence(tmp_path: Path) -> None:
    settings = Settings.load(cache_dir=tmp_path)
    expected = sum(p.stat().st_size for p in models.bundled_parts())
    calls: list[tuple[str, float]] = []

    out = models.whisper_model_dir(settings, progress=lambda label, f: calls.append((label, f)))

    assert out == tmp_path / "models" / "whisper-base-ct2"
    assert (out / "model.bin").stat().st_size == expected == 145_217_532
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (out / name).is_file()
    assert not list(out.glob("*.tmp*")), "temporary files left behind"
    fractions = [f for _, f in calls]
    assert len(fractions) > 2 and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)

    # Second run: nothing rewritten, progress still reports completion.
    mtime = (out / "model.bin").stat().st_mtime_ns
    calls.clear()
    assert models.whisper_model_dir(settings, progress=lambda label, f: calls.append((label, f))) == out
    assert (out / "model.bin").stat().st_mtime_ns == mtime
    assert calls == [("whisper-base", 1.0)]

    # A truncated model.bin (crash from an older version, disk full…) is rebuilt.
    with open(out / "model.bin", "r+b") as f:
        f.truncate(1000)
    models.whisper_model_dir(settings)
    assert (out / "model.bin").stat().st_size == expected


def test_configured_model_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a folder"):
        models.whisper_model_dir(Settings.load(asr_model=tmp_path / "nope", cache_dir=tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="missing model.bin"):
        models.whisper_model_dir(Settings.load(asr_model=bad, cache_dir=tmp_path))
    (bad / "model.bin").write_bytes(b"x")
    (bad / "tokenizer.json").write_text("{}")
    assert models.whisper_model_dir(Settings.load(asr_model=bad, cache_dir=tmp_path)) == bad
