"""Caller script steps for :func:`callbot_testing.twilio_caller.place_call`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from callbot_testing import audio as A


@dataclass
class Say:
    """Speak: a WAV path (str ending in .wav or Path), int16 8 kHz PCM (bytes/ndarray), or French text."""

    source: str | Path | bytes | np.ndarray
    label: str | None = None

    def pcm(self) -> np.ndarray:
        src = self.source
        if isinstance(src, np.ndarray):
            return src.astype(np.int16)
        if isinstance(src, (bytes, bytearray)):
            return np.frombuffer(bytes(src), dtype="<i2").copy()
        if isinstance(src, Path) or src.lower().endswith(".wav"):
            return A.read_wav(src)
        return A.synthesize(src)

    def describe(self) -> str:
        src = self.source
        if self.label:
            return self.label
        if isinstance(src, Path) or (isinstance(src, str) and src.lower().endswith(".wav")):
            return Path(src).name
        if isinstance(src, str):
            return f"«{src}»"
        return f"<pcm {len(src) / (2 if isinstance(src, bytes) else 1) / A.RATE:.2f} s>"


@dataclass
class Press:
    """DTMF digit(s), ``interval`` seconds apart."""

    digits: str
    interval: float = 0.25


@dataclass
class Wait:
    seconds: float


@dataclass
class WaitForBot:
    """Wait like a caller for the prompt to end: until the bot has spoken (since our last
    action) and then stayed quiet ``silence_after`` s. Gives up (with a report warning) when
    the bot has not started within ``timeout`` s; a long reply is waited for to its end."""

    silence_after: float = 1.0
    timeout: float = 15.0


@dataclass
class Hangup:
    pass


Step = Union[Say, Press, Wait, WaitForBot, Hangup]


