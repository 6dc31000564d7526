"""Twilio Media Streams: voice webhook (TwiML), media websocket, hang-up and transfer.

The call flow on Twilio's side:
1. ``POST /twilio/voice`` (signed) -> TwiML ``<Connect action=/twilio/after><Stream url=wss://…/twilio/media>``
   with the caller's number as a stream parameter.
2. Twilio opens ``/twilio/media``: ``connected``, ``start``, then 20 ms µ-law ``media`` and ``dtmf``.
   pipecat's ``TwilioFrameSerializer`` does the wire format; the pipeline runs in ``call.run_call``.
3. The bot ends the call: it waits until Twilio has *played* what was sent (a ``mark`` echoed back),
   then hangs up through the REST API when credentials are set, and closes the socket. Closing
   the socket makes Twilio fetch the ``<Connect action>`` URL, where ``/twilio/after`` answers
   ``<Dial>`` (transfer) or ``<Hangup/>`` — so transfer and hang-up also work with no credentials.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.serializers.twilio import TwilioFrameSerializer
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from callbot.config import Settings
from callbot.constants import OUTPUT_CHUNK_MS, PIPELINE_IN_RATE
from callbot.telephony.base import CallControl, CallInfo
from callbot.telephony.websocket import AiohttpWebsocketTransport, WebsocketParams

log = logging.getLogger(__name__)

OnCall = Callable[[AiohttpWebsocketTransport, CallInfo, CallControl], Awaitable[None]]
SETTINGS = web.AppKey("twilio_settings", Settings)
ON_CALL = web.AppKey("twilio_on_call", object)
AFTER = web.AppKey("twilio_after", object)  # call_sid -> TwiML to run when the stream ends

START_TIMEOUT_S = 10.0
PLAYOUT_TIMEOUT_S = 8.0
END_MARK = "callbot-end"
TWILIO_RATE = 8000


def new_call_id() -> str:
    return uuid.uuid4().hex[:16]


# ---------------------------------------------------------------- webhooks
def _public_base(request: web.Request, settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url
    proto = request.headers.get("X-Forwarded-Proto", request.scheme)
    host = request.headers.get("X-Forwarded-Host", request.host)
    return f"{proto}://{host}"


async def _validated_form(request: web.Request) -> dict[str, str]:
    """The webhook's form fields; 403 when a token is set and the signature is wrong."""
    settings = request.app[SETTINGS]
    form = {k: str(v) for k, v in (await request.post()).items()}
    token = settings.twilio_token
    if token:
        url = _public_base(request, settings) + request.path_qs
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not RequestValidator(token).validate(url, form, signature):
            log.warning("rejected %s: bad or missing X-Twilio-Signature (validated against %s)", request.path, url)
            raise web.HTTPForbidden(text="invalid Twilio signature\n")
    return form


async def voice_webhook(request: web.Request) -> web.Response:
    form = await _validated_form(request)
    base = _public_base(request, request.app[SETTINGS])
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    response = VoiceResponse()
    connect = Connect(action=f"{base}/twilio/after")
    stream = connect.stream(url=f"{ws_base}/twilio/media")
    for name, field in (("caller", "From"), ("called", "To"), ("call_sid", "CallSid")):
        if form.get(field):
            stream.parameter(name=name, value=form[field])
    response.append(connect)
    log.info("incoming Twilio call %s from %s", form.get("CallSid", "?"), form.get("From", "?"))
    return web.Response(text=str(response), content_type="application/xml")


async def after_stream_webhook(request: web.Request) -> web.Response:
    form = await _validated_form(request)
    destination = request.app[AFTER].pop(form.get("CallSid", ""), None)
    response = VoiceResponse()
    if destination:
        response.dial(destination)
    else:
        response.hangup()
    return web.Response(text=str(response), content_type="application/xml")


# ---------------------------------------------------------------- media websocket
class CallbotTwilioSerializer(TwilioFrameSerializer):
    """Twilio's serializer, plus: remember which ``mark`` names Twilio has played back, and a
    cheaper, lower-latency inbound decoder.

    pipecat decodes each 20 ms µ-law frame and upsamples it 8 -> 16 kHz with a soxr VHQ stream
    resampler: ~14 % of the event loop at 20 calls (bench-load profile), and it holds back
    ~100 ms of audio (first output after 120 ms, then in ~100 ms bursts), which delays the VAD
    and every turn. ``audioop.ratecv`` keeps state across frames, outputs every frame at once,
    and is plenty for telephone-band speech going to Whisper (nothing above 4 kHz to keep).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marks_played: set[str] = set()
        self._ratecv_state = None

    async def deserialize(self, data: str | bytes):
        if isinstance(data, str) and '"media"' in data:
            frame = self._media_frame(data)
            if frame is not None:
                return frame
        if isinstance(data, str) and '"mark"' in data:
            message = json.loads(data)
            if isinstance(message, dict) and message.get("event") == "mark":
                self.marks_played.add(str((message.get("mark") or {}).get("name", "")))
                return None
        return await super().deserialize(data)

    def _media_frame(self, data: str) -> InputAudioRawFrame | None:
        """A well-formed ``media`` message as an audio frame; None: let pipecat judge."""
        audio = self.media_audio(data)
        return None if audio is None else InputAudioRawFrame(audio=audio[0], num_channels=1, sample_rate=audio[1])

    def media_audio(self, data: str) -> tuple[bytes, int] | None:
        """(16-bit PCM at the pipeline rate, rate) of a well-formed ``media`` message, else None.

        The websocket transport's fast path: it gathers packets into ``INPUT_CHUNK_MS``
        frames, so a frame object per 20 ms packet would be built only to be thrown away.
        """
        if '"media"' not in data:
            return None
        try:
            message = json.loads(data)
            if message.get("event") != "media":
                return None
            payload = base64.b64decode(message["media"]["payload"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not payload:
            return None
        rate = self._sample_rate or PIPELINE_IN_RATE
        pcm = audioop.ulaw2lin(payload, 2)
        if rate != TWILIO_RATE:
            pcm, self._ratecv_state = audioop.ratecv(pcm, 2, 1, TWILIO_RATE, rate, self._ratecv_state)
        return pcm, rate


async def _read_start(ws: web.WebSocketResponse) -> dict | None:
    """Skip ``connected`` (and anything malformed) until Twilio's ``start`` message."""
    async with asyncio.timeout(START_TIMEOUT_S):
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                return None
            try:
                message = json.loads(msg.data)
                if message.get("event") == "start":
                    message["start"]["callSid"]  # noqa: B018 - required field
                    return message
            except (ValueError, AttributeError, KeyError, TypeError) as e:
                log.warning("skipped a malformed message before start (%s): %.120r", e, msg.data)
    return None


async def media_websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    try:
        start = await _read_start(ws)
    except TimeoutError:
        start = None
    if start is None:
        log.warning("media websocket closed: no valid 'start' message within %.0f s", START_TIMEOUT_S)
        await ws.close()
        return ws
    meta = start["start"]
    params = meta.get("customParameters") or {}
    stream_sid = str(start.get("streamSid") or meta.get("streamSid") or "")
    call_sid = str(meta.get("callSid", ""))
    serializer = CallbotTwilioSerializer(stream_sid, call_sid=call_sid, account_sid=meta.get("accountSid"),
                                         params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    # audio_out_end_silence_secs=0: pipecat pads the end of a call with 2 s of silence "so words
    # don't cut out"; our hang-up waits for Twilio's playback mark anyway, so the padding only
    # delayed the REST hang-up by 2 s after the goodbye (measured 2.6 s, now ~0.1 s).
    transport = AiohttpWebsocketTransport(ws, WebsocketParams(
        audio_in_enabled=True, audio_out_enabled=True, serializer=serializer, audio_out_end_silence_secs=0,
        audio_out_10ms_chunks=OUTPUT_CHUNK_MS // 10))
    info = CallInfo(call_id=new_call_id(), channel="twilio", caller=str(params.get("caller", "")),
                    called=str(params.get("called", "")), provider_call_id=call_sid)
    control = TwilioCallControl(settings, request.app[AFTER], ws, serializer,
                                account_sid=str(meta.get("accountSid") or settings.twilio_account_sid or ""),
                                call_sid=call_sid, stream_sid=stream_sid)
    try:
        await request.app[ON_CALL](transport, info, control)
    finally:
        await transport.close()
    return ws


class TwilioCallControl:
    def __init__(self, settings: Settings, after: dict[str, str], ws: web.WebSocketResponse,
                 serializer: CallbotTwilioSerializer, *, account_sid: str, call_sid: str, stream_sid: str) -> None:
        self.settings = settings
        self.after = after
        self.ws = ws
        self.serializer = serializer
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.rest_hangups = 0
        self._done = False

    async def wait_playout(self, timeout: float = PLAYOUT_TIMEOUT_S) -> bool:
        """Send a ``mark`` and wait until Twilio echoes it: everything sent before it was heard."""
        if self.ws.closed:
            return False
        await self.ws.send_str(json.dumps({"event": "mark", "streamSid": self.stream_sid,
                                           "mark": {"name": END_MARK}}))
        if END_MARK in self.serializer.marks_played:
            return True
        try:
            async with asyncio.timeout(timeout):
                async for msg in self.ws:
                    if msg.type != WSMsgType.TEXT:
                        return False
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and data.get("event") == "mark" and \
                            (data.get("mark") or {}).get("name") == END_MARK:
                        return True
                    if isinstance(data, dict) and data.get("event") == "stop":
                        return False
        except TimeoutError:
            log.info("call %s: no playback mark within %.0f s; ending anyway", self.call_sid, timeout)
        return False

    async def hangup(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        await self.wait_playout()
        if self.settings.twilio_token and self.account_sid and self.call_sid:
            await self._rest_complete()
        await self.ws.close()

    async def transfer(self, destination: str) -> bool:
        if self._done:
            return False
        self._done = True
        self.after[self.call_sid] = destination
        await self.wait_playout()
        await self.ws.close()  # Twilio now fetches <Connect action> and gets <Dial>
        return True

    async def _rest_complete(self) -> None:
        url = (f"{self.settings.twilio_api_base_url.rstrip('/')}/2010-04-01/Accounts/"
               f"{self.account_sid}/Calls/{self.call_sid}.json")
        auth = aiohttp.BasicAuth(self.account_sid, self.settings.twilio_token or "")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.post(url, data={"Status": "completed"}, auth=auth) as resp:
                    self.rest_hangups += 1
                    if resp.status >= 300 and resp.status != 404:
                        log.error("Twilio REST hang-up of %s: HTTP %s %s", self.call_sid, resp.status,
                                  (await resp.text())[:200])
        except (aiohttp.ClientError, TimeoutError) as e:
            log.error("Twilio REST hang-up of %s failed: %s", self.call_sid, e)


def setup_routes(app: web.Application, settings: Settings, on_call: OnCall) -> None:
    app[SETTINGS] = settings
    app[ON_CALL] = on_call
    app[AFTER] = {}
    app.router.add_post("/twilio/voice", voice_webhook)
    app.router.add_post("/twilio/after", after_stream_webhook)
    app.router.add_get("/twilio/media", media_websocket)
