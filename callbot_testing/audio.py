"""Audio helpers for the test caller: G.711 µ-law, WAV I/O, offline French TTS,
speech-activity detection, and the caller's model of what it *hears*.

Everything here is 8 kHz mono signed 16-bit PCM (numpy int16) unless stated.
µ-law is done with numpy tables (no ``audioop``: deprecated, gone in 3.13).
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = FRAME_SAMPLES / RATE
ULAW_SILENCE = 0xFF  # decodes to 0 (0x7F decodes to -0)
SILENCE_FRAME = bytes([ULAW_SILENCE]) * FRAME_SAMPLES

# Speech detector defaults: comfort noise sits around -60..-50 dBFS, speech and
# tones well above -35 dBFS. A run must last MIN_FRAMES frames (a click is not speech).
THRESHOLD_DBFS = -40.0
MIN_FRAMES = 2

# --------------------------------------------------------------------- µ-law
_BIAS = 0x84


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    exp = (u >> 4) & 0x07
    mant = u & 0x0F
    mag = (((mant << 3) + _BIAS) << exp) - _BIAS
    decode = np.where(u & 0x80, -mag, mag).astype(np.int16)
    # encoder as in the reference g711.c (14-bit magnitude), bit-exact with audioop
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    m = np.minimum(np.abs(x), 8159) + (_BIAS >> 2)
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), m)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((m >> (seg + 1)) & 0x0F))
    encode = ((code ^ mask) & 0xFF).astype(np.uint8)
    return decode, encode


_DECODE, _ENCODE = _build_tables()


def ulaw_decode(data: bytes) -> np.ndarray:
    """µ-law bytes -> int16 PCM."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM -> µ-law bytes."""
    return _ENCODE[pcm.astype(np.int32) + 32768].tobytes()


def ulaw_frames(pcm: np.ndarray) -> list[bytes]:
    """PCM -> 20 ms µ-law frames, the last one padded with silence."""
    data = ulaw_encode(pcm)
    pad = (-len(data)) % FRAME_SAMPLES
    data += bytes([ULAW_SILENCE]) * pad
    return [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]


# ----------------------------------------------------------------- WAV / PCM
def resample(pcm: np.ndarray, src_rate: int, dst_rate: int = RATE) -> np.ndarray:
    if src_rate == dst_rate or len(pcm) == 0:
        return pcm.astype(np.int16)
    try:
        import soxr

        out = soxr.resample(pcm.astype(np.float32), src_rate, dst_rate)
    except ImportError:  # linear interpolation: fine for test audio
        n = int(round(len(pcm) * dst_rate / src_rate))
        out = np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path, rate: int = RATE) -> np.ndarray:
    """Read a PCM WAV (any rate, 8/16-bit, mono or stereo) as int16 mono at ``rate``."""
    with wave.open(str(path), "rb") as w:
        width, channels, src_rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 1:
        pcm = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    else:
        raise ValueError(f"{path}: unsupported sample width {width} (want 16-bit PCM)")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int32)
    return resample(pcm.astype(np.int16), src_rate, rate)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = RATE) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def tone(freq: float = 440.0, seconds: float = 1.0, level: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


# ------------------------------------------------------------------------ TTS
@functools.lru_cache(maxsize=256)
def _synth_cached(text: str, lang: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="callbot-tts-") as tmp:
        out = Path(tmp) / "say.wav"
        if shutil.which("pico2wave"):
            subprocess.run(["pico2wave", "-l", lang, "-w", str(out), text], check=True, capture_output=True)
        elif shutil.which("espeak-ng"):
            log.warning("pico2wave not found: falling back to espeak-ng (less natural French)")
            voice = lang.split("-")[0]
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, capture_output=True)
        else:
            raise RuntimeError("no offline TTS: install pico2wave (libttspico-utils) or espeak-ng")
        return read_wav(out).tobytes()


def synthesize(text: str, lang: str = "fr-FR") -> np.ndarray:
    """French text -> 8 kHz int16 PCM with the offline voice (cached per process)."""
    return np.frombuffer(_synth_cached(text, lang), dtype=np.int16).copy()


# ------------------------------------------------------------ speech activity
def frame_dbfs(pcm: np.ndarray) -> np.ndarray:
    """RMS level of each complete 20 ms frame, in dBFS."""
    n = len(pcm) // FRAME_SAMPLES
    if n == 0:
        return np.zeros(0)
    frames = pcm[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-3) / 32768.0)


def active_frames(pcm: np.ndarray, threshold_dbfs: float = THRESHOLD_DBFS, min_frames: int = MIN_FRAMES) -> np.ndarray:
    """Boolean per 20 ms frame: part of a run of >= ``min_frames`` loud frames."""
    loud = frame_dbfs(pcm) > threshold_dbfs
    return _min_runs(loud, min_frames)


def _min_runs(loud: np.ndarray, min_frames: int) -> np.ndarray:
    loud = np.asarray(loud, dtype=bool)
    if min_frames <= 1 or not loud.any():
        return loud.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], loud.astype(np.int8), [0]))))
    out = np.zeros_like(loud)
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a >= min_frames:
            out[a:b] = True
    return out


def segments(active: np.ndarray, merge_gap_s: float = 0.25) -> list[tuple[float, float]]:
    """Active frames -> (start_s, end_s) runs, merging gaps shorter than ``merge_gap_s``."""
    runs: list[list[float]] = []
    idx = np.flatnonzero(np.diff(np.concatenate(([0], active.astype(np.int8), [0]))))
    for a, b in zip(idx[::2], idx[1::2]):
        s, e = a * FRAME_S, b * FRAME_S
        if runs and s - runs[-1][1] < merge_gap_s:
            runs[-1][1] = e
        else:
            runs.append([s, e])
    return [(round(float(s), 3), round(float(e), 3)) for s, e in runs]


def speech_bounds(pcm: np.ndarray, threshold_dbfs: float = THRESHOLD_DBFS) -> tuple[int, int] | None:
    """(first, last) active frame indexes of a caller utterance, None when silent."""
    act = np.flatnonzero(active_frames(pcm, threshold_dbfs))
    return (int(act[0]), int(act[-1])) if len(act) else None


# ------------------------------------------------------- what the caller hears
class HeardAudio:
    """The caller's playout of bot audio, on the stream timeline (t=0 at ``start``).

    Like Twilio, audio is played at real-time rate: a chunk arriving at ``now``
    starts at ``max(now, end of queued audio)``; ``clear`` drops everything not
    yet played; marks fire when the audio queued before them has played (or at
    once on ``clear``). Samples never change once written, except that audio
    after ``now`` can be dropped, so per-frame activity is cached.
    """

    def __init__(self, threshold_dbfs: float = THRESHOLD_DBFS, min_frames: int = MIN_FRAMES):
        self.buf = bytearray()
        self.threshold_dbfs = threshold_dbfs
        self.min_frames = min_frames
        self.marks: list[tuple[int, str]] = []  # (sample position, name)
        self._loud: list[bool] = []  # cached loudness of complete frames
        self.dropped_s = 0.0  # total audio dropped by clear / end of call

    @staticmethod
    def _pos(t: float) -> int:
        return max(0, int(round(t * RATE)))

    @property
    def queued_until(self) -> float:
        return len(self.buf) / RATE

    def write(self, payload: bytes, now: float) -> float:
        """Queue a chunk received at ``now``; returns when it starts playing."""
        start = max(self._pos(now), len(self.buf))
        self.buf.extend(bytes([ULAW_SILENCE]) * (start - len(self.buf)))
        self.buf.extend(payload)
        return start / RATE

    def mark(self, name: str, now: float) -> None:
        self.marks.append((max(self._pos(now), len(self.buf)), name))

    def due_marks(self, now: float) -> list[str]:
        pos = self._pos(now)
        due = [n for p, n in self.marks if p <= pos]
        self.marks = [(p, n) for p, n in self.marks if p > pos]
        return due

    def clear(self, now: float) -> list[str]:
        """Drop unplayed audio; returns the pending marks (echoed at once, like Twilio)."""
        pos = self._pos(now)
        if len(self.buf) > pos:
            self.dropped_s += (len(self.buf) - pos) / RATE
            del self.buf[pos:]
            del self._loud[pos // FRAME_SAMPLES :]
        names = [n for _, n in self.marks]
        self.marks = []
        return names

    def active(self) -> np.ndarray:
        """Per-frame speech activity over everything queued (including the future)."""
        n = len(self.buf) // FRAME_SAMPLES
        k = len(self._loud)
        if n > k:
            chunk = ulaw_decode(bytes(self.buf[k * FRAME_SAMPLES : n * FRAME_SAMPLES]))
            self._loud.extend((frame_dbfs(chunk) > self.threshold_dbfs).tolist())
        return _min_runs(np.array(self._loud[:n], dtype=bool), self.min_frames)

    def spoke_since(self, since: float) -> bool:
        act = self.active()
        return bool(act[int(since / FRAME_S) :].any())

    def last_active_end(self) -> float | None:
        idx = np.flatnonzero(self.active())
        return (idx[-1] + 1) * FRAME_S if len(idx) else None

    def onset_after(self, t: float) -> float | None:
        """Start of the first speech run beginning at or after ``t`` (stream seconds).

        Runs already under way at ``t`` do not count. The onset is refined to the
        first loud sample of its frame, so it is not quantised to the 20 ms grid
        (bot audio starts wherever its first chunk arrived).
        """
        act = self.active()
        for i in range(max(int(t / FRAME_S + 1e-9), 0), len(act)):
            if act[i] and (i == 0 or not act[i - 1]):
                frame = ulaw_decode(bytes(self.buf[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]))
                level = 32768 * 10 ** (self.threshold_dbfs / 20)
                loud = np.flatnonzero(np.abs(frame.astype(np.int32)) > level)
                return (i * FRAME_SAMPLES + (int(loud[0]) if len(loud) else 0)) / RATE
        return None

    def pcm(self) -> np.ndarray:
        return ulaw_decode(bytes(self.buf))
