"""A pipecat transport pair over an aiohttp websocket (aiohttp is our one web server).

Modelled on pipecat's FastAPI websocket transport, with one deliberate
difference: each inbound message is handled in its own ``try``, so one
malformed message is logged and skipped and the call goes on (pipecat's loop
wraps the whole ``async for`` and ends the call on the first bad message).
The wire format is the serializer's business (``TwilioFrameSerializer``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from callbot.constants import INPUT_CHUNK_MS, SAMPLE_WIDTH

log = logging.getLogger(__name__)


class WebsocketParams(TransportParams):
    serializer: FrameSerializer | None = None


class _Client:
    """The shared websocket, closed once by whichever side ends first."""

    def __init__(self, ws: web.WebSocketResponse, transport: "AiohttpWebsocketTransport") -> None:
        self.ws = ws
        self.transport = transport
        self.closing = False
        self.bad_messages = 0

    @property
    def connected(self) -> bool:
        return not self.ws.closed and not self.closing

    async def send(self, data: str | bytes) -> bool:
        if not self.connected:
            return False
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
            return True
        except (ConnectionError, RuntimeError) as e:
            log.info("websocket send failed (%s): peer gone", e)
            return False

    async def close(self) -> None:
        if not self.ws.closed and not self.closing:
            self.closing = True
            try:
                await asyncio.wait_for(self.ws.close(), timeout=1.0)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass


class _Input(BaseInputTransport):
    def __init__(self, client: _Client, params: WebsocketParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._client = client
        self._params = params
        self._receive_task: asyncio.Task | None = None

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        if self._params.serializer:
            await self._params.serializer.setup(setup)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if not self._receive_task:
            self._receive_task = self.create_task(self._receive_messages())
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._stop_receiving()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._stop_receiving()

    async def _stop_receiving(self) -> None:
        if self._receive_task:
            await self.cancel_task(self._receive_task)
            self._receive_task = None

    async def _receive_messages(self) -> None:
        """Read the peer's messages; caller audio is pushed in ``INPUT_CHUNK_MS`` chunks.

        Anything else (a keypad digit, a stop) first flushes the audio received before it,
        so no audio is held back behind it.
        """
        ws = self._client.ws
        serializer = self._params.serializer
        # A serializer may decode media messages straight to (pcm, rate) (Twilio's does).
        media_audio = getattr(serializer, "media_audio", None)
        pending = bytearray()
        rate = chunk_bytes = 0

        async def flush() -> None:
            if pending:
                audio = bytes(pending)
                pending.clear()
                await self.push_audio_frame(InputAudioRawFrame(audio=audio, sample_rate=rate, num_channels=1))

        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            audio = media_audio(msg.data) if media_audio and isinstance(msg.data, str) else None
            if audio is not None:
                if audio[1] != rate:
                    await flush()
                    rate = audio[1]
                    # 10 % short still counts: the resampler's first output is a few samples short
                    chunk_bytes = rate * SAMPLE_WIDTH * INPUT_CHUNK_MS // 1000 * 9 // 10
                pending += audio[0]
                if len(pending) >= chunk_bytes:
                    await flush()
                continue
            try:
                frame = await serializer.deserialize(msg.data) if serializer else None
            except Exception as e:  # one bad message must not end the call
                self._client.bad_messages += 1
                log.warning("skipped a malformed websocket message (%s: %s): %.120r",
                            type(e).__name__, e, msg.data)
                continue
            if frame is None:
                continue
            await flush()
            if isinstance(frame, InputAudioRawFrame):
                await self.push_audio_frame(frame)
            elif isinstance(frame, InputTransportMessageFrame):
                await self.broadcast_frame(InputTransportMessageFrame, message=frame.message)
            else:
                await self.push_frame(frame)
        await flush()
        if not self._client.closing:
            await self._client.transport.peer_left()


# How far ahead of the listener's playout the bot's audio may run. The peer (Twilio) buffers
# it; ``clear`` drops it on barge-in, so the lead costs no barge-in latency. It absorbs event
# loop stalls (ASR threads, other calls): with the old "every half chunk" pacing the lead
# started at zero and a 40-100 ms stall under load was an audible gap (bench-load underruns).
PLAYOUT_LEAD_S = 0.3


class _Output(BaseOutputTransport):
    """Writes audio ahead of the listener's playout by at most ``PLAYOUT_LEAD_S``.

    Paced on the playout clock: the first ``PLAYOUT_LEAD_S`` of each utterance go out at
    once (the greeting and replies start immediately, with a jitter cushion), then one
    chunk per chunk duration, so barge-in (``clear``) still cuts the bot off at once.
    """

    def __init__(self, client: _Client, params: WebsocketParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._client = client
        self._params = params
        self._chunk_s = 0.0
        self._playout_end = 0.0  # monotonic time the listener finishes what was sent

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        if self._params.serializer:
            await self._params.serializer.setup(setup)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._write_frame(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._write_frame(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            await self._write_frame(frame)
            self._playout_end = 0.0

    async def send_message(self, frame: OutputTransportMessageFrame | OutputTransportMessageUrgentFrame) -> None:
        await self._write_frame(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if not self._client.connected:
            return False
        frame = OutputAudioRawFrame(audio=frame.audio, sample_rate=self.sample_rate,
                                    num_channels=self._params.audio_out_channels)
        if not await self._write_frame(frame):
            return False
        now = time.monotonic()
        secs = len(frame.audio) / (2 * self.sample_rate * max(1, self._params.audio_out_channels))
        self._playout_end = max(now, self._playout_end) + secs
        ahead = self._playout_end - now - PLAYOUT_LEAD_S
        await asyncio.sleep(max(0.0, ahead))
        return True

    async def _write_frame(self, frame: Frame) -> bool:
        if not self._client.connected or not self._params.serializer:
            return False
        try:
            payload = await self._params.serializer.serialize(frame)
        except Exception as e:
            log.error("cannot serialize %s: %s", type(frame).__name__, e)
            return False
        return await self._client.send(payload) if payload else True


class AiohttpWebsocketTransport(BaseTransport):
    """Event ``on_client_disconnected(transport)`` fires when the peer closes the socket."""

    def __init__(self, ws: web.WebSocketResponse, params: WebsocketParams) -> None:
        super().__init__()
        self._client = _Client(ws, self)
        self._input = _Input(self._client, params, name="ws-input")
        self._output = _Output(self._client, params, name="ws-output")
        self._register_event_handler("on_client_disconnected")

    def input(self) -> _Input:
        return self._input

    def output(self) -> _Output:
        return self._output

    @property
    def bad_messages(self) -> int:
        return self._client.bad_messages

    async def peer_left(self) -> None:
        await self._call_event_handler("on_client_disconnected")

    async def close(self) -> None:
        await self._client.close()
