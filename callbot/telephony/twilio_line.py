"""``TwilioCallControl``: the Twilio line once the pipeline has stopped (hold audio, keypad, agent leg).

While the flow talks, pipecat's transport reads the media websocket. When the flow hands the
call to a person the pipeline stops and its reader is cancelled, but the call (and the socket)
stay up; from then on this control is the socket's only reader (``_read_line``) and writer:

- ``play`` sends 20 ms µ-law ``media`` messages paced on the playout clock, ``PLAY_LEAD_S``
  ahead, so a keypad digit can cut it short with ``clear`` (Twilio drops what it buffered);
- ``connect_agent`` replaces the stream by a ``<Dial>`` (REST ``Twiml`` update, or the
  ``<Connect action>`` decision stored in Redis when there are no REST credentials);
- ``transfer`` (cold) and ``hangup`` end the bot's part of the call.

Decisions that ``/twilio/after`` must find live in Redis (``after_key``), not in process
memory: Twilio may send that webhook to another worker than the one holding the socket.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web
from redis.exceptions import RedisError
from twilio.twiml.voice_response import VoiceResponse

from callbot.config import Settings
from callbot.telephony.base import AgentLeg
from callbot.telephony.twilio_messages import MediaStreamError, parse_message

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

TWILIO_RATE = 8000
FRAME_BYTES = TWILIO_RATE * 20 // 1000  # one 20 ms µ-law frame
ULAW_SILENCE = b"\xff"
PLAY_LEAD_S = 0.15  # how far ahead of the caller's playout ``play`` may run (jitter cushion)
PLAYOUT_TIMEOUT_S = 8.0
END_MARK = "callbot-end"
REST_TIMEOUT_S = 5.0
HANDOFF_STOP_WAIT_S = 5.0  # after a REST <Dial>, how long to wait for Twilio's ``stop``
TWIML_MAX_CHARS = 4000  # Twilio error 32018 above this
AFTER_KEY_PREFIX = "callbot:twilio:after:"
AFTER_TTL_S = 3600

RedisGetter = Callable[[], "Redis"]


# ---------------------------------------------------------------- shared state (Redis) and TwiML
def after_key(call_sid: str) -> str:
    return f"{AFTER_KEY_PREFIX}{call_sid}"


async def store_after_stream(redis: Redis, call_sid: str, twiml: str) -> None:
    """Remember the TwiML ``/twilio/after`` must answer once this call's stream ends (any worker)."""
    await redis.set(after_key(call_sid), twiml, ex=AFTER_TTL_S)


async def pop_after_stream(redis: Redis, call_sid: str) -> str | None:
    """The stored after-stream TwiML, removed so a later stream of the same call starts clean."""
    async with redis.pipeline(transaction=True) as pipe:
        value, _ = await pipe.get(after_key(call_sid)).delete(after_key(call_sid)).execute()
    return value.decode() if isinstance(value, bytes) else value


def dial_twiml(destination: str, *, action: str, ring_timeout: float | None = None,
               answer_on_bridge: bool = False) -> str:
    """``<Dial action=…>`` to a number or (``sip:…``) a SIP URI. ``action`` must be absolute (error 15004).

    ``ring_timeout`` is rounded and kept in Twilio's 5-600 s range.
    """
    destination = destination.strip()
    if not destination:
        raise ValueError("empty transfer destination")
    attrs: dict[str, Any] = {"action": action}
    if ring_timeout is not None:
        attrs["timeout"] = max(5, min(600, round(ring_timeout)))
    if answer_on_bridge:
        attrs["answer_on_bridge"] = True
    response = VoiceResponse()
    dial = response.dial(**attrs)
    if destination.lower().startswith("sip:"):
        dial.sip(destination)
    else:
        dial.number(destination)
    return str(response)


def dial_result_url(public_base: str, call_id: str, *, cold: bool = False) -> str:
    return f"{public_base}/twilio/dial-result?call={quote(call_id, safe='')}" + ("&cold=1" if cold else "")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# ---------------------------------------------------------------- the control
class TwilioCallControl:
    """``CallControl`` for one Twilio Media Streams call (see the module docstring).

    Line methods (``play``, ``digits``, ``caller_gone``, ``connect_agent``) and the playout
    wait of ``hangup``/``transfer`` start the control's socket reader; should the pipeline's
    reader still be on the socket, ours waits its turn (aiohttp allows one reader at a time).
    After ``handed_off`` (or a transfer / hang-up) the bot is out of the call: ``hangup``
    becomes a no-op, so a transferred caller is never hung up by a late clean-up.
    """

    def __init__(self, settings: Settings, ws: web.WebSocketResponse, serializer: Any, *, redis: RedisGetter,
                 account_sid: str, call_sid: str, stream_sid: str, call_id: str, public_base: str) -> None:
        self.settings = settings
        self.ws = ws
        self.serializer = serializer  # its ``marks_played``: marks echoed while the pipeline read the socket
        self._redis = redis
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.call_id = call_id
        self.public_base = public_base.rstrip("/")
        self.rest_hangups = 0
        self.clears_sent = 0
        self.bad_messages = 0
        self._done = False
        self._gone = asyncio.Event()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._digit_count = 0
        self._waiter: asyncio.Future[None] | None = None  # ``play`` sleeping; a digit or the line going wakes it
        self._marks: dict[str, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ reader
    @property
    def has_rest(self) -> bool:
        return bool(self.settings.twilio_token and self.account_sid and self.call_sid)

    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_line(), name=f"twilio-line-{self.call_sid}")

    async def _read_line(self) -> None:
        try:
            while True:
                try:
                    msg = await self.ws.receive()
                except RuntimeError as e:
                    if "Concurrent" in str(e):  # the pipeline's reader is still on it
                        await asyncio.sleep(0.02)
                        continue
                    break  # "connection is closed"
                if msg.type == WSMsgType.TEXT:
                    self._on_message(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                else:
                    self.bad_messages += 1
                    log.warning("call %s: skipped a non-text websocket message (%s)", self.call_sid, msg.type)
        except (ConnectionError, asyncio.TimeoutError) as e:
            log.info("call %s: media websocket lost (%s)", self.call_sid, e)
        except Exception:
            log.exception("call %s: the line reader failed; treating the line as lost", self.call_sid)
        finally:
            self._line_gone()

    def _on_message(self, data: str) -> None:
        if '"media"' in data and '"dtmf"' not in data:  # the caller's audio: 50 a second, unused on hold
            return
        try:
            message = parse_message(data)
        except MediaStreamError as e:
            self.bad_messages += 1
            log.warning("call %s: skipped a malformed message (%s): %.120r", self.call_sid, e.message, data)
            return
        if message.event == "dtmf":
            self._digits.put_nowait(message.digit)
            self._digit_count += 1
            self._notify()
        elif message.event == "mark":
            self._marks.setdefault(message.mark, asyncio.Event()).set()
        elif message.event == "stop":
            log.info("call %s: Twilio stopped the stream", self.call_sid)
            self._line_gone()

    def _line_gone(self) -> None:
        self._gone.set()
        self._notify()

    def _notify(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def close(self) -> None:
        """Stop the reader (the socket is closed by the transport)."""
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass

    # ------------------------------------------------------------ the line
    @property
    def caller_gone(self) -> asyncio.Event:
        self._ensure_reader()
        return self._gone

    def digits(self) -> asyncio.Queue[str]:
        self._ensure_reader()
        return self._digits

    async def _send(self, message: dict[str, Any]) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(message))
            return True
        except (ConnectionError, RuntimeError) as e:
            log.info("call %s: websocket send failed (%s): line gone", self.call_sid, e)
            self._line_gone()
            return False

    async def _pause_until(self, deadline: float, digits_before: int) -> bool:
        """Sleep until ``deadline`` (monotonic); False at once if a digit came or the line went.

        A bare future + ``call_later`` (woken by ``_notify``): ``play`` sleeps 50 times a second
        per waiting caller, so no ``wait_for`` task per frame.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._digit_count != digits_before or self._gone.is_set():
                return False
            delay = deadline - time.monotonic()
            if delay <= 0:
                return True
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(delay, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    async def play(self, pcm: bytes, rate: int) -> bool:
        self._ensure_reader()
        if self._done or self._gone.is_set() or self.ws.closed:
            return False
        pcm = pcm[: len(pcm) // 2 * 2]
        if rate != TWILIO_RATE:
            pcm, _ = audioop.ratecv(pcm, 2, 1, rate, TWILIO_RATE, None)
        ulaw = audioop.lin2ulaw(pcm, 2)
        digits_before = self._digit_count
        start = time.monotonic()
        for i in range(0, len(ulaw), FRAME_BYTES):
            if not await self._pause_until(start + i / TWILIO_RATE - PLAY_LEAD_S, digits_before):
                return await self._interrupted(digits_before)
            frame = ulaw[i:i + FRAME_BYTES].ljust(FRAME_BYTES, ULAW_SILENCE)
            if not await self._send({"event": "media", "streamSid": self.stream_sid,
                                     "media": {"payload": base64.b64encode(frame).decode()}}):
                return False
        if not await self._pause_until(start + len(ulaw) / TWILIO_RATE, digits_before):
            return await self._interrupted(digits_before)
        return True

    async def _interrupted(self, digits_before: int) -> bool:
        if self._digit_count != digits_before and not self._gone.is_set():
            self.clears_sent += 1
            await self._send({"event": "clear", "streamSid": self.stream_sid})
        return False

    async def wait_playout(self, timeout: float = PLAYOUT_TIMEOUT_S, name: str = END_MARK) -> bool:
        """Send a ``mark`` and wait until Twilio echoes it: everything sent before it was heard."""
        self._ensure_reader()
        if self._gone.is_set() or self.ws.closed:
            return False
        echoed = self._marks[name] = asyncio.Event()  # a fresh one: an older echo of ``name`` must not count
        if not await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}):
            return False
        if name in getattr(self.serializer, "marks_played", ()):
            return True
        waits = [asyncio.ensure_future(echoed.wait()), asyncio.ensure_future(self._gone.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if echoed.is_set():
            return True
        if not self._gone.is_set():
            log.info("call %s: no playback mark within %.0f s; going on anyway", self.call_sid, timeout)
        return False

    # ------------------------------------------------------------ leaving the bot
    async def connect_agent(self, destination: str, *, ring_timeout: float, call_id: str) -> AgentLeg:
        """``<Dial>`` the agent; the bot leaves the call (``handed_off``) or stays (``failed``).

        Whether the agent answers is learnt later by ``/twilio/dial-result``: not reached,
        it reconnects a stream with ``resume`` = ``call_id`` (never a hang-up on the caller).
        """
        if self._done:
            return AgentLeg("failed", detail="the bot already left this call")
        if self._gone.is_set():
            return AgentLeg("caller_gone")
        try:
            twiml = dial_twiml(destination, ring_timeout=ring_timeout, answer_on_bridge=True,
                               action=dial_result_url(self.public_base, call_id))
        except ValueError as e:
            return AgentLeg("failed", detail=str(e))
        if len(twiml) > TWIML_MAX_CHARS:
            return AgentLeg("failed", detail=f"<Dial> TwiML is {len(twiml)} chars, Twilio takes {TWIML_MAX_CHARS}")
        self._ensure_reader()
        if self.has_rest:
            status, detail = await self._rest_update({"Twiml": twiml})
            if status is None or status >= 300:
                log.error("call %s: connecting agent %s failed: %s", self.call_sid, destination, detail)
                return AgentLeg("failed", detail=detail)
            self._done = True
            try:  # Twilio now runs the <Dial>; wait for its ``stop`` so the socket is not closed first
                await asyncio.wait_for(self._gone.wait(), HANDOFF_STOP_WAIT_S)
            except TimeoutError:
                log.warning("call %s: no 'stop' %.0f s after the REST <Dial>", self.call_sid, HANDOFF_STOP_WAIT_S)
            return AgentLeg("handed_off")
        if not await self._store_after(twiml):
            return AgentLeg("failed", detail="could not store the <Dial> decision in Redis")
        self._done = True
        await self.wait_playout(timeout=2.0)
        await self.ws.close()  # Twilio fetches <Connect action> = /twilio/after -> the <Dial>
        return AgentLeg("handed_off")

    async def transfer(self, destination: str) -> bool:
        """Cold transfer through ``<Connect action>``; a failed ``<Dial>`` comes back as a resumed call."""
        if self._done:
            return False
        try:
            twiml = dial_twiml(destination, action=dial_result_url(self.public_base, self.call_id, cold=True))
        except ValueError as e:
            log.error("call %s: cannot transfer: %s", self.call_sid, e)
            return False
        if not await self._store_after(twiml):
            return False
        self._done = True
        await self.wait_playout()
        await self.ws.close()  # Twilio now fetches <Connect action> and gets <Dial>
        return True

    async def hangup(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        await self.wait_playout()
        if self.has_rest:
            await self._rest_complete()
        await self.ws.close()

    async def _store_after(self, twiml: str) -> bool:
        try:
            await store_after_stream(self._redis(), self.call_sid, twiml)
            return True
        except (RedisError, OSError, RuntimeError) as e:
            log.error("call %s: cannot store the after-stream decision in Redis: %s", self.call_sid, e)
            return False

    # ------------------------------------------------------------ REST
    async def _rest_update(self, form: dict[str, str]) -> tuple[int | None, str]:
        """POST the call resource; (HTTP status or None when unreachable, a readable detail)."""
        url = (f"{self.settings.twilio_api_base_url.rstrip('/')}/2010-04-01/Accounts/"
               f"{self.account_sid}/Calls/{self.call_sid}.json")
        auth = aiohttp.BasicAuth(self.account_sid, self.settings.twilio_token or "")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)) as http:
                async with http.post(url, data=form, auth=auth) as resp:
                    if resp.status < 300:
                        return resp.status, ""
                    return resp.status, f"Twilio REST update HTTP {resp.status}: {(await resp.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as e:
            return None, f"Twilio REST update failed: {type(e).__name__}: {e}"

    async def _rest_complete(self) -> None:
        status, detail = await self._rest_update({"Status": "completed"})
        if status is not None:
            self.rest_hangups += 1
        if status is None or (status >= 300 and status != 404):
            log.error("REST hang-up of %s: %s", self.call_sid, detail)
