"""The websocket transport over a real aiohttp socket: caller audio enters the pipeline in
``INPUT_CHUNK_MS`` chunks, and a keypad digit flushes the audio gathered before it (pipecat
delivers the digit directly and the audio through the input's audio queue, so the digit may
still arrive first, as it did with one frame per packet)."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
from aiohttp import web
from pipecat.frames.frames import Frame, InputAudioRawFrame, InputDTMFFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer

from callbot.call import run_pipeline
from callbot.constants import INPUT_CHUNK_MS, PIPELINE_IN_RATE, SAMPLE_WIDTH
from callbot.telephony.twilio import CallbotTwilioSerializer
from callbot.telephony.websocket import AiohttpWebsocketTransport, WebsocketParams

pytestmark = pytest.mark.timeout(30)

PACKET = bytes([0xFF]) * 160  # 20 ms of µ-law silence, as Twilio sends it
PACKET_PCM = PIPELINE_IN_RATE * SAMPLE_WIDTH * 20 // 1000  # its size once decoded at the pipeline rate


class Collect(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, object]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.seen.append(("audio", len(frame.audio)))
        elif isinstance(frame, InputDTMFFrame):
            self.seen.append(("dtmf", frame.button.value))
        await self.push_frame(frame, direction)


def media(sid: str) -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {"payload": base64.b64encode(PACKET).decode()}})


async def test_audio_is_chunked_and_digits_keep_their_place():
    collect = Collect()
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        serializer = CallbotTwilioSerializer("MZ1", params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
        transport = AiohttpWebsocketTransport(ws, WebsocketParams(audio_in_enabled=True, serializer=serializer))
        await run_pipeline(Pipeline([transport.input(), collect]), transport)
        done.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            for _ in range(3):
                await ws.send_str(media("MZ1"))
            await ws.send_str("not json")  # skipped, and flushes nothing
            await ws.send_str(json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "1"}}))
            await ws.send_str(media("MZ1"))
            await asyncio.sleep(0.5)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await runner.cleanup()

    chunk = PIPELINE_IN_RATE * SAMPLE_WIDTH * INPUT_CHUNK_MS // 1000
    assert chunk == 2 * PACKET_PCM  # the expectations below assume 40 ms chunks
    sizes = [n for kind, n in collect.seen if kind == "audio"]
    assert len(sizes) == 3 and abs(sizes[0] - chunk) <= 4 and sizes[1:] == [PACKET_PCM, PACKET_PCM]
    assert ("dtmf", "1") in collect.seen
