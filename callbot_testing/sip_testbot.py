"""A minimal pipecat bot for exercising the SIP transport without the speech stack.

It greets with a tone (440 Hz, 1 s), answers each keypad digit with a short
880 Hz tone, optionally echoes the caller, and can hang up or transfer after the
greeting. ``python -m callbot_testing.sip_testbot --port 5080`` runs it alone
(calls to a user part starting with ``bye`` are hung up by the bot after the greeting).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from callbot.constants import PIPELINE_IN_RATE, PIPELINE_OUT_RATE
from callbot.telephony.base import CallInfo


def tone(freq: float, secs: float, rate: int = PIPELINE_OUT_RATE, amp: float = 0.3) -> bytes:
    t = np.arange(int(rate * secs)) / rate
    return (np.sin(2 * math.pi * freq * t) * amp * 32767).astype("<i2").tobytes()


@dataclass
class CallRecord:
    info: CallInfo | None = None
    digits: list[str] = field(default_factory=list)
    rx_bytes: int = 0
    rx_rms_max: float = 0.0
    rx_rate: int = 0
    started_at: float = 0.0
    greeting_at: float = 0.0
    ended_at: float = 0.0
    disconnected: bool = False
    transfer_result: bool | None = None
    transfer_outcome: object = None  # TransferOutcome of a REFER (status, reason)
    transfer_secs: float = 0.0  # how long transfer()/bridge()/attended_transfer() took
    end_reason: str = ""  # the stack's, when the call ended on its side (what run_call reads for "timeout")


class ToneBot(FrameProcessor):
    def __init__(self, record: CallRecord, *, greeting_secs: float = 1.0, echo: bool = False,
                 end_after_greeting: bool = False, on_greeted=None) -> None:
        super().__init__()
        self.record = record
        self.greeting_secs = greeting_secs
        self.echo = echo
        self.end_after_greeting = end_after_greeting
        self.on_greeted = on_greeted

    async def _send(self, pcm: bytes) -> None:
        step = PIPELINE_OUT_RATE * 2 // 50  # 20 ms
        for i in range(0, len(pcm), step):
            await self.push_frame(OutputAudioRawFrame(pcm[i:i + step], PIPELINE_OUT_RATE, 1))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self.record.started_at = time.monotonic()
            await self._send(tone(440, self.greeting_secs))
            self.record.greeting_at = time.monotonic()
            if self.end_after_greeting:
                await self.push_frame(EndWorkerFrame(reason="test bot done"))
            if self.on_greeted:
                self.create_task(self.on_greeted())
            return
        if isinstance(frame, InputDTMFFrame):
            self.record.digits.append(frame.button.value)
            await self._send(tone(880, 0.3))
            return
        if isinstance(frame, InputAudioRawFrame):
            a = np.frombuffer(frame.audio, dtype="<i2").astype(np.float32)
            self.record.rx_bytes += len(frame.audio)
            self.record.rx_rate = frame.sample_rate
            if len(a):
                self.record.rx_rms_max = max(self.record.rx_rms_max, float(np.sqrt(np.mean(a * a))))
            if self.echo:
                await self._send(frame.audio[::2] if frame.sample_rate == 2 * PIPELINE_OUT_RATE else frame.audio)
            return
        await self.push_frame(frame, direction)


async def run_tone_bot(transport, info: CallInfo, control, record: CallRecord | None = None, *,
                       end_after_greeting: bool = False, transfer_to: str | None = None,
                       bridge_to: str | None = None, attended_to: str | None = None,
                       echo: bool = False, greeting_secs: float = 1.0) -> CallRecord:
    """Same shape as ``run_call``: build a pipeline on the transport and run it.

    ``transfer_to``: blind transfer (REFER) after the greeting; on failure the bot
    goes on (answers digits) until the caller hangs up. ``bridge_to`` /
    ``attended_to``: after the greeting the pipeline ends and the call is handed to
    ``control.bridge`` / ``control.attended_transfer``; if that fails and the caller
    is still there, a new pipeline on the same call greets again and goes on.
    """
    record = record if record is not None else CallRecord()
    record.info = info
    handover = bridge_to or attended_to

    async def greeted():
        if transfer_to:
            await asyncio.sleep(greeting_secs + 0.3)  # let the greeting play out
            t0 = time.monotonic()
            record.transfer_result = await control.transfer(transfer_to)
            record.transfer_secs = time.monotonic() - t0
            record.transfer_outcome = getattr(control, "last_transfer", None)

    async def run_pipeline(transport, bot: ToneBot) -> None:
        worker = PipelineWorker(
            Pipeline([transport.input(), bot, transport.output()]),
            params=PipelineParams(audio_in_sample_rate=PIPELINE_IN_RATE, audio_out_sample_rate=PIPELINE_OUT_RATE),
            idle_timeout_secs=None,
            check_dangling_tasks=False,
        )

        @transport.event_handler("on_client_disconnected")
        async def _gone(t, c):
            record.disconnected = True
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    await run_pipeline(transport, ToneBot(record, greeting_secs=greeting_secs, echo=echo,
                                          end_after_greeting=end_after_greeting or bool(handover),
                                          on_greeted=greeted))
    if handover and not record.disconnected:
        t0 = time.monotonic()
        if bridge_to:
            record.transfer_result = await control.bridge(bridge_to)
        else:
            record.transfer_result = await control.attended_transfer(attended_to)
            record.transfer_outcome = getattr(control, "last_transfer", None)
        record.transfer_secs = time.monotonic() - t0
        if not record.transfer_result and not transport.call.ended.is_set():
            # the caller is still with us: go on (a new pipeline on the same call)
            from callbot.telephony.sip.transport import SipTransport

            await run_pipeline(SipTransport(transport.call), ToneBot(record, greeting_secs=greeting_secs, echo=echo))
    record.end_reason = getattr(control, "end_reason", "")
    if not record.transfer_result:
        await control.hangup("bot done")
    record.ended_at = time.monotonic()
    return record


class ToneBotServer:
    """A ``SipServer`` running the tone bot on a free port; records every call (tests)."""

    def __init__(self, *, bot: dict | None = None, port: int = 0, **server_kw) -> None:
        from callbot.telephony.sip.server import SipServer

        self.records: list[CallRecord] = []
        self.bot_kw = bot or {}
        self.server = SipServer(self._on_call, port=port, **server_kw)

    async def _on_call(self, transport, info, control) -> None:
        rec = CallRecord()
        self.records.append(rec)
        await run_tone_bot(transport, info, control, rec, **self.bot_kw)

    @property
    def target(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    async def wait_calls_done(self, n: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.records) >= n and all(r.ended_at for r in self.records):
                return
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> ToneBotServer:
        await self.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop()


async def _main() -> None:
    """CLI worker (manual checks, and the workers behind Kamailio in tests).

    Calls whose Request-URI/To user part starts with ``bye`` are hung up by the
    bot after the greeting; every finished call is printed on stdout as one line
    ``CALL {json}`` (SIP Call-ID, called, digits, who hung up) for tests.
    """
    import json

    from callbot.telephony.sip.server import SipServer

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5080)
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--max-calls", type=int, default=20)
    ap.add_argument("--name", default="", help="worker name printed with each call")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)

    async def on_call(transport, info, control):
        rec = await run_tone_bot(transport, info, control, echo=args.echo,
                                 end_after_greeting=info.called.startswith("bye"))
        print("CALL " + json.dumps({
            "worker": args.name, "sip_call_id": info.provider_call_id, "called": info.called,
            "caller": info.caller, "digits": rec.digits, "caller_hung_up": rec.disconnected,
            "rx_rms_max": round(rec.rx_rms_max), "secs": round(rec.ended_at - rec.started_at, 2),
        }), flush=True)

    server = SipServer(on_call, host=args.host, port=args.port, max_calls=args.max_calls)
    await server.start()
    print(f"tone bot on {server.uri}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(_main())
