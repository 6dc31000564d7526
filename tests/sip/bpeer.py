"""A baresip-python SIP peer in its own process, for tests that need a peer Debian's
baresip 1.0 cannot play: the transferee of an attended transfer (REFER with Replaces)
or a Replaces-capable transfer target. One SIP engine per process (libre is global).

    python tests/sip/bpeer.py --port 5090 --dial sip:mairie@127.0.0.1:5080 --tone 1000
    python tests/sip/bpeer.py --port 5091 --user agent --answer --tone 600

Sends a sine tone on every call, executes transfer requests (``transfer_policy="auto"``:
blind or with Replaces) and prints one JSON line per event on stdout:
``{"ev": "ready"|"incoming"|"established"|"closed"|"transfer_call"|"heard", "t": monotonic, ...}``;
``heard`` = dominant frequency/RMS of what this peer received, per 0.5 s window.
Exits (hanging up its calls) after ``--secs``, on SIGTERM, or when every call is over
(``--exit-when-idle``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import numpy as np


def emit(ev: str, **kw) -> None:
    print(json.dumps({"ev": ev, "t": round(time.monotonic(), 3), **kw}), flush=True)


def dominant(pcm: bytes, rate: int = 8000) -> tuple[float, float]:
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(a) < 64:
        return 0.0, 0.0
    spec = np.abs(np.fft.rfft(a * np.hanning(len(a))))
    freqs = np.fft.rfftfreq(len(a), 1 / rate)
    spec[freqs < 60] = 0
    return float(freqs[int(np.argmax(spec))]), float(np.sqrt(np.mean(a * a)))


async def media(call, tone_hz: float, label: str) -> None:
    """Keep ~60 ms of tone queued (the stack's clock paces it) and report what is heard."""
    import baresip

    rate = 8000
    n = np.arange(rate * 10)
    tone = (np.sin(2 * np.pi * tone_hz * n / rate) * 8000).astype("<i2").tobytes()
    pos, heard, last = 0, bytearray(), time.monotonic()
    while call.state is not baresip.CallState.CLOSED:
        try:
            if call.audio.info().tx_buffered < 960:
                chunk = tone[pos:pos + 320]
                pos = (pos + 320) % (len(tone) - 320)
                call.audio.write(chunk)
            heard += call.audio.read(3200)
        except baresip.AudioRestarted:
            pass
        except baresip.AudioNotActive:
            pass
        if time.monotonic() - last >= 0.5:
            hz, rms = dominant(bytes(heard))
            emit("heard", call=label, hz=round(hz), rms=round(rms))
            heard.clear()
            last = time.monotonic()
        await asyncio.sleep(0.01)


async def main() -> int:
    import baresip

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="peer")
    ap.add_argument("--dial")
    ap.add_argument("--answer", action="store_true")
    ap.add_argument("--tone", type=float, default=1000.0)
    ap.add_argument("--secs", type=float, default=20.0)
    ap.add_argument("--exit-when-idle", action="store_true")
    ap.add_argument("--refuse-transfers", action="store_true", help="answer REFERs with a 603 NOTIFY")
    args = ap.parse_args()

    rt = baresip.Runtime()
    await rt.start(baresip.Config(net_interface="127.0.0.1", max_concurrent_calls=4,
                                  expose_headers=("Replaces", "Referred-By"),
                                  extra_config_text=f"sip_listen\t\t127.0.0.1:{args.port}\n"))
    ua = await baresip.UserAgent.create(
        rt, baresip.Account(user=args.user, domain=f"127.0.0.1:{args.port}", password="", reg_interval=0,
                            audio_codecs=("pcmu", "pcma")),
        transfer_policy="reject" if args.refuse_transfers else "auto")
    calls: dict[str, object] = {}
    tasks = []

    def track(call, label: str) -> None:
        calls[label] = call

        def on_event(ev) -> None:
            if ev.event is baresip.Event.CALL_ESTABLISHED:
                emit("established", call=label, peer=call.peer)
            elif ev.event is baresip.Event.CALL_CLOSED:
                emit("closed", call=label, text=ev.text)
            elif ev.event in (baresip.Event.CALL_HOLD, baresip.Event.CALL_REMOTE_SDP):
                emit(ev.event.name.lower(), call=label, text=ev.text)
            elif ev.event in (baresip.Event.CALL_TRANSFER, baresip.Event.CALL_TRANSFER_FAILED):
                emit(ev.event.name.lower(), call=label, text=ev.text)

        call.on(on_event)
        tasks.append(asyncio.create_task(media(call, args.tone, label)))

    def incoming(call) -> None:
        label = f"in{len(calls)}"
        emit("incoming", call=label, peer=call.peer, headers=call.headers or {})
        track(call, label)
        if args.answer:
            asyncio.get_running_loop().create_task(call.answer())

    ua.on_incoming(incoming)
    ua.on_transfer_call(lambda call: (emit("transfer_call", call=f"xfer{len(calls)}", peer=call.peer),
                                      track(call, f"xfer{len(calls)}")))
    emit("ready", uri=f"sip:{args.user}@127.0.0.1:{args.port}")
    if args.dial:
        early: list = []  # events of the new call that can precede the Call object (see stack.dial)
        catch = early.append
        rt.subscribe(catch)
        try:
            call = await ua.dial(args.dial)
        finally:
            rt.unsubscribe(catch)
        track(call, "out")
        for ev in early:
            if ev.call == call.handle:
                call._on_stack_event(ev)
    stop = asyncio.Event()  # SIGTERM: hang up (BYE) and leave
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    deadline = time.monotonic() + args.secs
    while time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(0.1)
        if args.exit_when_idle and calls and all(c.state is baresip.CallState.CLOSED for c in calls.values()):
            break
    for c in calls.values():
        if c.state is not baresip.CallState.CLOSED:
            try:
                await c.hangup()
            except baresip.BaresipError:
                pass
    await asyncio.sleep(0.3)
    for t in tasks:
        t.cancel()
    await rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
