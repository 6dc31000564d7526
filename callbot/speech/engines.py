"""TTS engines behind one small ``Voice`` interface.

Three engines, best first for French telephony:

- **Piper** (neural, in process via ``piper-tts``, GPL-3): needs an
  ``.onnx`` + ``.onnx.json`` voice file; no French voice ships in a registry
  package, so the operator fetches one (``callbot voices fetch``).
- **SVOX Pico** (``pico2wave``, Debian non-free ``libttspico-utils``): clear
  enough on the phone (Whisper round-trip WER ≈ 0.14 on bot replies); no Python
  binding, so one subprocess per utterance writing a temporary 16 kHz WAV.
- **espeak-ng** through ``espeakng-loader`` (pip-only shared library + data,
  ctypes): always available but robotic; last resort so a fresh install still
  speaks.

Each voice loads once and ``synthesize(text)`` returns PCM16 mono at the
voice's native ``sample_rate``; resampling to 8 kHz happens in the prompt cache
/ TTS service. Every engine is guarded by a lock: Piper's ONNX session and the
espeak C library are not safe to drive from two threads at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from callbot.constants import TTS_VOLUME
from callbot.errors import ModelError

log = logging.getLogger(__name__)


class Voice:
    """A loaded TTS voice. Subclasses implement ``_synthesize``."""

    engine = "none"

    def __init__(self, name: str, sample_rate: int, language: str, reason: str = "") -> None:
        self.name = name
        self.sample_rate = sample_rate
        self.language = language
        self.reason = reason  # why select_voice chose it (for logs / status page)
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> bytes:
        """PCM16 mono at ``self.sample_rate``; thread-safe (serialised per voice)."""
        if not text.strip():
            return b""
        with self._lock:
            return self._synthesize(text)

    def _synthesize(self, text: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def key(self) -> str:
        """Stable identity for caches: engine + name."""
        return f"{self.engine}:{self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.sample_rate} Hz {self.language}>"


def _scale(pcm: bytes, volume: float) -> bytes:
    """Peak-normalise to ``volume`` of full scale: G.711 + resampling clip at 1.0."""
    a = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak < 1.0:
        return pcm
    return (a * (volume * 32767.0 / peak)).astype(np.int16).tobytes()


# --------------------------------------------------------------------------- Piper
class PiperEngineVoice(Voice):
    engine = "piper"

    def __init__(self, model_path: Path, config_path: Path | None = None, reason: str = "") -> None:
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as e:
            raise ModelError("piper-tts is not installed (pip install piper-tts)", code="tts_unavailable") from e
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else model_path.with_name(model_path.name + ".json")
        if not model_path.is_file() or not config_path.is_file():
            raise ModelError(f"Piper voice needs {model_path} and {config_path}", code="tts_voice_missing")
        try:
            self._voice = PiperVoice.load(model_path, config_path=config_path)
        except Exception as e:
            raise ModelError(f"cannot load Piper voice {model_path}: {e}", code="tts_load_failed") from e
        self._syn = SynthesisConfig(volume=TTS_VOLUME)
        lang = (self._voice.config.espeak_voice or "").split("-")[0] or "?"
        name = model_path.name.removesuffix(".onnx")
        super().__init__(name, self._voice.config.sample_rate, lang, reason)

    def _synthesize(self, text: str) -> bytes:
        return b"".join(c.audio_int16_bytes for c in self._voice.synthesize(text, syn_config=self._syn))


# --------------------------------------------------------------------------- Pico
PICO_RATE = 16_000


class PicoVoice(Voice):
    engine = "pico"

    def __init__(self, language: str = "fr-FR", binary: str | None = None, reason: str = "") -> None:
        self._bin = binary or shutil.which("pico2wave")
        if not self._bin:
            raise ModelError("pico2wave not found (apt-get install libttspico-utils)", code="tts_unavailable")
        self._lang = language
        super().__init__(f"pico-{language}", PICO_RATE, language.split("-")[0], reason)

    def _synthesize(self, text: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="callbot-pico-") as d:
            out = os.path.join(d, "out.wav")  # pico2wave insists on a .wav name
            try:
                subprocess.run(
                    [self._bin, "-l", self._lang, "-w", out, "--", text],
                    check=True, capture_output=True, timeout=30,
                )
            except (subprocess.SubprocessError, OSError) as e:
                err = getattr(e, "stderr", b"") or b""
                raise ModelError(f"pico2wave failed: {e} {err.decode(errors='replace')[:200]}",
                                 code="tts_failed") from e
            with wave.open(out, "rb") as w:
                if w.getframerate() != PICO_RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
                    raise ModelError(f"pico2wave produced an unexpected format ({w.getparams()})", code="tts_failed")
                pcm = w.readframes(w.getnframes())
        return _scale(pcm, TTS_VOLUME)


# --------------------------------------------------------------------------- espeak-ng
_ESPEAK_LOCK = threading.Lock()  # the C library holds global state: one voice per process
_ESPEAK: dict = {}
_CALLBACK_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_ENDPAUSE = 0x1000


def _espeak_lib():
    """Load and initialise libespeak-ng from espeakng-loader once per process."""
    with _ESPEAK_LOCK:
        if "lib" in _ESPEAK:
            return _ESPEAK["lib"], _ESPEAK["rate"]
        try:
            import espeakng_loader
        except ImportError as e:
            raise ModelError("espeakng-loader is not installed (pip install espeakng-loader)",
                             code="tts_unavailable") from e
        lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_T]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise ModelError(f"espeak_Initialize failed ({rate})", code="tts_load_failed")
        buf: list[bytes] = []

        @_CALLBACK_T
        def _cb(wav, n, _events):
            if n > 0 and wav:
                buf.append(ctypes.string_at(wav, n * 2))
            return 0  # 0 = continue

        lib.espeak_SetSynthCallback(_cb)
        _ESPEAK.update(lib=lib, rate=rate, buf=buf, cb=_cb)  # keep the callback alive
        return lib, rate


class EspeakVoice(Voice):
    engine = "espeak"

    def __init__(self, language: str = "fr", rate_wpm: int = 150, reason: str = "") -> None:
        self._lib, rate = _espeak_lib()
        self._voice_name = language.encode()
        self._wpm = rate_wpm
        super().__init__(f"espeak-{language}", rate, language.split("-")[0], reason)
        if self._lib.espeak_SetVoiceByName(self._voice_name) != 0:
            raise ModelError(f"espeak-ng has no voice '{language}'", code="tts_voice_missing")

    def _synthesize(self, text: str) -> bytes:
        data = text.encode("utf-8") + b"\0"
        with _ESPEAK_LOCK:
            buf = _ESPEAK["buf"]
            buf.clear()
            self._lib.espeak_SetVoiceByName(self._voice_name)
            self._lib.espeak_SetParameter(1, self._wpm, 0)  # espeakRATE
            rc = self._lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8 | _ESPEAK_ENDPAUSE, None, None)
            self._lib.espeak_Synchronize()
            pcm = b"".join(buf)
            buf.clear()
        if rc != 0:
            raise ModelError(f"espeak_Synth failed ({rc})", code="tts_failed")
        return _scale(pcm, TTS_VOLUME)
