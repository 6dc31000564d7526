"""``scripts/bench-latency``: sequential calls with speech and keypad turns, measured caller side.

Each call follows one of two scripts through ``flows/mairie.yaml`` (open
question -> yes/no -> keypad survey -> goodbye, or keypad menu -> yes -> open
request -> goodbye), so it covers the flow's endpointing hints (0.8 s at the
greeting, the default elsewhere) and ends with the bot hanging up, which also
measures goodbye audio end -> REST hang-up.

Figures are what the project's callers hear: ``twilio_caller.place_call``
(Twilio Media Streams, real-time 20 ms frames, Twilio-like playout) or
``sip.caller.scripted_call`` (sipp signalling + RTP). Underruns: bot audio that
ran dry in the middle of speech (the playout buffer emptied right after loud
audio and silence had to be inserted before the next chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from typing import Any

import numpy as np

from callbot_testing.bench import server as S
from callbot_testing import audio as A

LOUD_RMS = 300.0


class GapCountingHeard(A.HeardAudio):
    """``HeardAudio`` that also counts playout underruns (a gap right after loud audio)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.underruns = 0
        self.underrun_s = 0.0
        self._cleared = False  # a barge-in cut the audio: the next gap is not an underrun

    def clear(self, now: float) -> list[str]:
        self._cleared = True
        return super().clear(now)

    def write(self, payload: bytes, now: float) -> float:
        start = max(self._pos(now), len(self.buf))
        if start > len(self.buf) and len(self.buf) >= 80 and not self._cleared:
            tail = A.ulaw_decode(bytes(self.buf[-80:])).astype(np.float64)
            if np.sqrt(np.mean(tail * tail)) > LOUD_RMS:
                self.underruns += 1
                self.underrun_s += (start - len(self.buf)) / A.RATE
        self._cleared = False
        return super().write(payload, now)


def install_gap_counter() -> None:
    """The Twilio caller builds ``A.HeardAudio()``: make that our counting subclass."""
    A.HeardAudio = GapCountingHeard  # type: ignore[misc]


def twilio_scripts() -> list[list]:
    from callbot_testing.steps import Hangup, Press, Say, WaitForBot

    au = S.AUDIO
    return [
        [WaitForBot(), Say(au / "horaires.wav"), WaitForBot(), Say(au / "non_merci.wav"), WaitForBot(),
         Press("5"), WaitForBot(silence_after=1.5, timeout=20)],
        [WaitForBot(), Press("1"), WaitForBot(), Say(au / "oui_exactement.wav"), WaitForBot(),
         Say(au / "etat_civil.wav"), WaitForBot(), Say(au / "au_revoir.wav"), WaitForBot(silence_after=1.5),
         Hangup()],
    ]


async def twilio_call(srv: S.BenchServer, rest, steps: list) -> dict:
    from callbot_testing.twilio_caller import place_call

    report = await place_call(srv.url, audio=steps, token=S.TOKEN, account_sid=S.ACCOUNT_SID, rest=rest,
                              timeout=90, hangup_after=3.0)
    hangup_gap = None
    if report.rest_hangup_at is not None and report.bot_speech:
        hangup_gap = round(report.rest_hangup_at - report.bot_speech[-1][1], 3)
    return {
        "call_sid": report.call_sid,
        "completed": report.completed,
        "greeting": report.greeting_latency,
        "v2v": report.voice_to_voice,
        "dtmf": report.dtmf_to_voice,
        "hangup_gap": hangup_gap,
        "underruns": getattr(_last_heard(report), "underruns", 0),
        "underrun_s": getattr(_last_heard(report), "underrun_s", 0.0),
        "late_frames": report.late_frames,
        "errors": report.errors + report.warnings,
        "timeline": report.timeline(),
    }


def _last_heard(report):  # analyse() does not keep HeardAudio; the counter is stashed by the patch below
    return getattr(report, "_heard", None)


def sip_scripts() -> list[list]:
    from callbot_testing.sip_caller import Step

    au = S.AUDIO
    return [
        [Step("wav", str(au / "horaires.wav")), Step("wav", str(au / "non_merci.wav")), Step("press", "5"),
         Step("wait", "4")],
        [Step("press", "1"), Step("wav", str(au / "oui_exactement.wav")), Step("wav", str(au / "etat_civil.wav")),
         Step("wav", str(au / "au_revoir.wav")), Step("wait", "3")],
    ]


async def sip_call(srv: S.BenchServer, steps: list, workdir) -> dict:
    import callbot_testing.sip_caller as C

    out = await C.scripted_call(f"127.0.0.1:{srv.sip_port}", steps, codec="PCMU", workdir=workdir,
                                log=lambda *a: None)
    turns = out.get("turns", [])
    return {
        "completed": out.get("sipp_rc") == 0 and "error" not in out,
        "greeting": out.get("first_greeting_audio_s"),
        "v2v": [t.get("voice_to_voice_s") for t in turns if t["kind"] in ("say", "wav")],
        "dtmf": [t.get("voice_to_voice_s") for t in turns if t["kind"] == "press"],
        "hangup_gap": None,
        "underruns": 0,
        "errors": [out["error"]] if "error" in out else ([out["sipp_errors"][-300:]] if out.get("sipp_rc") else []),
    }


def _patch_report_heard() -> None:
    """Keep the caller's HeardAudio on the report so underruns can be read after the call."""
    from callbot_testing import report as R
    from callbot_testing import twilio_caller as T

    original = R.analyse

    def analyse(report, heard, offset, record_path):
        report._heard = heard
        return original(report, heard, offset, record_path)

    T.analyse = analyse


async def run(args: argparse.Namespace) -> dict:
    install_gap_counter()
    _patch_report_heard()
    env = dict(kv.split("=", 1) for kv in args.env)
    srv = S.start_server(**env)
    results: list[dict] = []
    try:
        sampler = S.ProcSampler(srv.pid)
        if args.transport == "twilio":
            from callbot_testing.fake_twilio_rest import FakeTwilioRest

            scripts = twilio_scripts()
            async with FakeTwilioRest(S.ACCOUNT_SID, S.TOKEN, port=srv.rest_port) as rest:
                for i in range(args.calls):
                    r = await twilio_call(srv, rest, scripts[i % len(scripts)])
                    results.append(r)
                    _progress(i, r, args)
        else:
            scripts = sip_scripts()
            for i in range(args.calls):
                r = await sip_call(srv, scripts[i % len(scripts)], srv.tmp)
                results.append(r)
                _progress(i, r, args)
        proc = sampler.summary()
    finally:
        S.stop_server(srv)
        if args.server_log:
            shutil.copyfile(srv.log_path, args.server_log)
    summary = summarize(results, proc)
    summary.update(transport=args.transport, calls=args.calls, env=env)
    return summary


def _progress(i: int, r: dict, args) -> None:
    fmt = lambda v: "-" if v is None else f"{v * 1000:.0f}"  # noqa: E731
    print(f"call {i + 1}/{args.calls}: greeting {fmt(r['greeting'])} ms, v2v "
          f"{', '.join(fmt(v) for v in r['v2v'])} ms, dtmf {', '.join(fmt(v) for v in r['dtmf'])} ms, "
          f"hang-up gap {fmt(r['hangup_gap'])} ms{'' if r['completed'] else '  NOT completed'}",
          file=sys.stderr, flush=True)
    if args.verbose and "timeline" in r:
        print(r["timeline"], file=sys.stderr)


def summarize(results: list[dict], proc: dict) -> dict:
    return {
        "completed": sum(r["completed"] for r in results),
        "greeting": S.stats([r["greeting"] for r in results]),
        "voice_to_voice": S.stats([v for r in results for v in r["v2v"]]),
        "dtmf_to_voice": S.stats([v for r in results for v in r["dtmf"]]),
        "hangup_gap": S.stats([r["hangup_gap"] for r in results]),
        "missing_replies": sum(v is None for r in results for v in r["v2v"] + r["dtmf"]),
        "underruns": sum(r["underruns"] for r in results),
        "server": proc,
        "errors": sorted({e for r in results for e in r["errors"]})[:10],
    }


def print_summary(s: dict) -> None:
    def line(name: str, st: dict) -> str:
        if not st["n"]:
            return f"  {name:<20} -"
        return (f"  {name:<20} p50 {st['p50'] * 1000:5.0f} ms  p95 {st['p95'] * 1000:5.0f} ms  "
                f"max {st['max'] * 1000:5.0f} ms  (n={st['n']})")

    print(f"bench-latency over {s['transport']}: {s['calls']} calls, {s['completed']} completed"
          + (f"  env {s['env']}" if s["env"] else ""))
    print(line("greeting", s["greeting"]))
    print(line("voice-to-voice", s["voice_to_voice"]))
    print(line("dtmf-to-voice", s["dtmf_to_voice"]))
    print(line("goodbye -> REST hang-up", s["hangup_gap"]))
    print(f"  missing replies {s['missing_replies']}, underruns {s['underruns']}, server CPU "
          f"{s['server']['cpu_pct_mean']} % mean, RSS {s['server']['rss_mb_max']} MB max")
    for e in s["errors"]:
        print(f"  note: {e[:200]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", choices=["twilio", "sip"], default="twilio")
    ap.add_argument("--calls", type=int, default=6, help="sequential calls (scripts alternate)")
    ap.add_argument("--env", action="append", default=[], metavar="CALLBOT_X=V", help="server setting override")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each call's timeline")
    ap.add_argument("--server-log", metavar="PATH", help="keep the server's log there (per-turn ASR timings)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    summary = asyncio.run(run(args))
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary, indent=1) if args.json else "", end="")
    if not args.json:
        print_summary(summary)
    return 0 if summary["completed"] == args.calls else 1


if __name__ == "__main__":
    raise SystemExit(main())
