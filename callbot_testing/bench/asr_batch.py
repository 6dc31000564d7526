"""``scripts/bench-asr-batch``: Whisper throughput with N concurrent callers, one decode at a time vs batched.

N "callers" (asyncio tasks, as calls are) each send a turn to ``SharedWhisper.atranscribe`` and
the next one as soon as the answer comes back: the recogniser is saturated, as at 20 talking
calls. Turns are the caller fixtures (``tests/fixtures/audio``, 8 kHz µ-law phone audio, up to
16 kHz) with the lead-in and tail a real segment has (``--lead`` / ``--tail`` seconds of faint
line noise: stt.py keeps ~1 s before the VAD start and adds 0.5 s of silence). Each caller
uses a Whisper prompt like a flow node's vocabulary (``--prompts``: ``mixed`` = three node
vocabularies of different lengths, as calls in different nodes send; ``same``; ``none``).

Both modes run on the same model in the same process, alternated (for each N: off, batch,
off, batch … ``--rounds`` times), so the machine's noise (other test runs, the VM's steal)
hits both. Per mode and N: turns decoded per second, latency per turn (submit -> transcript,
p50 / p95), CPU time of the process per turn (less sensitive to noise than wall time), the
mean batch, and how often the transcript is word for word the one-at-a-time one for the same
clip and beam, and the WER against the fixtures' texts.

    scripts/bench-asr-batch                                  # off vs batch, N = 1 2 4 8 16
    scripts/bench-asr-batch --modes off,batch,batch:bucket=0,batch:window=10 --callers 8
    scripts/bench-asr-batch --threads 1 --rounds 3 --turns 6

Mode options (``batch:k=v:k=v``): ``bucket`` window rounding in s (0 = pad each batch to its
longest window), ``window`` gathering delay in ms, ``max`` batch size, ``encode`` = ``each``
(one encode per turn, then one generate for the batch) or ``batch`` (one encode for the batch),
``share`` = 1/0 (split the queue between idle workers).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.machinery
import importlib.util
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
RATE = 16000
# What WhisperSTT sends as the prompt (flows/engine.py vocabulary()), for three kinds of node.
PROMPTS = (
    "Mairie de Saint-Martin, mairie, état civil, carte d'identité, passeport, lampadaire, encombrants, CCAS",
    "Mairie de Saint-Martin, mairie, oui, non",
    "Mairie de Saint-Martin, mairie, rue, avenue, place, chemin, rue Victor Hugo, rue de la Gare",
)


def cpu_info() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu: unknown"

    def field_(name: str) -> str:
        return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.split(":")[0].strip() == name), "?")

    flags = field_("flags").split()
    vec = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni"))
    cpus = sum(1 for ln in text.splitlines() if ln.startswith("processor"))
    return (f"cpu: {field_('model name')} (family {field_('cpu family')} model {field_('model')}), "
            f"{cpus} CPUs, {vec}")


def fixture_texts() -> dict[str, str]:
    """name -> text, from the list in scripts/make-fixtures."""
    text = (ROOT / "scripts" / "make-fixtures").read_text()
    block = text.split("<<'LIST'", 1)[1].split("\nLIST", 1)[0]
    out = {}
    for line in block.splitlines():
        if "|" in line and not line.startswith("#"):
            name, said = line.split("|", 1)
            out[name.strip()] = said.strip()
    return out


def _bench_asr() -> Any:
    """scripts/bench-asr as a module (its WER helpers)."""
    loader = importlib.machinery.SourceFileLoader("bench_asr", str(ROOT / "scripts" / "bench-asr"))
    spec = importlib.util.spec_from_loader("bench_asr", loader)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(mod)
    return mod


@dataclass
class Clip:
    name: str
    text: str
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE


def load_clips(lead_s: float, tail_s: float) -> list[Clip]:
    from callbot_testing.audio import read_wav

    texts = fixture_texts()
    rng = np.random.default_rng(0)
    clips = []
    for path in sorted(FIXTURES.glob("*.wav")):
        pcm = read_wav(path, RATE)
        lead = rng.normal(0, 20, int(lead_s * RATE)).astype(np.int16)
        tail = rng.normal(0, 20, int(tail_s * RATE)).astype(np.int16)
        clips.append(Clip(path.stem, texts.get(path.stem, ""), np.concatenate([lead, pcm, tail]).tobytes()))
    return clips


@dataclass
class Mode:
    spec: str
    batching: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Mode:
        name, *opts = spec.split(":")
        if name == "off":
            return cls(spec)
        if name != "batch":
            raise SystemExit(f"unknown mode {spec!r}: off or batch[:k=v…]")
        kw: dict[str, Any] = {}
        for o in opts:
            k, _, v = o.partition("=")
            if k == "bucket":
                kw["bucket_s"] = float(v)
            elif k == "window":
                kw["window_s"] = float(v) / 1000
            elif k == "max":
                kw["max_batch"] = int(v)
            elif k == "encode":
                kw["encode_each"] = v == "each"
            elif k == "share":
                kw["share"] = v not in ("0", "no", "false")
            else:
                raise SystemExit(f"unknown option {k!r} in {spec!r}")
        return cls(spec, True, kw)

    def apply(self, whisper: Any) -> None:
        whisper.set_batching(self.batching, **self.options)


@dataclass
class Sample:
    clip: int
    prompt: int
    beam: int
    text: str
    latency_ms: float
    batch: int


@dataclass
class Run:
    turns: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: int = 0
    samples: list[Sample] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # turns/s of each round


async def measure(whisper: Any, clips: list[Clip], callers: int, turns: int, prompts: str) -> tuple[Run, list[Sample]]:
    run = Run()

    async def caller(i: int) -> None:
        which = {"none": -1, "same": 0}.get(prompts, i % len(PROMPTS))
        prompt = PROMPTS[which] if which >= 0 else None
        for k in range(turns):
            c = (i * 5 + k) % len(clips)  # callers start at different clips
            t0 = time.perf_counter()
            try:
                res = await whisper.atranscribe(clips[c].pcm, prompt)
            except Exception as e:  # counted, and the caller goes on
                run.errors += 1
                print(f"    caller {i}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            run.samples.append(Sample(c, which, res.beam, res.raw_text, (time.perf_counter() - t0) * 1000, res.batch))

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    run.wall_s, run.cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    run.turns = len(run.samples)
    run.rates.append(run.turns / run.wall_s)
    return run, run.samples


def merge(a: Run, b: Run) -> Run:
    return Run(a.turns + b.turns, a.wall_s + b.wall_s, a.cpu_s + b.cpu_s, a.errors + b.errors,
               a.samples + b.samples, a.rates + b.rates)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-asr-batch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callers", default="1,2,4,8,16", help="concurrent callers, comma-separated")
    ap.add_argument("--modes", default="off,batch", help="off and/or batch[:k=v…] (see above)")
    ap.add_argument("--rounds", type=int, default=2, help="A/B rounds per N (modes alternate within each)")
    ap.add_argument("--turns", type=int, default=4, help="turns per caller per round")
    ap.add_argument("--prompts", choices=("mixed", "same", "none"), default="mixed")
    ap.add_argument("--threads", type=int, default=None, help="asr_threads (default: settings, 2)")
    ap.add_argument("--workers", type=int, default=None, help="asr_max_concurrent (default: settings, 2)")
    ap.add_argument("--beam", type=int, default=None, help="asr_beam_size (alone); under load asr_busy_beam_size")
    ap.add_argument("--busy-beam", type=int, default=None, help="asr_busy_beam_size")
    ap.add_argument("--lead", type=float, default=1.0, help="seconds of line noise before each fixture")
    ap.add_argument("--tail", type=float, default=0.5, help="seconds after it")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as SharedWhisper does, before CTranslate2 loads
    from callbot.config import Settings
    from callbot.speech.asr import SharedWhisper

    overrides: dict[str, Any] = {"asr_timeout_secs": 0.0}  # saturation is the point: no deadline
    for key, value in (("asr_threads", args.threads), ("asr_max_concurrent", args.workers),
                       ("asr_beam_size", args.beam), ("asr_busy_beam_size", args.busy_beam)):
        if value is not None:
            overrides[key] = value
    settings = Settings.load(**overrides)
    whisper = SharedWhisper(settings, batching=False)
    modes = [Mode.parse(m) for m in args.modes.split(",")]
    callers = [int(n) for n in args.callers.split(",")]
    clips = load_clips(args.lead, args.tail)
    wer = _bench_asr()

    print(cpu_info())
    print(f"Whisper {whisper.model_dir.name}: {whisper.threads} threads x {whisper.max_concurrent} workers, "
          f"beam {whisper.beam_size} alone / {whisper.busy_beam_size} under load, short window "
          f"+{whisper.padding_s:g} s; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    secs = [c.seconds for c in clips]
    print(f"{len(clips)} turns of {min(secs):.1f}-{max(secs):.1f} s (mean {statistics.mean(secs):.1f} s), "
          f"prompts {args.prompts}; {args.rounds} rounds x {args.turns} turns per caller; "
          f"modes alternate: {' / '.join(m.spec for m in modes)}")

    async def bench() -> dict[tuple[int, str], Run]:
        for m in modes:  # warm-up: each mode's first batches allocate their buffers
            m.apply(whisper)
            await measure(whisper, clips, max(2, min(callers[-1], 8)), 1, args.prompts)
        runs: dict[tuple[int, str], Run] = {}
        for n in callers:
            for r in range(args.rounds):
                order = modes if r % 2 == 0 else modes[::-1]  # A/B, B/A: neither always goes first
                for m in order:
                    m.apply(whisper)
                    run, _ = await measure(whisper, clips, n, args.turns, args.prompts)
                    runs[(n, m.spec)] = merge(runs[(n, m.spec)], run) if (n, m.spec) in runs else run
                    print(f"  N={n:<3} round {r + 1} {m.spec:<22} {run.turns / run.wall_s:6.2f} turns/s", flush=True)
        return runs

    runs = asyncio.run(bench())
    whisper.close()

    reference: dict[tuple[int, int, int], str] = {}  # (clip, prompt, beam) -> one-at-a-time text
    for (_n, spec), run in runs.items():
        if spec == "off":
            for s in run.samples:
                reference.setdefault((s.clip, s.prompt, s.beam), s.text)

    print()
    print(f"{'N':>3} {'mode':<22} {'turns/s':>8} {'(rounds)':>13} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms/turn':>11} "
          f"{'batch':>5} {'same text':>9} {'WER':>6} {'err':>4}")
    for n in callers:
        base = runs.get((n, "off"))
        for m in modes:
            run = runs[(n, m.spec)]
            lat = [s.latency_ms for s in run.samples]
            comparable = [s for s in run.samples if (s.clip, s.prompt, s.beam) in reference]
            same = sum(s.text == reference[(s.clip, s.prompt, s.beam)] for s in comparable)
            errs = sum(wer.wer_counts(clips[s.clip].text, s.text)[0] for s in run.samples)
            words = sum(wer.wer_counts(clips[s.clip].text, s.text)[1] for s in run.samples)
            batch = statistics.mean(s.batch or 1 for s in run.samples) if run.samples else 0.0
            rate = run.turns / run.wall_s if run.wall_s else 0.0
            gain = (f" x{rate / (base.turns / base.wall_s):.2f}" if base is not None and base is not run
                    and base.turns else "")
            spread = f"{min(run.rates):.2f}-{max(run.rates):.2f}"
            print(f"{n:>3} {m.spec:<22} {rate:8.2f} {spread:>13} {statistics.median(lat) if lat else 0:7.0f} "
                  f"{pct(lat, 0.95):7.0f} {1000 * run.cpu_s / max(1, run.turns):11.0f} {batch:5.1f} "
                  f"{f'{same}/{len(comparable)}' if comparable else '-':>9} {errs / max(1, words):6.3f} "
                  f"{run.errors:>4}{gain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
