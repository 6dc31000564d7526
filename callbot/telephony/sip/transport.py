"""pipecat transport pair for one SIP call.

Input: polls the stack's receive buffer every 20 ms, upsamples 8 -> 16 kHz once
(stateful half-band FIR, ~1 ms delay; pipecat's soxr stream resampler was
measured to release audio in ~100 ms bursts) and pushes ``InputAudioRawFrame``;
keypad digits (RFC 4733 and SIP INFO) become ``InputDTMFFrame``.

Output: takes 8 kHz PCM frames and keeps ~80 ms queued in the stack, whose RTP
clock paces the wire. ``InterruptionFrame`` flushes the queue. On ``EndFrame``
(the flow's ``EndWorkerFrame``) the queued audio is played out; the call stays up
for ``run_call`` to hang up or transfer through ``SipCallControl`` (or is hung up
right away with ``SipTransport(hangup_on_end=True)``).

Event handlers: ``on_client_connected(transport, call)``,
``on_client_disconnected(transport, call)`` (the call ended while the pipeline
was still reading: caller hung up, media timeout, transfer completed; not fired
after an ``EndFrame`` has stopped the input).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from callbot.constants import INPUT_CHUNK_MS, PIPELINE_IN_RATE, PIPELINE_OUT_RATE, TELEPHONY_RATE
from callbot.telephony.sip.stack import SipCall

POLL_SECS = INPUT_CHUNK_MS / 1000  # one pipeline frame per poll (see constants)
TX_TARGET_BYTES = 1280  # 80 ms at 8 kHz 16-bit: what we keep queued in the stack
DRAIN_TIMEOUT_SECS = 10.0


def _halfband_taps(n: int = 31) -> np.ndarray:
    k = np.arange(n) - (n - 1) / 2
    h = np.sinc(k / 2) * np.blackman(n)
    return (h / h.sum() * 2).astype(np.float32)  # gain 2 compensates zero stuffing


class Upsampler2x:
    """Stateful 2x upsampler (zero-stuff + windowed-sinc low-pass), int16 mono."""

    def __init__(self, taps: int = 31) -> None:
        self._h = _halfband_taps(taps)
        self._hist = np.zeros(len(self._h) - 1, dtype=np.float32)

    def process(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        up = np.zeros(2 * len(x), dtype=np.float32)
        up[::2] = x
        buf = np.concatenate([self._hist, up])
        y = np.convolve(buf, self._h, mode="valid")
        self._hist = buf[-(len(self._h) - 1):]
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


class SipInputTransport(BaseInputTransport):
    def __init__(self, transport: SipTransport, call: SipCall, params: TransportParams, **kw) -> None:
        super().__init__(params, **kw)
        self._transport = transport
        self._call = call
        self._task: asyncio.Task | None = None
        self._up = Upsampler2x()
        self._rate_in = call.sample_rate
        call.on_digit(self._on_digit)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if not self._task:
            self._task = self.create_task(self._reader(), name="sip-rx")
        await self._transport._fire("on_client_connected", self._call)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._stop_task()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._stop_task()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._stop_task()

    async def _stop_task(self) -> None:
        if self._task:
            task, self._task = self._task, None
            await self.cancel_task(task)

    def _on_digit(self, digit: str) -> None:
        if self._task is None:  # the pipeline has stopped: digits now belong to the call's control
            return
        try:
            button = KeypadEntry(digit)
        except ValueError:
            logger.info(f"SIP digit {digit!r} has no KeypadEntry; dropped")
            return
        # Called on the loop by the stack adapter; push in a task (push_frame is async).
        self.create_task(self.push_frame(InputDTMFFrame(button=button)), name="sip-dtmf")

    async def _reader(self) -> None:
        call = self._call
        next_t = time.monotonic()
        try:
            while not call.ended.is_set():
                pcm = call.read_audio(3200)
                if pcm:
                    if self._rate_in == TELEPHONY_RATE and self.sample_rate == 2 * TELEPHONY_RATE:
                        pcm = self._up.process(pcm)
                    await self.push_audio_frame(
                        InputAudioRawFrame(audio=pcm, sample_rate=self.sample_rate, num_channels=1)
                    )
                next_t += POLL_SECS
                delay = next_t - time.monotonic()
                if delay < -0.2:  # fell behind (loop stalled): resync
                    next_t = time.monotonic()
                    delay = 0
                await asyncio.sleep(max(0.0, delay))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let one bad read kill the call silently
            logger.error(f"SIP reader failed: {e!r}")
        if call.ended.is_set():
            # the peer hung up, media timed out, or a transfer took the call away
            # while the pipeline still runs: tell the pipeline owner
            logger.info(f"SIP call {call.meta.sip_call_id} ended: {call.end_reason}")
            await self._transport._fire("on_client_disconnected", self._call)


class SipOutputTransport(BaseOutputTransport):
    def __init__(self, transport: SipTransport, call: SipCall, params: TransportParams, **kw) -> None:
        super().__init__(params, **kw)
        self._transport = transport
        self._call = call
        self.first_audio_at: float | None = None  # monotonic, first non-silent write

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)  # media sender has handed us everything queued
        await self._drain()
        if self._transport.hangup_on_end:
            await self._transport.hangup("end")

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._call.flush_tx()

    async def _drain(self) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECS
        while not self._call.ended.is_set() and time.monotonic() < deadline:
            if self._call.tx_buffered() == 0:
                await asyncio.sleep(0.04)  # the frame in the encoder
                return
            await asyncio.sleep(0.02)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        call = self._call
        data = memoryview(frame.audio)
        if self.first_audio_at is None and any(frame.audio):
            self.first_audio_at = time.monotonic()
        while data:
            if call.ended.is_set():
                return False
            room = TX_TARGET_BYTES - call.tx_buffered()
            if room < 320:  # wait for the stack's clock
                await asyncio.sleep(0.01)
                continue
            n = call.write_audio(bytes(data[: room - room % 2]))
            if n == 0:  # media not up yet / renegotiating
                await asyncio.sleep(0.01)
                continue
            data = data[n:]
        return True


class SipTransport(BaseTransport):
    """pipecat transport for one SIP call (``input()`` / ``output()``)."""

    def __init__(
        self,
        call: SipCall,
        *,
        hangup_on_end: bool = False,
        input_name: str | None = None,
        output_name: str | None = None,
    ) -> None:
        super().__init__(input_name=input_name, output_name=output_name)
        self.call = call
        self.hangup_on_end = hangup_on_end
        self.closing = False  # we initiated the end of the call
        self._params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_IN_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=PIPELINE_OUT_RATE,
            audio_out_10ms_chunks=2,
        )
        self._input = SipInputTransport(self, call, self._params, name=self._input_name)
        self._output = SipOutputTransport(self, call, self._params, name=self._output_name)
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")
        self._disconnected_fired = False

    def input(self) -> SipInputTransport:
        return self._input

    def output(self) -> SipOutputTransport:
        return self._output

    async def hangup(self, reason: str = "") -> None:
        self.closing = True
        await self.call.hangup()

    async def _fire(self, name: str, *args) -> None:
        if name == "on_client_disconnected":
            if self._disconnected_fired:
                return
            self._disconnected_fired = True
        await self._call_event_handler(name, *args)
