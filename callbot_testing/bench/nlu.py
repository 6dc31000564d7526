"""Cost of understanding one caller sentence: encoder load, flow training, per-sentence latency, memory.

Runs the whole first-turn path of ``callbot eval-intents`` (emergency layer, encoders, classifier,
lexical scorer, engine) on each row of a TSV, each sentence new to the encoders' memo (as in a
call), and prints p50/p95 with the CPU's vector extensions beside them (Whisper and the encoders are
~2x apart between AVX2 and AVX-512/VNNI machines). ``--busy N`` keeps N other processes spinning on
the cores meanwhile, as Whisper does in a busy server (the encoders' OpenMP threads used to spin-wait
for each other then: ``OMP_WAIT_POLICY=ACTIVE scripts/bench-nlu --busy 1`` shows the old behaviour).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    vec = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    cpus = len([ln for ln in text.splitlines() if ln.startswith("processor")])
    return f"{model}; {' '.join(vec) or 'no AVX2'}; {cpus} CPUs"


def main(argv: list[str] | None = None) -> int:
    from callbot.config import PROJECT_ROOT

    ap = argparse.ArgumentParser(prog="bench-nlu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tsv", type=Path, default=PROJECT_ROOT / "tests" / "data" / "tune.tsv")
    ap.add_argument("--flow", type=Path, default=PROJECT_ROOT / "flows" / "mairie.yaml")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the rows (each with a fresh memo)")
    ap.add_argument("--busy", type=int, default=0, help="other processes spinning on the cores meanwhile")
    args = ap.parse_args(argv)

    base = rss_mb()
    print(f"cpu: {cpu_flags()}")
    from callbot.understanding.evaluate import read_tsv
    from callbot.flows.loader import load_flow
    from callbot.understanding.encoders import shared_encoders
    from callbot.understanding.evaluate import pct

    t0 = time.perf_counter()
    encoders = shared_encoders()
    load_s = time.perf_counter() - t0
    after_load = rss_mb()
    t0 = time.perf_counter()
    flow = load_flow(args.flow).warm()
    train_s = time.perf_counter() - t0
    trained = rss_mb()
    n_examples = sum(len(i.examples) for i in flow.spec.intents.values())
    print(f"encoders loaded in {load_s:.2f} s (+{after_load - base:.0f} MB RSS); flow with {n_examples} examples "
          f"ready in {train_s:.1f} s (+{trained - after_load:.0f} MB; vectors from the cache when present)")
    rows = read_tsv(args.tsv)
    times: list[float] = []
    spinners = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 3600\nwhile time.time() < t: pass"])
                for _ in range(args.busy)]
    try:
        _measure(flow, encoders, rows, args.repeat, times)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    print(f"{len(times)} sentences from {args.tsv.name}{f' beside {args.busy} busy process(es)' if args.busy else ''} "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}): first turn (emergency layer + "
          f"recogniser + engine) p50 {pct(times, .5):.1f} ms, p95 {pct(times, .95):.1f} ms, max {max(times):.1f} ms")
    print(f"RSS: {base:.0f} MB before, {rss_mb():.0f} MB after (+{rss_mb() - base:.0f} MB for understanding)")
    return 0


def _measure(flow, encoders, rows, repeat: int, times: list[float]) -> None:
    from callbot.understanding.evaluate import first_turn

    for enc in encoders:
        enc._disk = None  # as in a call: a caller's sentence is new, not in the examples' cache
    for _ in range(repeat):
        for enc in encoders:
            enc._memo.clear()
        flow.recogniser._recent.clear()
        for text, _ in rows:
            t0 = time.perf_counter()
            first_turn(flow, text)
            times.append((time.perf_counter() - t0) * 1000)


if __name__ == "__main__":
    raise SystemExit(main())
