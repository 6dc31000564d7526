"""Twilio Media Streams: webhooks (TwiML), media websocket, and the routes that move a call.

The call flow on Twilio's side:
1. ``POST /twilio/voice`` (signed) -> TwiML ``<Connect action=/twilio/after><Stream url=wss://…/twilio/media>``
   with the caller's number as a stream parameter.
2. Twilio opens ``/twilio/media``: ``connected``, ``start``, then 20 ms µ-law ``media`` and ``dtmf``.
   pipecat's ``TwilioFrameSerializer`` does the wire format; the pipeline runs in ``call.run_call``.
   Once the pipeline stops (hand-off to a person) ``TwilioCallControl`` (``twilio_line.py``)
   drives the line: hold audio, keypad, the agent's ``<Dial>``.
3. The bot ends its part: it waits until Twilio has *played* what was sent (a ``mark`` echoed back),
   then hangs up through the REST API when credentials are set, and closes the socket. Closing
   the socket makes Twilio fetch the ``<Connect action>`` URL, where ``/twilio/after`` answers the
   decision stored in Redis (``<Dial>``) or ``<Hangup/>`` — so transfers also work with no credentials,
   and whichever worker Twilio reaches.
4. A ``<Dial>`` (agent or cold transfer) reports to ``/twilio/dial-result?call=<our id>``: answered ->
   ``<Hangup/>``; not reached -> a new ``<Connect><Stream>`` with the ``resume`` parameter, which
   ``/twilio/media`` hands to ``app[ON_RESUME]`` with the same call id (the caller is never dropped).
"""

from __future__ import annotations

import asyncio
import audioop
import hashlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame
from pipecat.serializers.twilio import TwilioFrameSerializer
from redis.exceptions import RedisError
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from callbot.config import Settings
from callbot.constants import OUTPUT_CHUNK_MS, PIPELINE_IN_RATE
from callbot.logsafe import mask_number
from callbot.telephony.base import CallControl, CallInfo
from callbot.telephony.twilio_line import (  # noqa: F401 - re-exported, the module's public names
    END_MARK,
    PLAYOUT_TIMEOUT_S,
    TWILIO_RATE,
    TwilioCallControl,
    after_key,
    pop_after_stream,
    store_after_stream,
)
from callbot.telephony.twilio_messages import MediaStreamError, StreamMessage, parse_message
from callbot.telephony.websocket import AiohttpWebsocketTransport, WebsocketParams
from callbot.web import api
from callbot.workers import WORKER

log = logging.getLogger(__name__)

OnCall = Callable[[AiohttpWebsocketTransport, CallInfo, CallControl], Awaitable[None]]
OnDialResult = Callable[[str, str, float], "Awaitable[None] | None"]  # (call_id, DialCallStatus, duration_s)
SETTINGS = web.AppKey("twilio_settings", Settings)
ON_CALL = web.AppKey("twilio_on_call", object)
ON_RESUME = web.AppKey("twilio_on_resume", object)  # OnCall for a stream resumed after a failed <Dial>
ON_DIAL_RESULT = web.AppKey("twilio_on_dial_result", object)  # OnDialResult, optional

START_TIMEOUT_S = 10.0
REPLAY_WINDOW_S = 24 * 3600
DIAL_REACHED = frozenset({"completed", "answered"})


def new_call_id() -> str:
    return uuid.uuid4().hex[:16]


def redis_of(app: web.Application) -> Any:
    """The shared Redis client: the runtime's (``app[api.RUNTIME].store.redis``), looked up at use.

    The runtime is built in a ``cleanup_ctx`` after the routes are set up, hence lazily.
    Tests put any object with ``.store.redis`` under ``api.RUNTIME``.
    """
    rt = app.get(api.RUNTIME)
    if rt is None:
        raise RuntimeError("no runtime on the app yet: Twilio state needs its Redis (app[api.RUNTIME].store.redis)")
    return rt.store.redis


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
        if not await _first_time(request.app, url, signature):
            log.warning("rejected %s: a replay of a request already served (same URL, form and signature)",
                        request.path)
            raise web.HTTPForbidden(text="replayed Twilio request\n")
    return form


async def _first_time(app: web.Application, url: str, signature: str) -> bool:
    """Twilio's signature has no timestamp: a captured request stays valid forever. Each signed request is
    served once (remembered in Redis by every worker for ``REPLAY_WINDOW_S``; Twilio's own webhooks
    differ by CallSid, CallStatus, DialCallStatus…, so a legitimate one never repeats itself)."""
    try:
        redis = redis_of(app)
    except RuntimeError:  # the bare routes without a runtime (unit tests of the TwiML)
        return True
    key = "callbot:twilio:seen:" + hashlib.sha256(f"{url}\n{signature}".encode()).hexdigest()
    return bool(await redis.set(key, "1", nx=True, ex=REPLAY_WINDOW_S))


def _xml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type="application/xml")


def _stream_response(base: str, form: dict[str, str], params: dict[str, str] | None = None, *,
                     stream_base: str | None = None) -> VoiceResponse:
    """``<Connect action=/twilio/after><Stream url=wss://…/twilio/media>`` + ``params`` and the caller's ids.

    ``stream_base`` (``settings.stream_url``, e.g. ``wss://mairie.example.fr/w1``) sends the stream to this
    very worker behind a shared proxy: the one that accepted the call serves it. The action URL stays on
    ``base``: that webhook is signed against the public URL and its state is in Redis, any worker answers.
    """
    ws_base = stream_base or base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    response = VoiceResponse()
    connect = Connect(action=f"{base}/twilio/after")
    stream = connect.stream(url=f"{ws_base}/twilio/media")
    for name, value in (params or {}).items():
        stream.parameter(name=name, value=value)
    for name, field in (("caller", "From"), ("called", "To"), ("call_sid", "CallSid")):
        if form.get(field):
            stream.parameter(name=name, value=form[field])
    response.append(connect)
    return response


async def voice_webhook(request: web.Request) -> web.Response:
    worker = request.app.get(WORKER)
    if worker is not None and worker.draining:
        # before the signature check, which remembers the request: the load balancer retries this very
        # request on another worker (it does so on HTTP errors only, hence no TwiML here)
        log.warning("Twilio call refused: worker %s is draining (503: the load balancer retries elsewhere)",
                    worker.id)
        return web.json_response({"error": "draining", "message": f"worker {worker.id} is draining"}, status=503,
                                 headers={"Retry-After": "5"})
    form = await _validated_form(request)
    if worker is not None:
        worker.expect_call(START_TIMEOUT_S)  # its media stream comes next: a drain now waits for it
    log.info("incoming Twilio call %s from %s", form.get("CallSid", "?"), mask_number(form.get("From", "?")))
    settings = request.app[SETTINGS]
    return _xml(_stream_response(_public_base(request, settings), form, stream_base=settings.stream_url))


async def after_stream_webhook(request: web.Request) -> web.Response:
    """The stream ended: run the decision stored in Redis (a ``<Dial>``), else hang up."""
    form = await _validated_form(request)
    call_sid = form.get("CallSid", "")
    twiml = None
    if call_sid:
        try:
            twiml = await pop_after_stream(redis_of(request.app), call_sid)
        except (RedisError, OSError, RuntimeError) as e:
            log.error("call %s: cannot read the after-stream decision from Redis (%s): hanging up", call_sid, e)
    if twiml:
        return web.Response(text=twiml, content_type="application/xml")
    response = VoiceResponse()
    response.hangup()
    return _xml(response)


async def dial_result_webhook(request: web.Request) -> web.Response:
    """A ``<Dial>`` ended. Reached: the conversation is over. Not reached: back to the bot, never a hang-up."""
    form = await _validated_form(request)
    call_id = request.query.get("call", "")
    cold = request.query.get("cold") == "1"
    status = form.get("DialCallStatus", "")
    try:
        duration_s = float(form.get("DialCallDuration") or 0)
    except ValueError:
        duration_s = 0.0
    log.info("call %s (%s): %s <Dial> ended: %s after %.0f s", call_id or "?", form.get("CallSid", "?"),
             "transfer" if cold else "agent", status or "no status", duration_s)
    hook = request.app.get(ON_DIAL_RESULT)
    if hook is not None and call_id:
        try:
            result = hook(call_id, status, duration_s)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("call %s: the dial-result hook failed", call_id)
    if status in DIAL_REACHED:
        response = VoiceResponse()
        response.hangup()
        return _xml(response)
    params: dict[str, str] = {}
    if call_id:
        params = {"resume": call_id, "dial_status": status or "unknown"}
        if cold:
            params["cold"] = "1"
    else:
        log.warning("dial-result for %s without ?call=: the caller starts a new call with the bot",
                    form.get("CallSid", "?"))
    settings = request.app[SETTINGS]
    return _xml(_stream_response(_public_base(request, settings), form, params, stream_base=settings.stream_url))


# ---------------------------------------------------------------- media websocket
class CallbotTwilioSerializer(TwilioFrameSerializer):
    """Twilio's serializer, plus: strict parsing, remember which ``mark`` names Twilio has played
    back, and a cheaper, lower-latency inbound decoder.

    Every inbound message goes through ``parse_message``: a malformed one raises
    ``MediaStreamError`` naming the stream, the call and the field, which the transport logs
    before skipping the message (pipecat's own parser let ``AttributeError``, ``binascii.Error``
    or a ``RecursionError`` through, and logged whole 1 MB messages).

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
        """A pipeline frame, or None (nothing for the pipeline); ``MediaStreamError`` for a malformed message."""
        try:
            message = parse_message(data)
        except MediaStreamError as e:
            raise MediaStreamError(f"Twilio stream {_short(self._stream_sid)} (call {_short(self._call_sid)}): "
                                   f"{e.message}") from None
        if message.event == "media":
            audio = self._decode(message.audio)
            return None if audio is None else InputAudioRawFrame(audio=audio[0], num_channels=1, sample_rate=audio[1])
        if message.event == "dtmf":
            try:
                return InputDTMFFrame(KeypadEntry(message.digit))
            except ValueError:  # A-D: real tones, but no menu can use them
                log.info("call %s: ignored keypad tone %s", _short(self._call_sid), message.digit)
        elif message.event == "mark":
            self.marks_played.add(message.mark)
        elif message.event == "start":
            log.warning("call %s: skipped a second 'start' message (call %s)", _short(self._call_sid),
                        _short(message.start["callSid"]))
        return None

    def media_audio(self, data: str) -> tuple[bytes, int] | None:
        """(16-bit PCM at the pipeline rate, rate) of a well-formed ``media`` message, else None.

        The websocket transport's fast path: it gathers packets into ``INPUT_CHUNK_MS``
        frames, so a frame object per 20 ms packet would be built only to be thrown away.
        Never raises: a malformed message gets None here and its error from ``deserialize``.
        """
        if '"media"' not in data:
            return None
        try:
            message = parse_message(data)
        except MediaStreamError:
            return None
        return self._decode(message.audio) if message.event == "media" else None

    def _decode(self, payload: bytes) -> tuple[bytes, int] | None:
        if not payload:
            return None
        rate = self._sample_rate or PIPELINE_IN_RATE
        pcm = audioop.ulaw2lin(payload, 2)
        if rate != TWILIO_RATE:
            pcm, self._ratecv_state = audioop.ratecv(pcm, 2, 1, TWILIO_RATE, rate, self._ratecv_state)
        return pcm, rate


def _short(sid: object) -> str:
    """A stream or call id for a log line (a hostile peer may send a megabyte of it)."""
    return str(sid)[:40]


async def _read_start(ws: web.WebSocketResponse) -> StreamMessage | None:
    """Skip ``connected`` (and anything malformed or early, with a log line) until Twilio's ``start`` message."""
    early = 0
    async with asyncio.timeout(START_TIMEOUT_S):
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None
            try:
                message = parse_message(msg.data)
            except MediaStreamError as e:
                log.warning("media websocket, before 'start': skipped a malformed message (%s): %.120r",
                            e.message, msg.data)
                continue
            if message.event == "start":
                if early:
                    log.warning("call %s: skipped %d message(s) sent before 'start'", _short(message.start["callSid"]),
                                early)
                return message
            early += message.event != "connected"
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
    meta = start.start
    params = meta.get("customParameters") or {}
    stream_sid = str(start.data.get("streamSid") or meta.get("streamSid") or "")
    call_sid = str(meta.get("callSid", ""))
    serializer = CallbotTwilioSerializer(stream_sid, call_sid=call_sid, account_sid=meta.get("accountSid"),
                                         params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    # audio_out_end_silence_secs=0: pipecat pads the end of a call with 2 s of silence "so words
    # don't cut out"; our hang-up waits for Twilio's playback mark anyway, so the padding only
    # delayed the REST hang-up by 2 s after the goodbye (measured 2.6 s, now ~0.1 s).
    transport = AiohttpWebsocketTransport(ws, WebsocketParams(
        audio_in_enabled=True, audio_out_enabled=True, serializer=serializer, audio_out_end_silence_secs=0,
        audio_out_10ms_chunks=OUTPUT_CHUNK_MS // 10))
    resume = str(params.get("resume") or "")
    extra = {"resume": "1", "dial_status": str(params.get("dial_status", ""))} if resume else {}
    if resume and params.get("cold"):
        extra["cold"] = "1"
    info = CallInfo(call_id=resume or new_call_id(), channel="twilio", caller=str(params.get("caller", "")),
                    called=str(params.get("called", "")), provider_call_id=call_sid, extra=extra)
    app = request.app
    control = TwilioCallControl(settings, ws, serializer, redis=lambda: redis_of(app),
                                account_sid=str(meta.get("accountSid") or settings.twilio_account_sid or ""),
                                call_sid=call_sid, stream_sid=stream_sid, call_id=info.call_id,
                                public_base=_public_base(request, settings))
    handler = app.get(ON_RESUME) if resume else None
    if resume:
        log.info("call %s (%s) back with the bot after <Dial>: %s", info.call_id, call_sid, extra["dial_status"])
    try:
        await (handler or app[ON_CALL])(transport, info, control)
    finally:
        await transport.close()
        await control.close()
    return ws


def setup_routes(app: web.Application, settings: Settings, on_call: OnCall,
                 on_resume: OnCall | None = None, on_dial_result: OnDialResult | None = None) -> None:
    """Twilio's routes. ``on_resume`` gets streams resumed after a failed ``<Dial>`` (default: ``on_call``);
    ``on_dial_result(call_id, status, duration_s)`` is told each ``<Dial>`` outcome (sync or async)."""
    app[SETTINGS] = settings
    app[ON_CALL] = on_call
    if on_resume is not None:
        app[ON_RESUME] = on_resume
    if on_dial_result is not None:
        app[ON_DIAL_RESULT] = on_dial_result
    app.router.add_post("/twilio/voice", voice_webhook)
    app.router.add_post("/twilio/after", after_stream_webhook)
    app.router.add_post("/twilio/dial-result", dial_result_webhook)
    app.router.add_get("/twilio/media", media_websocket)
