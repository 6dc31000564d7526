"""Flow-author commands: ``flows check|test|schema``, ``chat``, ``eval-intents``.

Registered into the main ``callbot`` parser by ``add_subcommands``; every
handler is ``func(args) -> int`` (the exit code). They only read files and the
terminal, so a town clerk can edit ``flows/mairie.yaml`` and check it without
a server, a phone line or models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from callbot.errors import FlowError
from callbot.paths import default_flow

DEFAULT_FLOW = default_flow()  # flows/mairie.yaml of the checkout, or its copy in the installed package


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

    p = sub.add_parser("eval-intents", help="accuracy of the intent recogniser on utterance<TAB>intent rows "
                       "(or, with a context<TAB>utterance<TAB>label header, of the emergency layer mid-call)")
    p.add_argument("file", type=Path)
    p.add_argument("--flow", type=Path, default=DEFAULT_FLOW)
    p.add_argument("--show", type=int, default=40, help="misrecognised rows to print")
    p.add_argument("--spoken", action="store_true",
                   help="speak each row with a voice the bot does not use, through G.711 and Whisper")
    p.add_argument("--voice", default=None, help="with --spoken: mb-fr1 (default), mb-fr4 or pico")
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


def cmd_eval(args) -> int:
    """The whole path of a caller's opening sentence (emergency layer, recogniser, threshold,
    clarifying question) on ``utterance<TAB>intent`` rows; last line ``accuracy: 0.xxx (N/M)``.
    ``--spoken`` first speaks each sentence with a voice the bot does not use, through the phone
    line and Whisper (see ``callbot_testing.bench.understanding``)."""
    from callbot.flows.loader import FlowLoadError, load_flow
    from callbot.understanding.evaluate import Report, first_turn, read_tsv

    if args.spoken:
        try:  # the spoken channel needs the test tools (other voices, a phone line): not in the runtime package
            from callbot_testing.bench.understanding import main as spoken
        except ImportError:
            print("--spoken needs the test tools of a checkout: ./scripts/setup --test, then "
                  "scripts/bench-understanding --tsv FILE", file=sys.stderr)
            return 2

        return spoken(["--tsv", str(args.file), "--flow", str(args.flow), "--show", str(args.show)]
                      + (["--voice", args.voice] if args.voice else []))
    from callbot.understanding import midcall

    try:
        flow = load_flow(args.flow)
        if midcall.is_midcall_file(args.file):  # context<TAB>utterance<TAB>label: answers in the middle of a call
            rows = midcall.read_midcall(args.file)
            flow.warm()
            print("\n".join(midcall.report(flow, rows, args.show)))
            return 0
        rows = read_tsv(args.file)
    except midcall.ContextError as e:
        print(e)
        return 1
    except FlowLoadError as e:
        print("\n".join(e.problems))
        return 1
    except OSError as e:
        print(f"cannot read {args.file}: {e}")
        return 1
    unknown = sorted({gold for _, gold in rows if gold not in flow.intents})
    if unknown:
        print(f"warning: intents not in the flow: {', '.join(unknown)}")
    t0 = time.perf_counter()
    flow.warm()
    print(f"flow {flow.name} version {flow.version}: recogniser ready in {time.perf_counter() - t0:.1f} s")
    report = Report()
    for text, gold in rows:
        report.add(text, gold, first_turn(flow, text))
    print("\n".join(report.lines(args.show)))
    return 0
