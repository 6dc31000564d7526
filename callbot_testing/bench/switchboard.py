"""Switchboard benchmark on a real SIP line: warm-transfer latency, then many callers on hold.

What is measured, and why:

1. Warm transfer, K sequential calls. A baresip caller (1 kHz tone) dials the in-process
   ``SipServer``; ``on_call`` puts it in the ``etat_civil`` queue (``Waiting.run``, as a flow
   ``transfer`` step would); one auto-answering baresip agent (600 Hz) is ``available``.
   (a) queue entry -> offer visible in Redis (``CallQueue.offered_to``): how fast an agent's
   console can show a call; (b) the console's accept (``CallQueue.answer``) -> the agent's
   phone ``CALL_ESTABLISHED``: how long the agent waits after clicking. (b) includes the
   worker noticing the answer (0.2 s poll, looked at between 0.5 s music slices) and the
   "je vous passe un conseiller" prompt played to the caller before the agent is dialled. (c) the agent heard the caller (1 kHz in the
   agent's recording). Agent wrap-up is 0 s so the next call is offered at once.
2. Waiting load: N callers on hold at once for S seconds, the agent ``away``: hold music and
   announcements stream to all of them from the bot's event loop. Reported: the bot process's
   CPU (``time.process_time`` delta / wall: the SIP stack runs in this process), the event-loop
   lag (a 20 ms sleeper: how late it wakes), and that every caller received audio. Then all
   hang up: the queue must be empty and each call must record ``abandoned`` with its wait.

Loopback only; Redis is a throw-away ``redis-server``; prompts use the configured voice
(``--beep``: a 440 Hz beep instead). Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from callbot_testing.bench.nlu import cpu_flags
from callbot_testing.bench.server import fmt_stats, stats
import callbot_testing.sip_caller as C

SERVICE = "etat_civil"
AGENT = "alice"
ANNOUNCE_EVERY_S = 10.0
AUDIO_RMS_MIN = 300.0
POLL_S = 0.005  # the offer poller's period: resolution of (a)
TALK_S = 1.5  # caller and agent connected, then the caller hangs up


def beep(text: str, rate: int = 8000) -> bytes:
    """Stands in for speech (``--beep``): 0.4 s of 440 Hz per prompt."""
    t = np.arange(int(0.4 * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()


def tone_at(pcm: bytes, rate: int, *, hz: float) -> bool:
    """A non-silent stretch of ``pcm`` whose dominant frequency is ``hz`` (±15 Hz)."""
    return any(abs(C.pcm_stats(pcm[int(s * rate) * 2: int(e * rate) * 2], rate)["peak_hz"] - hz) < 15
               for s, e in C.segments(pcm, rate))


def audible_fraction(pcm: bytes, rate: int, thresh: float = 100.0) -> float:
    """Share of 1 s windows (from the first audio on) above ``thresh`` RMS: gaps in what the caller heard."""
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n = len(a) // rate
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(a[: n * rate].reshape(n, rate) ** 2, axis=1))
    on = np.flatnonzero(rms > thresh)
    return 0.0 if not len(on) else float(np.mean(rms[on[0]:] > thresh))


class StampedRecorder:
    """A ``CallRecorder`` that also keeps the monotonic time of each event (same clock as the peers')."""

    def __init__(self, call_id: str) -> None:
        from callbot.recorder import CallRecorder

        self.inner = CallRecorder(None, call_id)
        self.at: dict[str, float] = {}

    def emit(self, event):
        self.at.setdefault(event.type, time.monotonic())
        return self.inner.emit(event)

    @property
    def history(self):
        return self.inner.history


class Lag:
    """Sleeps 20 ms in a loop and records how late it wakes."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + 0.02
            await asyncio.sleep(0.02)
            self.late.append(time.monotonic() - due)

    async def stop(self) -> list[float]:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return self.late


async def start_peer(workdir: Path, taken: set[int] | None = None, tries: int = 3, **kw):
    """A started ``BaresipPeer``; retried on new ports (on a loaded machine its control port can miss 5 s).
    ``taken``: RTP port-range slots already used (``BaresipPeer`` derives its range from the SIP port)."""
    for attempt in range(tries):
        peer = C.BaresipPeer(workdir, **kw)
        while taken is not None and peer.sip_port % 200 in taken:
            peer.sip_port = C.free_port()
        try:
            await peer.start()
        except RuntimeError:
            await peer.stop()  # kills the half-started process
            if attempt == tries - 1:
                raise
            continue
        if taken is not None:
            taken.add(peer.sip_port % 200)
        return peer


def new_dec_wav(peer, before: set[Path]) -> Path | None:
    new = sorted(set(peer.dump_dir.glob("*-dec.wav")) - before)
    return new[-1] if new else None


async def until(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(step)
    return None


async def transfers(sb, server, recorders, outcomes, agent, caller, k: int, prompt_s: float,
                    out: dict) -> list[str]:
    """Part 1; returns the failed checks."""
    await sb.presence.set(AGENT, "available")
    uri = f"sip:mairie@127.0.0.1:{server.port}"
    a_offer, b_est, b_seen, b_ring, heard, heard_back, failed = [], [], [], [], [], [], []
    for i in range(k):
        before_a, before_c = set(agent.dump_dir.glob("*-dec.wav")), set(caller.dump_dir.glob("*-dec.wav"))
        n_out = len(outcomes)
        t_dial = await caller.dial(uri)
        offer = await until(lambda: sb.queue.offered_to(AGENT), 15, POLL_S)
        t_offer = time.monotonic()
        if offer is None or offer.call_id not in recorders:
            failed.append(f"call {i + 1}: never offered to the agent")
            await caller.hangup()
            break
        rec = recorders[offer.call_id]
        a_offer.append(t_offer - rec.at["queued"])
        t_accept = time.monotonic()
        if not await sb.queue.answer(AGENT, offer.call_id, True):
            failed.append(f"call {i + 1}: the offer was gone when the console accepted it")
        est = await agent.wait_event("CALL_ESTABLISHED", 20, after=t_accept)
        if est is None:
            failed.append(f"call {i + 1}: the agent's phone never answered")
        else:
            b_est.append(est["_t"] - t_accept)
            t_seen = rec.at.get("agent_answered", t_accept)
            t_invite = min((t for t, e in agent.events if t >= t_accept), default=None)  # auto-answer: no CALL_INCOMING
            b_seen.append(t_seen - t_accept)
            b_ring.append(t_invite - t_seen if t_invite else None)
            await asyncio.sleep(TALK_S)
        t_hang = time.monotonic()
        await caller.hangup()
        await agent.wait_event("CALL_CLOSED", 10, after=t_hang)
        await caller.wait_event("CALL_CLOSED", 10, after=t_dial)

        async def done():
            return len(outcomes) > n_out and (await sb.presence.get(AGENT)).state == "available"
        if not await until(done, 10):
            failed.append(f"call {i + 1}: no outcome / agent not available again")
        await asyncio.sleep(0.3)  # sndfile closes the recordings
        wav_a, wav_c = new_dec_wav(agent, before_a), new_dec_wav(caller, before_c)
        heard.append(bool(wav_a) and tone_at(*C.read_wav(wav_a), hz=1000))
        heard_back.append(bool(wav_c) and tone_at(*C.read_wav(wav_c), hz=600))
    results = [o.result for o in outcomes]
    if not heard or not heard[-1]:
        failed.append("the agent did not hear the caller (no 1 kHz in its recording) on the last call")
    if results.count("agent") != k:
        failed.append(f"outcomes {results}: expected {k} x agent")
    if await sb.queue.length(SERVICE):
        failed.append("queue not empty after the transfers")
    out.update(entry_to_offer_s=stats(a_offer), accept_to_established_s=stats(b_est),
               accept_to_worker_s=stats(b_seen), worker_to_agent_invite_s=stats(b_ring),
               agent_heard_caller=sum(heard), caller_heard_agent=sum(heard_back), calls=k)
    print(fmt_stats("entry -> offer (Redis)", a_offer) + f"  [polled every {POLL_S * 1000:.0f} ms]")
    print(fmt_stats("accept -> agent phone", b_est) + "  [console accept -> agent's CALL_ESTABLISHED]")
    print(fmt_stats("  accept -> worker", b_seen) + "  [0.2 s answer poll; the answer cuts the music]")
    print(fmt_stats("  worker -> INVITE", b_ring) + f"  [the {prompt_s:.2f} s transfer prompt, then the dial]")
    print(f"  agent heard the caller (1 kHz) on {sum(heard)}/{len(heard)} calls; "
          f"caller heard the agent (600 Hz) on {sum(heard_back)}/{len(heard_back)}")
    return failed


async def waiting_load(sb, server, recorders, outcomes, tmp: Path, n: int, seconds: float, taken: set[int],
                       out: dict) -> list[str]:
    """Part 2; returns the failed checks."""
    await sb.presence.set(AGENT, "away")
    outcomes.clear()
    recorders.clear()
    t0, c0 = time.monotonic(), time.process_time()
    await asyncio.sleep(3.0)
    idle_pct = 100 * (time.process_time() - c0) / (time.monotonic() - t0)
    tone = C.tone_wav(tmp / "wait-tone.wav", 1000, seconds + 90)
    peers: list = []
    failed: list[str] = []
    try:
        for i in range(n):
            peers.append(await start_peer(tmp / f"waiter{i}", taken, user=f"waiter{i}", source_wav=tone))
        for p in peers:
            await p.dial(f"sip:mairie@127.0.0.1:{server.port}")
            await asyncio.sleep(0.2)

        async def all_queued():
            return sum("queued" in r.at for r in recorders.values()) >= n and await sb.queue.length(SERVICE) >= n
        if not await until(all_queued, 30):
            failed.append(f"only {await sb.queue.length(SERVICE)}/{n} callers reached the queue")
        lag = Lag()
        t0, c0 = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        cpu_pct = 100 * (time.process_time() - c0) / (time.monotonic() - t0)
        late = await lag.stop()
        t_hang = time.monotonic()
        await asyncio.gather(*(p.hangup() for p in peers))
        await asyncio.gather(*(p.wait_event("CALL_CLOSED", 10, after=t_hang) for p in peers))

        await until(lambda: len(outcomes) >= n, 15)
        await asyncio.sleep(0.3)
    finally:
        await asyncio.gather(*(p.stop() for p in peers), return_exceptions=True)
    rms, frac = [], []
    for p in peers:
        wav = p.recordings()[1]
        pcm, rate = C.read_wav(wav) if wav else (b"", 8000)
        rms.append(C.pcm_stats(pcm, rate)["rms"])
        frac.append(audible_fraction(pcm, rate))
    abandoned = [e.wait_s for r in recorders.values() for e in r.history if e.type == "abandoned"]
    queue_left = await sb.queue.length(SERVICE) + len(await sb.queue.waiting())
    if sum(r > AUDIO_RMS_MIN for r in rms) < n:
        failed.append(f"callers without audio: RMS {[round(r) for r in rms]}")
    if queue_left:
        failed.append(f"queue not empty after the hang-ups ({queue_left} left)")
    if len(abandoned) < n or min(abandoned, default=0) < seconds - 2:
        failed.append(f"abandoned events {len(abandoned)}/{n}, waits {[round(w, 1) for w in abandoned]}")
    lag_ms = stats([v * 1000 for v in late])
    out.update(callers=n, seconds=seconds, idle_cpu_pct=round(idle_pct, 1), cpu_pct=round(cpu_pct, 1),
               cpu_pct_per_caller=round(cpu_pct / max(1, n), 2), loop_lag_ms=lag_ms,
               audio_rms=[round(r) for r in rms], audible_fraction=[round(f, 3) for f in frac],
               abandoned=len(abandoned), abandoned_wait_min_s=round(min(abandoned, default=0), 1),
               queue_empty=not queue_left)
    print(f"  bot process CPU: {cpu_pct:.1f} % of one core over {seconds:.0f} s "
          f"({cpu_pct / max(1, n):.2f} % per waiting caller; {idle_pct:.1f} % idle before the callers)"
          "  [process_time / wall]")
    print(fmt_stats("event-loop lag", late) + "  [20 ms sleeper, lateness]")
    print(f"  audio: {sum(r > AUDIO_RMS_MIN for r in rms)}/{n} callers got audio (RMS > {AUDIO_RMS_MIN:.0f}); "
          f"RMS min {min(rms, default=0):.0f}, audible 1 s windows min {min(frac, default=0):.0%}")
    print(f"  after hang-up: queue {'empty' if not queue_left else f'NOT empty ({queue_left})'}; "
          f"abandoned events {len(abandoned)}/{n}, wait min {min(abandoned, default=0):.1f} s "
          f"(>= {seconds - 2:.0f} s expected)")
    return failed


async def run(args, out: dict) -> list[str]:
    import redis.asyncio as aioredis

    from callbot.redis_server import RedisServer
    from callbot.switchboard import policy
    from callbot.switchboard.queue import WaitingCall
    from callbot.switchboard.service import Switchboard
    from callbot.switchboard.waiting import SAY, STATIC_PROMPTS, Waiting
    from callbot.telephony.sip.server import SipServer

    tmp = Path(tempfile.mkdtemp(prefix="callbot-bench-sb-"))
    redis_srv = RedisServer(tmp / "redis").start()
    redis = aioredis.from_url(redis_srv.url, decode_responses=True)
    server = agent = caller = None
    try:
        rate = 8000
        if args.beep:
            render, voice_desc = beep, "--beep: 0.4 s of 440 Hz per prompt"
        else:
            from callbot.config import Settings
            from callbot.constants import PIPELINE_OUT_RATE
            from callbot.speech.prompt_cache import PromptCache
            from callbot.speech.voices import select_voice

            voice = await asyncio.to_thread(select_voice, Settings.load())
            cache, rate = PromptCache(voice), PIPELINE_OUT_RATE
            render, voice_desc = cache.get_or_render, f"{voice.engine}:{voice.name} ({voice.sample_rate} Hz)"
        # the prompts this run will say, rendered before measuring (as a warm prompt cache would have them)
        texts = [*STATIC_PROMPTS] + [policy.announcement(p, policy.estimate_wait_s(p, n_serving), "1")
                                     for p in range(1, max(args.waiting, 1) + 1) for n_serving in (0, 1)]
        t0 = time.perf_counter()
        prompt_s = len(render(SAY["connecting"])) / 2 / rate
        for t in texts:
            await asyncio.to_thread(render, t)
        render_s = time.perf_counter() - t0
        print(f"voice: {voice_desc}; {len(texts)} prompts rendered in {render_s:.2f} s before measuring; "
              f"transfer prompt {SAY['connecting']!r} lasts {prompt_s:.2f} s")
        out.update(voice=voice_desc, transfer_prompt_s=round(prompt_s, 3), prompts_render_s=round(render_s, 3))

        flows = SimpleNamespace(current=SimpleNamespace(spec=SimpleNamespace(hours={}, closed_dates=[]),
                                                        settings=SimpleNamespace(holidays_subdiv=None)))
        rules = policy.QueueRules(announce_every_s=ANNOUNCE_EVERY_S, max_wait_s=args.seconds + 600, ring_s=15)
        sb = Switchboard(redis, rules, render=render, flows=flows, wrapup_s=0, rate=rate)
        recorders: dict[str, StampedRecorder] = {}
        outcomes: list = []

        async def on_call(transport, info, control) -> None:
            rec = recorders[info.call_id] = StampedRecorder(info.call_id)
            call = WaitingCall(call_id=info.call_id, service=SERVICE, caller=info.caller,
                               intent="acte_naissance", summary="acte de naissance (bench)")
            outcomes.append(await Waiting(sb, control, rec, call).run())

        server = SipServer(on_call, host="127.0.0.1", port=0, max_calls=max(args.waiting, 1) + 4)
        await server.start()
        taken: set[int] = set()
        agent = await start_peer(tmp / "agent", taken, user=AGENT, auto_answer=True,
                                 source_wav=C.tone_wav(tmp / "agent.wav", 600, 60))
        await sb.accounts.add(AGENT, "agent", "motdepasse-bench-long", services=[SERVICE], phone=agent.uri)
        failed: list[str] = []
        if args.calls:
            print(f"1. warm transfer: {args.calls} sequential calls, 1 agent available (auto-answer), wrap-up 0 s")
            caller = await start_peer(tmp / "caller", taken,
                                      source_wav=C.tone_wav(tmp / "caller.wav", 1000, 60))
            part: dict = {}
            failed += await transfers(sb, server, recorders, outcomes, agent, caller, args.calls, prompt_s, part)
            out["transfer"] = part
        if args.waiting:
            print(f"2. waiting load: {args.waiting} callers on hold at once for {args.seconds:.0f} s, agent away "
                  f"(hold music; position announced every {ANNOUNCE_EVERY_S:.0f} s)")
            part = {}
            failed += await waiting_load(sb, server, recorders, outcomes, tmp, args.waiting, args.seconds, taken,
                                         part)
            out["waiting"] = part
        return failed
    finally:
        for peer in (caller, agent):
            if peer is not None:
                await peer.stop()
        if server is not None:
            await server.stop()
        await redis.aclose()
        redis_srv.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-switchboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=10, help="sequential warm transfers (default 10)")
    ap.add_argument("--waiting", type=int, default=10, help="callers on hold at once (default 10)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long they wait (default 20)")
    ap.add_argument("--beep", action="store_true", help="a 440 Hz beep instead of the configured voice")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--timeout", type=float, help="overall limit in seconds (default: from the sizes)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (recordings, baresip logs)")
    args = ap.parse_args(argv)
    if shutil.which("baresip") is None:
        print("bench-switchboard: needs Debian's baresip (baresip-core)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["scripts/bench-switchboard", *argv])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"command: {command}")
    print(f"cpu: {cpu_flags()}; load average {load}")
    timeout = args.timeout or 90 + 25 * args.calls + 5 * args.waiting + 2 * args.seconds
    out: dict = {"command": command, "cpu": cpu_flags(), "loadavg_start": load}
    try:
        failed = asyncio.run(asyncio.wait_for(run(args, out), timeout))
    except TimeoutError:
        failed = [f"the bench did not finish in {timeout:.0f} s"]
    except Exception as e:  # a peer that would not start, Redis…: reported like a failed check
        logging.exception("bench-switchboard")
        failed = [f"error: {type(e).__name__}: {e}"]
    out["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out["failed"] = failed
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"load average at the end {out['loadavg_end']}")
    for f in failed:
        print(f"FAILED: {f}")
    print("result: " + ("OK" if not failed else f"{len(failed)} check(s) failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
