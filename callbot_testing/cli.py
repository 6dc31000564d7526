"""``scripts/call``: place one test call to a callbot server and print its timeline.

Steps run in command-line order. Unless ``--no-auto-wait``, the caller behaves
like a person: it waits for the bot to finish speaking before each ``--say`` /
``--press`` and after the last one.

    scripts/call --say "Bonjour, je voudrais les horaires de la mairie." --record /tmp/call.wav
    scripts/call --wav tests/fixtures/audio/lampadaire.wav --wav tests/fixtures/audio/adresse.wav --json
    scripts/call --press 1 --wait 2 --hangup
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.report import CallReport, summarize
from callbot_testing.steps import Hangup, Press, Say, Step, Wait, WaitForBot
from callbot_testing.twilio_caller import DEFAULT_ACCOUNT_SID, place_call


class _StepAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        steps = getattr(namespace, "steps", None) or []
        kind = self.dest
        if kind == "say":
            steps.append(("speak", Say(values, label=f"«{values}»")))
        elif kind == "wav":
            steps.append(("speak", Say(Path(values))))
        elif kind == "press":
            steps.append(("speak", Press(values)))
        elif kind == "wait":
            steps.append(("wait", Wait(float(values))))
        elif kind == "wait_bot":
            steps.append(("wait", WaitForBot(silence_after=float(values)) if values else WaitForBot()))
        elif kind == "hangup":
            steps.append(("hangup", Hangup()))
        namespace.steps = steps


def build_steps(raw: list[tuple[str, Step]], auto_wait: bool) -> list[Step]:
    if not auto_wait:
        return [s for _, s in raw]
    out: list[Step] = []
    prev = None
    for kind, step in raw:
        if kind in ("speak", "hangup") and prev not in ("wait",):
            out.append(WaitForBot())
        out.append(step)
        prev = kind
    if not raw or prev == "speak":
        out.append(WaitForBot())
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/call", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("CALLBOT_URL", "http://127.0.0.1:8080"), help="server base URL (default %(default)s)")
    p.add_argument("--token", default=os.environ.get("CALLBOT_TWILIO_AUTH_TOKEN"), help="Twilio auth token: sign the webhook")
    p.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    p.add_argument("--call-sid")
    p.add_argument("--from", dest="caller", default="+33612345678")
    p.add_argument("--to", dest="called", default="+33100000000")
    p.add_argument("--ws-url", help="connect here instead of the TwiML <Stream url>")
    p.add_argument("--public-url", default=os.environ.get("CALLBOT_PUBLIC_URL"),
                   help="the server's public URL: sign webhooks for it (its CALLBOT_PUBLIC_URL)")
    g = p.add_argument_group("steps (run in the order given)")
    g.add_argument("--say", action=_StepAction, metavar="TEXT", help="speak French text (offline TTS)")
    g.add_argument("--wav", action=_StepAction, metavar="FILE", help="speak a WAV file")
    g.add_argument("--press", action=_StepAction, metavar="DIGITS", help="send DTMF")
    g.add_argument("--wait", action=_StepAction, metavar="S", help="wait S seconds (silence)")
    g.add_argument("--wait-bot", action=_StepAction, nargs="?", metavar="SILENCE", help="wait for the bot to speak then be quiet")
    g.add_argument("--hangup", action=_StepAction, nargs=0, help="hang up now")
    p.add_argument("--no-auto-wait", action="store_true", help="do not wait for the bot around --say/--press")
    p.add_argument("--hangup-after", type=float, default=10.0, help="after the steps, hang up if the bot has not (default %(default)s s)")
    p.add_argument("--timeout", type=float, default=120.0, help="whole call limit (default %(default)s s)")
    p.add_argument("--record", metavar="WAV", help="record what the bot said (8 kHz)")
    p.add_argument("--fake-rest", type=int, metavar="PORT", help="serve a fake Twilio REST API on 127.0.0.1:PORT")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--calls", type=int, default=1, metavar="N", help="place N calls at once (load test); prints a summary")
    p.add_argument("--stagger", type=float, default=0.0, metavar="S", help="with --calls: start one call every S seconds")
    return p


async def _one(args: argparse.Namespace, steps: list[Step], rest: FakeTwilioRest | None, i: int) -> CallReport:
    await asyncio.sleep(i * args.stagger)
    record = args.record
    if record and args.calls > 1:
        record = str(Path(record).with_name(f"{Path(record).stem}-{i + 1}{Path(record).suffix}"))
    return await place_call(
        args.url, audio=steps, token=args.token, account_sid=args.account_sid,
        call_sid=args.call_sid if args.calls == 1 else None, caller=args.caller, called=args.called,
        record_path=record, ws_url=args.ws_url, hangup_after=args.hangup_after, timeout=args.timeout,
        rest=rest, public_base=args.public_url,
    )


async def _run(args: argparse.Namespace) -> int:
    steps = build_steps(getattr(args, "steps", None) or [], not args.no_auto_wait)
    rest = await FakeTwilioRest(args.account_sid, args.token, port=args.fake_rest).start() if args.fake_rest else None
    try:
        reports = await asyncio.gather(*(_one(args, steps, rest, i) for i in range(args.calls)))
    finally:
        if rest:
            await rest.stop()
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if args.calls == 1 else data, indent=2, ensure_ascii=False))
    else:
        if args.calls <= 3:
            print("\n\n".join(r.timeline() for r in reports))
        else:
            for r in reports:
                v2v = ", ".join("-" if d is None else f"{d:.2f}" for d in r.voice_to_voice + r.dtmf_to_voice)
                state = "ok" if r.completed else "FAILED: " + "; ".join(r.errors or [r.ended_by])
                print(f"{r.call_sid}  greeting {r.greeting_latency}  replies [{v2v}]  {state}")
        if args.calls > 1:
            print(summarize(list(reports)))
    return 0 if all(r.completed for r in reports) else 1


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
