"""Speech commands for the ``callbot`` CLI: ``voices list|fetch`` and ``models prepare``.

The lead's ``callbot/cli.py`` calls ``add_subcommands(subparsers)``; each command
sets ``func(args) -> int`` (exit code). Settings come from ``args.config`` when
the top-level parser defines it. ``models prepare`` is the setup step
(``scripts/setup``): it reassembles Whisper with a progress bar, loads it once
to prove it works, and reports which voice calls will use.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from callbot.config import Settings
from callbot.errors import CallbotError


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(getattr(args, "config", None))


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    voices = subparsers.add_parser("voices", help="list or download TTS voices")
    vsub = voices.add_subparsers(dest="voices_cmd", required=True)
    p = vsub.add_parser("list", help="known Piper voices and what is installed")
    p.set_defaults(func=cmd_voices_list)
    p = vsub.add_parser("fetch", help="download a Piper voice (needs internet)")
    p.add_argument("name", help="e.g. fr_FR-siwis-medium (see `callbot voices list`)")
    p.add_argument("--dest", type=Path,
                   help="target folder (default: voices_dir, or cache_dir/voices when voices_dir is the installed "
                        "package's own copy)")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.set_defaults(func=cmd_voices_fetch)

    models = subparsers.add_parser("models", help="prepare speech models")
    msub = models.add_subparsers(dest="models_cmd", required=True)
    p = msub.add_parser("prepare", help="reassemble Whisper, check it loads, report the TTS voice")
    p.add_argument("--no-check", action="store_true", help="only reassemble, do not load the models")
    p.set_defaults(func=cmd_models_prepare)


def cmd_voices_list(args: argparse.Namespace) -> int:
    from callbot.speech.voices import list_voices, voice_dirs

    settings = _settings(args)
    print(f"voice folders: {', '.join(map(str, voice_dirs(settings)))}")
    print(f"tts_voice = {settings.tts_voice}")
    for row in list_voices(settings):
        mark = "installed" if row["installed"] else "-"
        print(f"  {row['name']:<24} {row['language']:<3} {mark:<10} {row['note']}")
    return 0


def cmd_voices_fetch(args: argparse.Namespace) -> int:
    from callbot.paths import inside_package
    from callbot.speech.models import text_progress
    from callbot.speech.voices import fetch_voice

    settings = _settings(args)
    dest = args.dest or Path(settings.voices_dir)
    if not args.dest and inside_package(dest):  # never write into site-packages (read-only in the Docker image)
        dest = Path(settings.cache_dir) / "voices"  # also searched by `tts_voice: auto` (voice_dirs)
    try:
        path = fetch_voice(args.name, dest, text_progress(), settings=settings, force=args.force)
    except CallbotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name} installed in {path.parent}; `tts_voice: auto` will now pick the first French voice found")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    return prepare_models(settings=_settings(args), check=not args.no_check)


def prepare_models(*, settings: Settings, check: bool = True) -> int:
    """Setup step (``callbot models prepare``)."""
    from callbot.speech.models import text_progress, whisper_model_dir

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        t0 = time.monotonic()
        path = whisper_model_dir(settings, text_progress())
        print(f"Whisper model: {path} ({time.monotonic() - t0:.1f} s)")
        if not check:
            return 0
        from callbot.flows.loader import load_flow

        t0 = time.monotonic()
        flow = load_flow(settings.flow).warm()  # embeds the examples once: later starts take seconds
        print(f"flow {flow.name}: intent recogniser and emergency layer ready ({time.monotonic() - t0:.1f} s, "
              f"{sum(len(i.examples) for i in flow.spec.intents.values())} examples)")
        from callbot.speech.asr import SharedWhisper
        from callbot.speech.voices import select_voice

        whisper = SharedWhisper(settings, model_dir=path)
        res = whisper.transcribe(bytes(16000))  # 0.5 s of silence: proves the model runs
        whisper.close()
        print(f"Whisper loads in {whisper.load_s:.1f} s, test decode {res.asr_ms:.0f} ms")
        voice = select_voice(settings)
        t0 = time.monotonic()
        pcm = voice.synthesize("Bonjour, vous êtes bien à la mairie.")
        print(f"TTS voice: {voice.name} ({voice.engine}, {voice.sample_rate} Hz): "
              f"{len(pcm) / 2 / voice.sample_rate:.1f} s of audio in {(time.monotonic() - t0) * 1000:.0f} ms"
              + ("" if voice.engine == "piper" and voice.language == "fr"
                 else "  -> for a natural voice: callbot voices fetch fr_FR-siwis-medium"))
    except CallbotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (handy before the main CLI wires these commands)."""
    parser = argparse.ArgumentParser(prog="callbot-speech")
    parser.add_argument("--config")
    add_subcommands(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
