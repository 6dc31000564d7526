"""What Whisper hears of the flow's examples: extra training sentences for the intent classifier.

Each example (every ``--every``-th) is read by voices that neither the bot's prompts nor the spoken
evaluation use (MBROLA fr4 by default; Pico, the bot's own voice, may read as a second caller), sent through the
8 kHz µ-law line, transcribed by Whisper with the start node's prompt, and written to
``<flow>.heard.tsv`` (``heard<TAB>intent``) when the transcript differs from the example. The
recogniser loads that file beside the flow, at half the weight of a written example: it learns that
"la mère y" is "la mairie" from Whisper itself. Transcripts are cached per (voice, text, prompt), so
a rerun after adding examples only reads the new ones.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from callbot_testing.bench.understanding import CACHE_DIR, CHAIN, phone_audio, segment
    from callbot.config import Settings
    from callbot.paths import default_flow

    DEFAULT_FLOW = default_flow()
    from callbot.flows.loader import load_flow
    from callbot.flows.text import fold
    from callbot.flows.types import CallContext
    from callbot.speech.asr import SharedWhisper

    ap = argparse.ArgumentParser(prog="make-heard-examples", description=__doc__)
    ap.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    ap.add_argument("--every", type=int, default=3, help="take one example in N (default 3: all of them measured "
                    "no better, docs/understanding.md)")
    ap.add_argument("--voice", default="mb-fr4", help="comma-separated voices (default mb-fr4)")
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = ap.parse_args(argv)
    voices = [v.strip() for v in args.voice.split(",") if v.strip()]
    if "mb-fr1" in voices:
        ap.error("mb-fr1 is the spoken evaluation's voice: training on it would flatter the evaluation")
    flow = load_flow(args.flow)
    session = flow.new_session(CallContext(channel="bench"))
    session.start()
    prompt = session.vocabulary()
    rows = [(ex, name) for name, intent in flow.spec.intents.items() for ex in intent.examples][:: args.every]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cache_path = args.cache_dir / "heard-transcripts.json"
    cache: dict[str, str] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    whisper = None
    out_path = args.flow.with_suffix(".heard.tsv")
    t0, kept, seen, decoded = time.monotonic(), [], set(), 0
    try:
        for voice in voices:
            for text, intent in rows:
                key = hashlib.sha1(f"{CHAIN}\n{voice}\n{prompt}\n{text}".encode()).hexdigest()[:20]
                heard = cache.get(key)
                if heard is None:
                    if whisper is None:
                        whisper = SharedWhisper(Settings.load())
                    pcm, _ = phone_audio(text, args.cache_dir, voice)
                    heard = cache[key] = whisper.transcribe(segment(pcm, 0.8), prompt).text.strip()
                    decoded += 1
                    if decoded % 200 == 0:
                        cache_path.write_text(json.dumps(cache, ensure_ascii=False))
                        print(f"{voice}: {decoded} decoded, {time.monotonic() - t0:.0f} s", flush=True)
                if heard and fold(heard) != fold(text) and (fold(heard), intent) not in seen:
                    seen.add((fold(heard), intent))
                    kept.append((heard, intent))
    finally:
        cache_path.write_text(json.dumps(cache, ensure_ascii=False))
        if whisper is not None:
            whisper.close()
    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write(f"# Whisper's transcripts of 1 in {args.every} examples read by {', '.join(voices)} "
                f"(scripts/make-heard-examples); regenerate after adding examples\n")
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        w.writerow(["heard", "intent"])
        w.writerows((h.replace("\t", " "), i) for h, i in kept)
    print(f"{len(rows)} examples x {len(voices)} voice(s), {decoded} decoded now, {len(kept)} heard differently, "
          f"written to {out_path} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
