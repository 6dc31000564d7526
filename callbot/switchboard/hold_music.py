"""Hold music, generated (so it is ours to play: no licence to clear, nothing to ship).

A slow, soft arpeggio over four chords (I-V-vi-IV in C), sine tones with a gentle
attack and decay, at telephone level (about -20 dBFS) and band (no energy above
~2 kHz, nothing the G.711 codec would turn into noise). About 32 s, then it loops.
"""

from __future__ import annotations

import functools

import numpy as np

CHORDS = ((261.63, 329.63, 392.00), (196.00, 246.94, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 349.23))
NOTE_S = 0.5
PEAK = 0.1  # of full scale


@functools.lru_cache(maxsize=4)
def hold_music(rate: int = 8000, bars: int = 16) -> bytes:
    """16-bit mono PCM at ``rate``."""
    n = int(NOTE_S * rate)
    t = np.arange(n) / rate
    env = np.minimum(1.0, t / 0.03) * np.exp(-3.0 * t)
    notes = []
    for bar in range(bars):
        chord = CHORDS[bar % len(CHORDS)]
        bass = chord[0] / 2
        for step, idx in enumerate((0, 1, 2, 1)):
            f = chord[idx] * (2 if step == 2 else 1)
            tone = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
            tone += (0.6 if step == 0 else 0.25) * np.sin(2 * np.pi * bass * t)
            notes.append(tone * env)
    wave = np.concatenate(notes)
    wave *= PEAK * 32767 / np.max(np.abs(wave))
    return wave.astype("<i2").tobytes()


def slice_of(music: bytes, offset: int, seconds: float, rate: int = 8000) -> tuple[bytes, int]:
    """``seconds`` of the looped music starting at byte ``offset``; returns (pcm, next offset)."""
    want = int(seconds * rate) * 2
    out = bytearray()
    while len(out) < want:
        take = music[offset: offset + want - len(out)]
        out += take
        offset = (offset + len(take)) % len(music)
    return bytes(out), offset
