"""Spoken intent accuracy: the whole understanding chain, offline, on ``utterance<TAB>intent`` rows.

Each utterance is read by a French voice the bot does not use (MBROLA fr1 through
espeak-ng by default; the bot speaks with Pico), sent through the
phone line (8 kHz G.711 µ-law and back to 16 kHz PCM16, with the numpy codec
of ``callbot_testing.audio``), framed like a pipecat segment (0.8 s of silence
before the speech; the node's end-of-turn silence plus 0.5 s after), transcribed by
``SharedWhisper`` with the start node's ``vocabulary()`` prompt, then given to
the flow's recogniser exactly as ``callbot eval-intents`` does (a no-match
counts as ``hors_sujet``). Audio rejected by the ASR guard rails never reaches
the flow (the bot keeps listening), so it counts as a miss.

Each miss gets a cause: ``asr`` when the recogniser gets the written sentence
right but not what Whisper heard, ``recogniser`` when it misses the written
sentence too, ``rejected`` when Whisper gave no text. Synthetic voices are
cleaner than callers: read the numbers as a lower bound on real errors.

Synthesised clips are cached in a temp dir keyed by the text, so reruns only
pay for Whisper. Last line: ``spoken accuracy: 0.xxx (N/M)``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callbot.config import PROJECT_ROOT

DEFAULT_TSV = PROJECT_ROOT.parent / "shared" / "mairie" / "dev.tsv"
CACHE_DIR = Path(tempfile.gettempdir()) / "callbot-bench-understanding"
CHAIN = "ulaw8k-16k-v2"  # part of the cache key: change it when the audio chain changes
# pipecat's segment: the 1 s kept before the VAD fires (~0.2 s into speech), the speech, the VAD's
# end-of-turn silence, then 0.5 s of trailing silence added by SegmentedSTTService
LEAD_S, TRAIL_S = 0.8, 0.5
NOTHING = "(nothing heard)"


# ------------------------------------------------------------------------------------ audio
VOICES = {
    # the bot speaks with Pico (or espeak-ng): callers are read by MBROLA voices it never uses
    "mb-fr1": ["espeak-ng", "-v", "mb-fr1", "-s", "140"],
    "mb-fr4": ["espeak-ng", "-v", "mb-fr4", "-s", "140"],
    "pico": ["pico2wave", "-l", "fr-FR"],
}


def synthesise(voice: str, text: str, wav: Path) -> None:
    cmd = VOICES[voice]
    args = cmd + ["-w", str(wav), text]
    subprocess.run(args, check=True, capture_output=True)


def phone_audio(text: str, cache_dir: Path, voice: str = "mb-fr1") -> tuple[np.ndarray, bool]:
    """A French voice -> 8 kHz µ-law -> 16 kHz int16, trimmed to the speech; (pcm, from_cache)."""
    from callbot_testing.audio import FRAME_SAMPLES, read_wav, resample, speech_bounds, ulaw_decode, ulaw_encode

    key = hashlib.sha1(f"{CHAIN}\n{voice}\n{text}".encode()).hexdigest()[:20]
    path = cache_dir / f"{key}.pcm"
    if path.exists():
        return np.frombuffer(path.read_bytes(), dtype=np.int16), True
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        wav = Path(tmp) / "say.wav"
        synthesise(voice, text, wav)
        pcm8 = read_wav(wav, rate=8000)  # voices speak at 16-22 kHz; the line carries 8 kHz
    line = ulaw_decode(ulaw_encode(pcm8))
    bounds = speech_bounds(line)
    if bounds:
        line = line[bounds[0] * FRAME_SAMPLES:(bounds[1] + 1) * FRAME_SAMPLES]
    pcm16 = resample(line, 8000, 16000)
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_bytes(pcm16.tobytes())
    part.replace(path)
    return pcm16, False


def segment(pcm16: np.ndarray, end_of_turn_s: float) -> bytes:
    """What the STT receives for one caller turn: leading silence, speech, end-of-turn + trailing silence."""
    lead = np.zeros(int(16000 * LEAD_S), dtype=np.int16)
    tail = np.zeros(int(16000 * (end_of_turn_s + TRAIL_S)), dtype=np.int16)
    return np.concatenate([lead, pcm16, tail]).astype("<i2").tobytes()


# -------------------------------------------------------------------------------------- WER
def norm_words(text: str, folded: bool = False) -> list[str]:
    """Case and punctuation removed (apostrophes and hyphens split words); ``folded`` also
    strips accents and spells numbers as words, so "16 ans" and "seize ans" agree."""
    if folded:
        from callbot.flows.text import fold, number_words

        out = []
        for w in fold(text).split():
            out += fold(number_words(int(w))).split() if w.isdigit() and len(w) <= 6 else [w]
        return out
    text = unicodedata.normalize("NFC", text.lower()).replace("’", "'")
    return re.sub(r"[^\w]+", " ", text).split()


def align(ref: list[str], hyp: list[str]) -> tuple[int, list[tuple[str, str]]]:
    """Word edit distance and the edits as (ref word or '', hyp word or '') pairs."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    edits, i, j = [], n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] != hyp[j - 1]:
                edits.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            edits.append((ref[i - 1], ""))
            i -= 1
        else:
            edits.append(("", hyp[j - 1]))
            j -= 1
    return d[n][m], edits[::-1]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else 0.0


# -------------------------------------------------------------------------------------- run
@dataclass
class Row:
    text: str
    gold: str
    heard: str = ""  # what the flow got (empty when the ASR rejected the audio)
    raw: str = ""  # what Whisper wrote, before rejection
    spoken: str = ""  # recognised from what Whisper heard
    written: str = ""  # recognised from the TSV text itself
    confidence: float = 0.0
    matched: bool = True  # False: no intent passed the threshold (the bot would ask again)
    asr_ms: float = 0.0
    errors: int = 0
    words: int = 0
    folded_errors: int = 0
    folded_words: int = 0

    @property
    def cause(self) -> str:
        if self.spoken == self.gold:
            return ""
        if self.spoken == NOTHING:
            return "rejected"
        return "recogniser" if self.written != self.gold else "asr"


def predict(flow, text: str, alternatives: tuple[str, ...] = ()) -> tuple[str, float, bool]:
    """(intent, confidence, matched) through the engine, as eval-intents judges it (``alternatives``:
    Whisper's other hypotheses, which a call passes too)."""
    from callbot.understanding.evaluate import first_turn

    o = first_turn(flow, text, alternatives)
    return o.judged(), o.confidence, o.kind in ("route", "emergency")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from callbot.paths import default_flow

    DEFAULT_FLOW = default_flow()

    ap = argparse.ArgumentParser(prog="bench-understanding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", type=Path, default=DEFAULT_FLOW, help="flow file (default: flows/mairie.yaml)")
    ap.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help="utterance<TAB>intent rows "
                    "(default: ../shared/mairie/dev.tsv next to the repo)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows")
    ap.add_argument("--window", choices=("short", "full"), default=None,
                    help="Whisper window (default: settings.asr_window)")
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"synthesised audio cache (default {CACHE_DIR})")
    ap.add_argument("--show", type=int, default=1000, help="misses to print (default: all)")
    ap.add_argument("--prompt", default=None, help="Whisper prompt instead of the start node's vocabulary()")
    ap.add_argument("--voice", choices=sorted(VOICES), default="mb-fr1",
                    help="caller voice (default mb-fr1: MBROLA via espeak-ng, a voice the bot does not use)")
    ap.add_argument("--no-alternatives", action="store_true",
                    help="route Whisper's best hypothesis only (not the beam's others, as a call does)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from callbot.understanding.evaluate import read_tsv
    from callbot.flows.loader import FlowLoadError, load_flow
    from callbot.flows.types import CallContext

    if not shutil.which(VOICES[args.voice][0]):
        print(f"{VOICES[args.voice][0]} not found: install espeak-ng and mbrola-fr1/-fr4 (or libttspico-utils)",
              file=sys.stderr)
        return 2
    try:
        flow = load_flow(args.flow)
        rows = [Row(t, g) for t, g in read_tsv(args.tsv)][: args.limit]
    except FlowLoadError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot read {args.tsv}: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"{args.tsv}: no utterance<TAB>intent rows", file=sys.stderr)
        return 1
    session = flow.new_session(CallContext(channel="bench"))
    first = session.start()
    prompt = session.vocabulary() if args.prompt is None else args.prompt
    eot = (first.listen.end_of_turn_secs if first.listen else None) or 0.5

    from callbot.config import Settings
    from callbot.speech.asr import SharedWhisper

    t0 = time.monotonic()
    cached = 0
    clips = []
    for row in rows:
        pcm, hit = phone_audio(row.text, args.cache_dir, args.voice)
        cached += hit
        clips.append(segment(pcm, eot))
    synth_s = time.monotonic() - t0
    whisper = SharedWhisper(Settings.load(), window=args.window)
    window = args.window or whisper.window
    print(f"{len(rows)} utterances from {args.tsv}; flow {flow.name} version {flow.version}, "
          f"start node {session.node}")
    print(f"audio: {len(clips) - cached} synthesised ({synth_s:.1f} s), {cached} cached in {args.cache_dir}; "
          f"{sum(len(c) for c in clips) / 32000 / len(clips):.1f} s per turn with silences")
    flow.warm()
    print(f"caller voice: {args.voice}; whisper: window {window}, beam {whisper.beam_size}, {whisper.threads} thread(s); prompt: {prompt!r}")
    whisper.transcribe(clips[0], prompt, window=args.window)  # warm-up, not timed
    for row, clip in zip(rows, clips):
        res = whisper.transcribe(clip, prompt, window=args.window)
        row.heard, row.raw, row.asr_ms = res.text, res.raw_text, res.asr_ms
        alternatives = () if args.no_alternatives else res.alternatives
        row.spoken, row.confidence, row.matched = (predict(flow, res.text, alternatives) if res.text
                                                   else (NOTHING, 0.0, False))
        row.written = predict(flow, row.text)[0]
        row.errors, _ = align(norm_words(row.text), norm_words(res.raw_text))
        row.words = len(norm_words(row.text))
        row.folded_errors, _ = align(norm_words(row.text, True), norm_words(res.raw_text, True))
        row.folded_words = len(norm_words(row.text, True))
    report(rows, args.show)
    whisper.close()
    return 0


def report(rows: list[Row], show: int) -> None:
    from callbot.flows.intents import FILLERS

    misses = [r for r in rows if r.cause]
    shown = {id(r): r.spoken if r.matched or r.spoken == NOTHING else "(no match)" for r in misses}
    for r in misses[:show]:
        print(f"miss  {r.gold:22} -> {shown[id(r)]:22} {r.confidence:.2f}  [{r.cause}]")
        print(f"      said:  {r.text}")
        print(f"      heard: {r.heard or NOTHING + (f' (rejected: {r.raw!r})' if r.raw else '')}")
    pairs = Counter((r.gold, shown[id(r)]) for r in misses)
    if pairs:
        print("confusions (expected -> recognised: count):")
        for (gold, pred), n in pairs.most_common():
            print(f"  {gold} -> {pred}: {n}")
    causes = Counter(r.cause for r in misses)
    print(f"miss causes: asr {causes['asr']}, recogniser {causes['recogniser']}, rejected {causes['rejected']}"
          f" (spoken right though the text is missed: "
          f"{sum(1 for r in rows if r.spoken == r.gold != r.written)}); wrong intent "
          f"{sum(1 for r in misses if r.matched)}, no match {sum(1 for r in misses if not r.matched)}")
    slips: Counter = Counter()
    for r in rows:
        slips.update(f"{a or '·'} -> {b or '·'}" for a, b in
                     align(norm_words(r.text, True), norm_words(r.raw, True))[1]
                     if a and b and len(a) > 2 and a not in FILLERS)
    if slips:
        top = ", ".join(f"{s} ({n})" for s, n in slips.most_common(12))
        print(f"frequent ASR slips of content words (folded): {top}")
    n = len(rows)
    words, errors = sum(r.words for r in rows), sum(r.errors for r in rows)
    fwords, ferrors = sum(r.folded_words for r in rows), sum(r.folded_errors for r in rows)
    exact = sum(1 for r in rows if r.folded_errors == 0)
    print(f"ASR WER: {errors / max(words, 1):.3f} ({errors}/{words} words); folded (accents, numbers as "
          f"words): {ferrors / max(fwords, 1):.3f}; exact sentences {exact}/{n}; "
          f"rejected {sum(1 for r in rows if r.spoken == NOTHING)}")
    ms = [r.asr_ms for r in rows]
    print(f"ASR ms: p50 {pct(ms, 0.5):.0f}, p95 {pct(ms, 0.95):.0f}, max {max(ms):.0f}")
    pos = [r for r in rows if r.gold == "urgence"]
    neg = [r for r in rows if r.gold != "urgence"]
    print(f"spoken emergency recall: {sum(r.spoken == 'urgence' for r in pos)}/{len(pos)}; false alarms: "
          f"{sum(r.spoken == 'urgence' for r in neg)}/{len(neg)} (text: "
          f"{sum(r.written == 'urgence' for r in pos)}/{len(pos)}, {sum(r.written == 'urgence' for r in neg)})")
    written = sum(1 for r in rows if r.written == r.gold)
    print(f"text accuracy (same rows): {written / n:.3f} ({written}/{n})")
    ok = sum(1 for r in rows if r.spoken == r.gold)
    print(f"spoken accuracy: {ok / n:.3f} ({ok}/{n})")


if __name__ == "__main__":
    raise SystemExit(main())
