"""``scripts/bench-load``: N concurrent Twilio calls for T seconds, each caller talking every ~8 s.

Keeps ``--calls`` calls up at once for ``--seconds`` (a call the bot ends is
replaced by a new one), with real Whisper on the server. Each caller waits for
the greeting, then says a fixture (or presses a key, one turn in five) every
~8 s (jittered), whether or not the bot is still talking (barge-in happens, as
with real callers). Prints answered/failed, greeting latency, voice-to-voice,
DTMF-to-voice, underruns, calls whose greeting came within 1 s, and the server
process's CPU % and RSS read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shutil
import sys
import time

from callbot_testing.bench import server as S
from callbot_testing.bench.latency import _patch_report_heard, install_gap_counter

# Utterances that keep a call going in flows/mairie.yaml (no goodbye, no transfer).
FIXTURES = ["horaires.wav", "lampadaire.wav", "adresse.wav", "description.wav", "etat_civil.wav",
            "oui_exactement.wav"]
PERIOD_S = 8.0
ASR_LINE = re.compile(r"asr ([\d.]+)s audio: (\d+) ms \(\+(\d+) ms queued(?:, beam (\d+))?\)( \[turn so far[^]]*\])?"
                      r"( \[early(, unused)?\])?")


def asr_summary(log_text: str) -> dict:
    """Where the server's Whisper time went, read from its INFO log (one line per decode)."""
    rows = [m.groups() for m in ASR_LINE.finditer(log_text)]
    decode = [int(r[1]) / 1000 for r in rows]
    queued = [int(r[2]) / 1000 for r in rows]
    beams = dict(collections.Counter(r[3] or "?" for r in rows))
    return {
        "decodes": len(rows),
        "redecodes": sum(1 for r in rows if r[4]),
        "early_used": sum(1 for r in rows if r[5] and not r[6]),
        "early_unused": sum(1 for r in rows if r[6]),
        "audio_s": S.stats([float(r[0]) for r in rows]),
        "decode": S.stats(decode),
        "queued": S.stats(queued),
        "beams": beams,
        "keypad_calls": log_text.count(": keypad mode"),
        "keypad_by_response": sum("Whisper answers in" in ln for ln in log_text.splitlines() if ": keypad mode" in ln),
        "degraded_calls": log_text.count("ASR queue full"),
        "skipped": log_text.count("audio: skipped, the caller went on"),
    }


def clean_delays(report, kind: str) -> list[float | None]:
    """Caller-side delays of turns that ended while the bot was silent.

    With a fixed cadence a caller sometimes finishes speaking while the bot is still
    talking (a prompt that does not allow barge-in, or a long one): the "next onset" is
    then a sentence of that prompt, not a reply. Those turns are left out.
    """
    out = []
    for t in report.turns:
        if t.kind != kind or not t.end:
            continue
        if any(s < t.end < e for s, e in report.bot_speech):
            continue
        out.append(t.delay)
    return out


async def call_marks(url: str, headers: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Provider call ids by what load did to them: ``keypad`` (moved to the keypad menu mid-call by
    admission control), ``keypad_any`` (on the keypad menu at any point), ``brief``/``greedy``
    (served a step down the degrading ladder)."""
    import aiohttp

    out: dict[str, set[str]] = {"keypad": set(), "keypad_any": set(), "brief": set(), "greedy": set()}
    async with aiohttp.ClientSession(headers=headers) as http:  # headers: the API token
        async with http.get(f"{url}/api/calls", params={"limit": "500"}) as r:
            calls = (await r.json())["calls"]
        for c in calls:
            async with http.get(f"{url}/api/calls/{c['id']}") as r:
                call = await r.json()
            sid, events = c.get("provider_call_id"), call.get("events", [])
            if any(e.get("type") == "error" and e.get("code") == "asr_busy" for e in events):
                out["keypad"].add(sid)
            if any(e.get("type") == "keypad_fallback" for e in events):
                out["keypad_any"].add(sid)
            for e in events:
                if e.get("type") == "degraded" and e.get("step") in out:
                    out[e["step"]].add(sid)
    return out


def caller_script(rng: random.Random, turns: int, period: float) -> list:
    from callbot_testing import audio as A
    from callbot_testing.steps import Hangup, Press, Say, Wait, WaitForBot

    steps: list = [WaitForBot(silence_after=0.3, timeout=10)]
    for k in range(turns):
        gap = period * rng.uniform(0.8, 1.2)
        if k % 5 == 4:
            steps += [Press(rng.choice("123")), Wait(gap)]
        else:
            name = rng.choice(FIXTURES)
            dur = len(A.read_wav(S.AUDIO / name)) / A.RATE
            steps += [Say(S.AUDIO / name), Wait(max(0.5, gap - dur))]
    steps.append(Hangup())
    return steps


def _failed_call(e: Exception, t0: float) -> dict:
    return {"answered": False, "completed": False, "greeting": None, "v2v": [], "v2v_clean": [], "dtmf": [],
            "underruns": 0, "underrun_s": 0.0, "errors": [repr(e)], "wall": time.monotonic() - t0}


async def one_call(srv: S.BenchServer, rest, rng: random.Random, deadline: float, period: float,
                   call_seconds: float = 0.0) -> dict:
    from callbot_testing.twilio_caller import place_call

    left = deadline - time.monotonic()
    if call_seconds:  # calls come and go, as on a real line (admission then acts on arrivals)
        left = min(left, call_seconds * rng.uniform(0.7, 1.3))
    turns = max(1, int(left / period))
    t0 = time.monotonic()
    try:
        report = await place_call(srv.url, audio=caller_script(rng, turns, period), token=S.TOKEN,
                                  account_sid=S.ACCOUNT_SID, rest=rest, timeout=turns * period * 1.3 + 30,
                                  hangup_after=1.0)
    except Exception as e:  # a refused/failed call is a result, not a crash of the bench
        return _failed_call(e, t0)
    heard = getattr(report, "_heard", None)
    return {
        "call_sid": report.call_sid,
        "v2v_clean": clean_delays(report, "say"),
        "answered": report.greeting_latency is not None,
        "completed": report.completed,
        "greeting": report.greeting_latency,
        "v2v": report.voice_to_voice,
        "dtmf": report.dtmf_to_voice,
        "underruns": getattr(heard, "underruns", 0),
        "underrun_s": getattr(heard, "underrun_s", 0.0),
        "late_frames": report.late_frames,
        "errors": report.errors,
        "wall": time.monotonic() - t0,
    }


async def conversation_call(srv: S.BenchServer, rest, rng: random.Random) -> dict:
    """One of ``bench-latency``'s scripted calls: the caller waits for each reply before it
    speaks, so every turn is a clean voice-to-voice sample, comparable with the single-call
    figures (``bench-load``'s own script talks on a timer, into whatever node the call is in,
    and some of those nodes wait on purpose: dictation hints)."""
    from callbot_testing.bench.latency import twilio_call, twilio_scripts

    t0 = time.monotonic()
    try:
        r = await twilio_call(srv, rest, rng.choice(twilio_scripts()))
    except Exception as e:  # a refused/failed call is a result, not a crash of the bench
        return _failed_call(e, t0)
    r.update(answered=r["greeting"] is not None, v2v_clean=r["v2v"], wall=time.monotonic() - t0)
    return r


async def run(args: argparse.Namespace) -> dict:
    from callbot_testing.fake_twilio_rest import FakeTwilioRest

    install_gap_counter()
    _patch_report_heard()
    env = dict(kv.split("=", 1) for kv in args.env)
    me = S.ProcSampler(os.getpid())
    srv = S.start_server(**env)
    results: list[dict] = []
    rng = random.Random(args.seed)
    try:
        sampler = S.ProcSampler(srv.pid)
        deadline = time.monotonic() + args.seconds
        async with FakeTwilioRest(S.ACCOUNT_SID, S.TOKEN, port=srv.rest_port) as rest:

            async def slot(i: int) -> None:
                await asyncio.sleep(i * args.ramp / max(1, args.calls))  # ramp up, like a busy morning
                while time.monotonic() < deadline - args.period:
                    call_rng = random.Random(rng.random())
                    results.append(await conversation_call(srv, rest, call_rng) if args.conversation else
                                   await one_call(srv, rest, call_rng, deadline, args.period, args.call_seconds))

            async def sample() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    sampler.sample()

            sampler_task = asyncio.create_task(sample())
            await asyncio.gather(*(slot(i) for i in range(args.calls)))
            sampler_task.cancel()
            marks = await call_marks(srv.url, srv.api_headers)
            # a call on the keypad menu at any point (from its start by the cap, or moved mid-call) hears a
            # caller's speech as silence: its "replies" are no-input reprompts, not voice-to-voice samples
            keypad = marks["keypad"] | marks["keypad_any"]
        proc = sampler.summary()
        proc["rss_mb_idle"] = sampler.rss[0]
        proc["caller_cpu_pct"] = me.summary()["cpu_pct_mean"]
    finally:
        S.stop_server(srv)
        asr = asr_summary(srv.log_path.read_text(errors="replace")) if srv.log_path.exists() else {}
        if getattr(args, "server_log", None) and srv.log_path.exists():
            shutil.copyfile(srv.log_path, args.server_log)
    greet = [r["greeting"] for r in results]
    v2v = [v for r in results for v in r["v2v"]]
    return {
        "calls": args.calls, "seconds": args.seconds, "env": env, "call_seconds": args.call_seconds,
        "conversation": args.conversation,
        "speech_turns_per_s": round(sum(len(r["v2v"]) for r in results) / max(1.0, args.seconds), 2),
        "placed": len(results),
        "answered": sum(r["answered"] for r in results),
        "failed": sum(not r["answered"] for r in results),
        "answered_within_1s": sum(g is not None and g <= 1.0 for g in greet),
        "greeting": S.stats(greet),
        "voice_to_voice": S.stats([v for r in results for v in r.get("v2v_clean", [])]),
        # calls admitted to speech recognition for their whole life (never on the keypad menu)
        "voice_to_voice_speech_calls": S.stats([v for r in results if r.get("call_sid") not in keypad
                                                for v in r.get("v2v_clean", [])]),
        "speech_calls": sum(1 for r in results if r.get("call_sid") not in keypad),
        **{f"{k}_calls": sum(1 for r in results if r.get("call_sid") in v) for k, v in marks.items()},
        "voice_to_voice_all": S.stats(v2v),
        "dtmf_to_voice": S.stats([v for r in results for v in r["dtmf"]]),
        "missing_replies": sum(v is None for v in v2v),
        "underruns": sum(r["underruns"] for r in results),
        "underrun_s": round(sum(r["underrun_s"] for r in results), 3),
        "late_caller_frames": sum(r.get("late_frames", 0) for r in results),
        "server": proc,
        "asr": asr,
        "errors": sorted({e for r in results for e in r["errors"]})[:10],
    }


def print_summary(s: dict, flush: bool = False) -> None:
    def line(name: str, st: dict) -> str:
        if not st["n"]:
            return f"  {name:<16} -"
        return (f"  {name:<16} p50 {st['p50'] * 1000:5.0f} ms  p95 {st['p95'] * 1000:5.0f} ms  "
                f"max {st['max'] * 1000:5.0f} ms  (n={st['n']})")

    sv = s["server"]
    print(f"bench-load: {s['calls']} concurrent calls for {s['seconds']} s"
          + (f", each ~{s['call_seconds']:g} s" if s.get("call_seconds") else "")
          + (", bench-latency's conversations" if s.get("conversation") else "")
          + f"; {s['speech_turns_per_s']} speech turns/s"
          + (f"  env {s['env']}" if s["env"] else ""))
    print(f"  calls placed {s['placed']}, answered {s['answered']}, failed {s['failed']}, "
          f"greeting within 1 s {s['answered_within_1s']}/{s['placed']}")
    print(line("greeting", s["greeting"]))
    print(line("voice-to-voice", s["voice_to_voice"]) + "  (turns ending while the bot was silent)")
    if s["speech_calls"] < s["placed"]:
        print(line("  speech calls", s["voice_to_voice_speech_calls"])
              + f"  ({s['speech_calls']} calls never on the keypad menu)")
    print(line("dtmf-to-voice", s["dtmf_to_voice"]))
    print(f"  speech turns without a reply {s['missing_replies']}, underruns {s['underruns']} "
          f"({s['underrun_s']} s), late caller frames {s['late_caller_frames']}")
    print(f"  server CPU {sv['cpu_pct_mean']} % mean ({sv['cpu_pct_max']} % max of 200), "
          f"RSS {sv['rss_mb_idle']:.0f} MB idle -> {sv['rss_mb_max']:.0f} MB max; "
          f"the callers' own process {sv['caller_cpu_pct']} % (same machine)")
    if sv.get("cpu_pct_by_thread"):
        print("  server CPU by thread: " + ", ".join(f"{g} {v} %" for g, v in sv["cpu_pct_by_thread"].items()))
    a = s.get("asr") or {}
    if a.get("decodes"):
        print(f"  server ASR: {a['decodes']} decodes ({a['redecodes']} re-decodes of a resumed turn, "
              f"{a.get('skipped', 0)} partials skipped as the caller went on; early decodes "
              f"{a['early_used']} used, {a['early_unused']} thrown away), beams {a['beams']}; "
              f"decode p50/p95 {a['decode']['p50'] * 1000:.0f}/{a['decode']['p95'] * 1000:.0f} ms, "
              f"queued p50/p95 {a['queued']['p50'] * 1000:.0f}/{a['queued']['p95'] * 1000:.0f} ms; "
              f"calls in keypad mode {a['keypad_calls']} at start ({a.get('keypad_by_response', 0)} for Whisper's "
              f"response time), {a['degraded_calls']} mid-call")
    print(f"  degrading ladder: brief prompts {s.get('brief_calls', 0)} calls, greedy decoding "
          f"{s.get('greedy_calls', 0)}, keypad menu {s.get('keypad_any_calls', 0)} (of {s['placed']})")
    for e in s["errors"]:
        print(f"  error: {e[:200]}")
    if flush:
        sys.stdout.flush()


def cpu_line() -> str:
    """The CPU model and the instruction sets that change Whisper's speed (AVX2 vs AVX-512/VNNI)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "cpu: unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"cpu: {model}, {os.cpu_count()} vCPU, {' + '.join(isa) or 'no AVX2'}"


def sweep_table(rows: list[dict]) -> str:
    """One markdown row per concurrency: what a caller gets, and what it costs the machine."""
    def ms(st: dict, q: str) -> str:
        return f"{st[q] * 1000:.0f}" if st.get("n") else "-"

    def pct(n: int, d: int) -> str:
        return f"{100 * n / d:.0f} %" if d else "-"

    out = ["| calls | placed | answered | keypad menu | brief prompts | greedy ASR | voice-to-voice p50 / p95 "
           "(speech calls) | all turns p95 | greeting p95 | server CPU (of 200 %) | RSS max |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        v, placed = s["voice_to_voice_speech_calls"], s["placed"]
        out.append(f"| {s['calls']} | {placed} | {pct(s['answered'], placed)} | {pct(s.get('keypad_any_calls', 0), placed)}"
                   f" | {pct(s.get('brief_calls', 0), placed)} | {pct(s.get('greedy_calls', 0), placed)}"
                   f" | {ms(v, 'p50')} / {ms(v, 'p95')} ms (n={v['n']}) | {ms(s['voice_to_voice'], 'p95')} ms"
                   f" | {ms(s['greeting'], 'p95')} ms | {s['server']['cpu_pct_mean']} % | {s['server']['rss_mb_max']:.0f} MB |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20, help="concurrent calls")
    ap.add_argument("--seconds", type=float, default=90, help="how long to keep them up")
    ap.add_argument("--period", type=float, default=PERIOD_S, help="seconds between a caller's turns")
    ap.add_argument("--conversation", action="store_true",
                    help="callers run bench-latency's scripts (wait for each reply, then speak), call after call")
    ap.add_argument("--call-seconds", type=float, default=0.0,
                    help="mean length of a call (then the slot places a new one); 0 = one call per slot")
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds over which calls arrive")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--env", action="append", default=[], metavar="CALLBOT_X=V", help="server setting override")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--server-log", metavar="PATH", help="keep the server's log there (per-turn events)")
    ap.add_argument("--sweep", default="", metavar="1,5,10,20,30",
                    help="run each concurrency in turn (a fresh server each) and print one table")
    args = ap.parse_args(argv)
    if args.sweep:
        rows = []
        for n in (int(x) for x in args.sweep.split(",")):
            args.calls = n
            rows.append(asyncio.run(run(args)))
            print_summary(rows[-1], flush=True)
        print(cpu_line())
        print(sweep_table(rows))
        return 0 if all(r["failed"] == 0 for r in rows) else 1
    summary = asyncio.run(run(args))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print_summary(summary)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
