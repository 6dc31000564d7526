"""Flow-author commands: ``flows check|test|schema``, ``chat``, ``eval-intents``.

Registered into the main ``callbot`` parser by ``add_subcommands``; every
handler is ``func(args) -> int`` (the exit code). They only read files and the
terminal, so a town clerk can edit ``flows/mairie.yaml`` and check it without
a server, a phone line or models.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

from callbot.config import PROJECT_ROOT
from callbot.errors import FlowError

DEFAULT_FLOW = PROJECT_ROOT / "flows" / "mairie.yaml"


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    flows = sub.add_parser("flows", help="check, test and export call flows")
    fsub = flows.add_subparsers(dest="flows_command")
    flows.set_defaults(func=lambda args: (flows.print_help(), 2)[1])

    p = fsub.add_parser("check", help="validate flow files (exit 1 with file:line messages)")
    p.add_argument("files", nargs="*", type=Path, default=[DEFAULT_FLOW])
    p.set_defaults(func=cmd_check)

    p = fsub.add_parser("test", help="run YAML conversation tests (default: tests/flows/*.yaml)")
    p.add_argument("files", nargs="*")
    p.add_argument("--flow", type=Path, default=None, help="run every test against this flow")
    p.set_defaults(func=cmd_test)

    p = fsub.add_parser("schema", help="print the flow JSON Schema")
    p.add_argument("--write", type=Path, default=None, help="write it to this file instead")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("chat", help="talk to a flow in the terminal")
    p.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    p.add_argument("--digits", action="store_true", help="lines are keypad input")
    p.add_argument("--caller", default="+33600000000")
    p.add_argument("--now", default=None, help="ISO local time, e.g. 2025-03-12T10:00 (default: now)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("eval-intents", help="accuracy of the intent recogniser on utterance<TAB>intent rows")
    p.add_argument("file", type=Path)
    p.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    p.add_argument("--show", type=int, default=40, help="misrecognised rows to print")
    p.set_defaults(func=cmd_eval)


def cmd_check(args) -> int:
    from callbot.flows.loader import FlowLoadError, load_flow

    status = 0
    for path in args.files:
        try:
            flow = load_flow(path)
        except FlowLoadError as e:
            for problem in e.problems:
                print(problem)
            status = 1
        except FlowError as e:
            print(e.message)
            status = 1
        else:
            print(f"{path}: ok ({len(flow.nodes)} nodes, {len(flow.intents)} intents, version {flow.version})")
    return status


def cmd_test(args) -> int:
    from callbot.flows.testing import find_tests, run_file

    total = failed = 0
    for path in find_tests(args.files):
        try:
            results = run_file(path, args.flow)
        except FlowError as e:
            print(e.message)
            failed += 1
            continue
        for r in results:
            total += 1
            if r.ok:
                print(f"ok    {Path(r.file).name}: {r.name}")
            else:
                failed += 1
                print(f"FAIL  {Path(r.file).name}: {r.name}")
                for problem in r.problems:
                    print(f"      {problem}")
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_schema(args) -> int:
    from callbot.flows.schema import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_chat(args) -> int:
    from callbot.flows.chat import run_chat

    return run_chat(args)


def read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 2 or not row[0].strip() or row[0].startswith("#"):
                continue
            if (row[0].strip(), row[1].strip()) == ("utterance", "intent"):
                continue
            rows.append((row[0].strip(), row[1].strip()))
    return rows


def cmd_eval(args) -> int:
    """Prints misses, confusion pairs, per-intent recall, and last ``accuracy: 0.xxx (N/M)``.

    A no-match counts as ``hors_sujet``: the intent list defines it as what the
    town hall does not handle *or cannot be understood*, and that is what the
    bot does with it (it says so and offers the menu instead of guessing).
    """
    from callbot.flows.loader import FlowLoadError, load_flow

    try:
        flow = load_flow(args.flow)
        rows = read_tsv(args.file)
    except FlowLoadError as e:
        print("\n".join(e.problems))
        return 1
    except OSError as e:
        print(f"cannot read {args.file}: {e}")
        return 1
    unknown = sorted({gold for _, gold in rows if gold not in flow.intents})
    if unknown:
        print(f"warning: intents not in the flow: {', '.join(unknown)}")
    rec = flow.recogniser
    pairs: Counter = Counter()
    per_gold: Counter = Counter()
    per_gold_ok: Counter = Counter()
    correct = top1 = 0
    times = []
    misses = []
    for text, gold in rows:
        t0 = time.perf_counter()
        m = rec.recognise(text)
        times.append((time.perf_counter() - t0) * 1000)
        pred = m.intent or "hors_sujet"
        per_gold[gold] += 1
        if m.ranking and m.ranking[0][0] == gold:
            top1 += 1
        if pred == gold:
            correct += 1
            per_gold_ok[gold] += 1
        else:
            pairs[(gold, pred if m.intent else "(no match)")] += 1
            misses.append((gold, pred if m.intent else "(no match)", m.confidence, text))
    for gold, pred, conf, text in misses[: args.show]:
        print(f"miss  {gold:22} -> {pred:22} {conf:.2f}  {text}")
    if pairs:
        print("confusions (expected -> recognised: count):")
        for (gold, pred), n in pairs.most_common():
            print(f"  {gold} -> {pred}: {n}")
    weak = [f"{g} {per_gold_ok[g]}/{n}" for g, n in sorted(per_gold.items()) if per_gold_ok[g] < n]
    if weak:
        print("recall below 100%: " + ", ".join(weak))
    times.sort()
    n = len(rows)
    if n:
        print(f"latency ms: median {times[n // 2]:.2f}, p95 {times[int(n * 0.95) - 1 if n > 1 else 0]:.2f}, "
              f"max {times[-1]:.2f}")
        urg = per_gold.get("urgence", 0)
        print(f"urgence recall: {per_gold_ok['urgence']}/{urg}")
        print(f"top-1 without threshold: {top1 / n:.3f} ({top1}/{n})")
    print(f"accuracy: {correct / n if n else 0:.3f} ({correct}/{n})")
    return 0
