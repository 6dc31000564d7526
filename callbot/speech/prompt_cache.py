"""Pre-rendered telephone audio for the flow's static prompts.

Most of what a switchboard says is fixed text (greeting, menus, opening hours).
Synthesising it once at start-up and replaying bytes makes the first audio of a
reply instant, whatever the engine's speed, and keeps CPU for Whisper.

Audio is stored at the pipeline output rate (8 kHz PCM16 mono), resampled with
soxr (a band-limited resampler shipped with pipecat); naive decimation would
alias everything above 4 kHz back into the band. The key is a hash of the voice
identity, the output rate and the normalised text, so changing voice never
replays the old one. An optional on-disk copy makes restarts instant.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from callbot.constants import PIPELINE_OUT_RATE
from callbot.speech.engines import Voice

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _WS.sub(" ", text).strip()


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Band-limited resampling of PCM16 mono (soxr VHQ; numpy-free fallback is not offered on purpose)."""
    if in_rate == out_rate or not pcm:
        return pcm
    import soxr

    a = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(a, in_rate, out_rate, quality="VHQ").astype(np.int16, copy=False).tobytes()


class PromptCache:
    """Memory (+ optional disk) cache of synthesised prompts at ``out_rate``.

    ``get`` never synthesises; ``render`` always does (without storing);
    ``get_or_render`` does both. All methods are synchronous and thread-safe.
    """

    def __init__(self, voice: Voice, out_rate: int = PIPELINE_OUT_RATE, disk_dir: Path | str | None = None) -> None:
        self.voice = voice
        self.out_rate = out_rate
        self._mem: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.disk_dir = Path(disk_dir).expanduser() if disk_dir else None
        if self.disk_dir:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", voice.key)
            self.disk_dir = self.disk_dir / f"{safe}-{out_rate}"
            self.disk_dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def key(self, text: str) -> str:
        raw = f"{self.voice.key}\0{self.voice.sample_rate}\0{self.out_rate}\0{normalize_text(text)}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    def _disk_path(self, key: str) -> Path | None:
        return self.disk_dir / f"{key}.pcm" if self.disk_dir else None

    def get(self, text: str) -> bytes | None:
        """Cached 8 kHz PCM16 for ``text``, or None."""
        k = self.key(text)
        pcm = self._mem.get(k)
        if pcm is None and (path := self._disk_path(k)) is not None:
            try:
                pcm = path.read_bytes()
            except OSError:
                pcm = None
            if pcm is not None:
                with self._lock:
                    self._mem[k] = pcm
        if pcm is None:
            self.misses += 1
        else:
            self.hits += 1
        return pcm

    def render(self, text: str) -> bytes:
        """Synthesise and resample ``text`` now (not stored)."""
        return resample(self.voice.synthesize(normalize_text(text)), self.voice.sample_rate, self.out_rate)

    def put(self, text: str, pcm: bytes) -> None:
        k = self.key(text)
        with self._lock:
            self._mem[k] = pcm
        if (path := self._disk_path(k)) is not None:
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
            try:
                tmp.write_bytes(pcm)
                os.replace(tmp, path)
            except OSError as e:  # a read-only cache must not stop the bot
                log.warning("prompt cache: cannot write %s: %s", path, e)
                tmp.unlink(missing_ok=True)

    def get_or_render(self, text: str, store: bool = True) -> bytes:
        pcm = self.get(text)
        if pcm is None:
            pcm = self.render(text)
            if store:
                self.put(text, pcm)
        return pcm

    def warm(self, texts: Iterable[str], progress: Callable[[str, float], None] | None = None) -> dict[str, float]:
        """Render every distinct non-empty text not cached yet. Returns simple stats."""
        todo = list(dict.fromkeys(normalize_text(t) for t in texts if t and t.strip()))
        t0 = time.perf_counter()
        rendered = 0
        audio_s = 0.0
        for i, text in enumerate(todo, 1):
            if self.get(text) is None:
                pcm = self.render(text)
                self.put(text, pcm)
                rendered += 1
                audio_s += len(pcm) / 2 / self.out_rate
            if progress:
                progress("prompts", i / len(todo))
        wall = time.perf_counter() - t0
        log.info("prompt cache warm: %d prompts, %d synthesised (%.1f s of audio) in %.2f s with %s",
                 len(todo), rendered, audio_s, wall, self.voice.name)
        return {"prompts": len(todo), "rendered": rendered, "audio_s": audio_s, "wall_s": wall}

    def __len__(self) -> int:
        return len(self._mem)
