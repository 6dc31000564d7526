"""What Whisper hears of the flow's examples: extra training sentences for the intent classifier.

Each example (every ``--every``-th) is read by a voice that neither the bot nor the spoken
evaluation uses (MBROLA fr4), sent through the 8 kHz µ-law line, transcribed by Whisper with the
start node's prompt, and written to ``<flow>.heard.tsv`` (``heard<TAB>intent``) when the
transcript differs from the example. The recogniser loads that file beside the flow, at half the
weight of a written example: it learns that "la mère y" is "la mairie" from Whisper itself.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from callbot_testing.bench.understanding import CACHE_DIR, phone_audio, segment
    from callbot.config import Settings
    from callbot.paths import default_flow

    DEFAULT_FLOW = default_flow()
    from callbot.flows.loader import load_flow
    from callbot.flows.text import fold
    from callbot.flows.types import CallContext
    from callbot.speech.asr import SharedWhisper

    ap = argparse.ArgumentParser(prog="make-heard-examples", description=__doc__)
    ap.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    ap.add_argument("--every", type=int, default=3, help="take one example in N (default 3)")
    ap.add_argument("--voice", default="mb-fr4")
    args = ap.parse_args(argv)
    flow = load_flow(args.flow)
    session = flow.new_session(CallContext(channel="bench"))
    session.start()
    prompt = session.vocabulary()
    rows = [(ex, name) for name, intent in flow.spec.intents.items() for ex in intent.examples][:: args.every]
    whisper = SharedWhisper(Settings.load())
    out_path = args.flow.with_suffix(".heard.tsv")
    t0, kept = time.monotonic(), []
    for text, intent in rows:
        pcm, _ = phone_audio(text, CACHE_DIR, args.voice)
        heard = whisper.transcribe(segment(pcm, 0.8), prompt).text.strip()
        if heard and fold(heard) != fold(text):
            kept.append((heard, intent))
    whisper.close()
    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write(f"# Whisper's transcripts of 1 in {args.every} examples read by {args.voice} "
                f"(python -m callbot_testing.bench.heard); regenerate after large example changes\n")
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        w.writerow(["heard", "intent"])
        w.writerows((h.replace("\t", " "), i) for h, i in kept)
    print(f"{len(rows)} examples read, {len(kept)} heard differently, written to {out_path} "
          f"in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
