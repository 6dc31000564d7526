"""The project's own Twilio test caller: plays the part of Twilio + a phone.

It POSTs the (signed) voice webhook, opens the TwiML ``<Connect><Stream>`` websocket
and speaks the real Media Streams protocol: ``connected``, ``start``, one 20 ms µ-law
``media`` frame every 20 ms in real time (silence between steps), ``dtmf``, ``mark``
echoed once the bot audio before it has *played*, ``stop``. Bot audio is played out
in real time like Twilio (``clear`` drops the queue), recorded and measured.

    report = await place_call("http://127.0.0.1:8080", audio=[
        WaitForBot(), Say("tests/fixtures/audio/horaires.wav"), WaitForBot(), Hangup()])
    print(report.timeline())

CLI: ``scripts/call --help``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from twilio.request_validator import RequestValidator

from callbot_testing import audio as A
from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.report import CallReport, Turn, analyse
from callbot_testing.steps import Hangup, Press, Say, Step, Wait, WaitForBot
from callbot_testing.twiml import dial_target, local_url, new_sid, parse_twiml, public_url

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
WEBHOOK_PATH = "/twilio/voice"
MessageListener = Callable[[float, dict[str, Any]], None]  # (call time, message from the server)


# ------------------------------------------------------------------ the call
class _Call:
    def __init__(self, report: CallReport, steps: Sequence[Step], pcms: dict[int, np.ndarray], *,
                 http: aiohttp.ClientSession, base_url: str, token: str | None, public_base: str | None,
                 params: dict[str, str], on_message: MessageListener | None = None):
        self.on_message_hook = on_message
        self.r, self.steps, self.pcms = report, steps, pcms
        self.http, self.base_url, self.token, self.public_base = http, base_url, token, public_base
        self.params = params  # what Twilio sends with each webhook
        self.action: str | None = None
        self.t0 = time.monotonic()
        self.st0 = self.t0  # reset when the stream starts
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.heard = A.HeardAudio()
        self.out: deque[tuple[bytes, Callable[[float], None] | None]] = deque()
        self.seq = 0
        self.ended = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.last_action_end = 0.0  # stream time
        self.steps_done = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    # clocks: "stream" time is what HeardAudio uses, reports use "call" time
    def now(self) -> float:
        return time.monotonic() - self.st0

    def call_t(self, stream_t: float) -> float:
        return round(stream_t + self.st0 - self.t0, 3)

    async def send(self, event: str, **body: Any) -> None:
        if self.ws is None or self.ws.closed:
            return
        self.seq += 1
        msg = {"event": event, "sequenceNumber": str(self.seq), **body, "streamSid": self.r.stream_sid}
        try:
            async with self.send_lock:
                await self.ws.send_str(json.dumps(msg))
        except (ConnectionError, RuntimeError) as exc:
            if not self.ended.is_set():
                self.r.warnings.append(f"send {event} failed: {exc!r}")

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---------------------------------------------------------- answering
    async def post_twiml(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        """POST a Twilio webhook to the server (signed like Twilio when there is a token)."""
        twilio_url = public_url(url, self.public_base)
        target, _ = local_url(url, self.base_url)
        headers = {}
        if self.token:
            headers["X-Twilio-Signature"] = RequestValidator(self.token).compute_signature(twilio_url, params)
        async with self.http.post(target, data=params, headers=headers) as resp:
            return resp.status, await resp.text()

    async def answer(self, ws_url: str | None) -> bool:
        r = self.r
        path = urlsplit(self.base_url).path
        url = self.base_url if path not in ("", "/") else self.base_url.rstrip("/") + WEBHOOK_PATH
        r.webhook_url, r.signed = url, bool(self.token)
        r.webhook_status, r.twiml = await self.post_twiml(url, {**self.params, "CallStatus": "ringing"})
        r.webhook_s = round(time.monotonic() - self.t0, 3)
        if r.webhook_status != 200:
            r.errors.append(f"webhook returned HTTP {r.webhook_status}: {r.twiml[:200]}")
            r.ended_by = "error"
            return False
        twiml = parse_twiml(r.twiml)
        if not twiml.url:
            r.errors.append(f"TwiML has no <Connect><Stream> (first verb: {twiml.verb or 'none'})")
            r.ended_by = "rejected" if twiml.verb in ("Reject", "Hangup") else "error"
            return False
        if twiml.verb != "Connect":
            r.warnings.append(f"<{twiml.verb}><Stream> is unidirectional on Twilio: the bot could not talk")
        r.stream_url, r.custom_parameters, self.action = twiml.url, twiml.parameters, twiml.action
        target, warning = (ws_url, None) if ws_url else local_url(twiml.url, self.base_url)
        if warning:
            r.warnings.append(warning)
        r.connected_url = target
        ws_headers = {}
        if self.token:  # Twilio signs the websocket handshake too (URL only)
            ws_headers["X-Twilio-Signature"] = RequestValidator(self.token).compute_signature(twiml.url, {})
        self.ws = await self.http.ws_connect(target, headers=ws_headers, max_msg_size=0)
        r.stream_sid = new_sid("MZ")
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send("start", start={
            "streamSid": r.stream_sid, "accountSid": r.account_sid, "callSid": r.call_sid,
            "tracks": ["inbound"], "customParameters": r.custom_parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
        self.st0 = time.monotonic()
        r.answered_at = self.call_t(0.0)
        return True

    async def follow_action(self) -> None:
        """The server closed the stream: like Twilio, fetch ``<Connect action>`` and run its TwiML."""
        if not self.action:
            return
        try:
            status, body = await self.post_twiml(self.action, {**self.params, "CallStatus": "in-progress"})
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            self.r.errors.append(f"<Connect action> {self.action} failed: {exc!r}")
            return
        self.r.after_twiml = body
        if status != 200:
            self.r.errors.append(f"<Connect action> {self.action} returned HTTP {status}")
        elif target := dial_target(body):
            self.r.transferred_to, self.r.ended_by = target, "transfer"

    # ----------------------------------------------------- the phone line
    async def line(self) -> None:
        """One caller frame every 20 ms on the monotonic clock; fire due marks."""
        chunk, next_t = 0, self.st0
        while not self.ended.is_set():
            next_t += A.FRAME_S
            delay = next_t - time.monotonic()
            if delay < -0.04:
                self.r.late_frames += 1
            await asyncio.sleep(max(delay, 0.0))
            if self.ended.is_set():
                break
            frame, callback = self.out.popleft() if self.out else (A.SILENCE_FRAME, None)
            chunk += 1
            await self.send("media", media={"track": "inbound", "chunk": str(chunk),
                                            "timestamp": str((chunk - 1) * 20),
                                            "payload": base64.b64encode(frame).decode()})
            if callback:
                callback(self.now())
            for name in self.heard.due_marks(self.now()):
                await self.echo_mark(name)

    async def receive(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self.on_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.r.protocol_errors.append("binary websocket message")
                else:
                    break
        except (aiohttp.ClientError, ConnectionError) as exc:
            if not self.ended.is_set():
                self.r.warnings.append(f"websocket error: {exc!r}")
        self.finish("server-ws")

    async def on_message(self, data: str) -> None:
        r, now = self.r, self.now()
        try:
            msg = json.loads(data)
            event = msg["event"]
        except (ValueError, KeyError, TypeError):
            r.protocol_errors.append(f"not a Twilio message: {data[:80]!r}")
            return
        if self.on_message_hook is not None:
            self.on_message_hook(self.call_t(now), msg)
        if msg.get("streamSid") != r.stream_sid:
            r.protocol_errors.append(f"{event}: streamSid {msg.get('streamSid')!r} is not ours (Twilio ignores it)")
            return
        if self.ended.is_set():
            return
        if event == "media":
            try:
                payload = base64.b64decode(msg["media"]["payload"], validate=True)
            except (KeyError, TypeError, ValueError):
                r.protocol_errors.append("media without a valid base64 payload")
                return
            r.media_received += 1
            if r.first_media_at is None:
                r.first_media_at = self.call_t(now)
            self.heard.write(payload, now)
        elif event == "clear":
            r.clears.append(self.call_t(now))
            for name in self.heard.clear(now):
                await self.echo_mark(name)
        elif event == "mark":
            name = str((msg.get("mark") or {}).get("name", ""))
            r.marks.append([self.call_t(now), None, name])
            self.heard.mark(name, now)
        else:
            r.protocol_errors.append(f"unexpected event {event!r} from the server")

    async def echo_mark(self, name: str) -> None:
        """Like Twilio: echo a mark once the audio sent before it has played."""
        pending = next((m for m in self.r.marks if m[1] is None and m[2] == name), None)
        if pending:
            pending[1] = self.call_t(self.now())
        await self.send("mark", mark={"name": name})

    def finish(self, by: str) -> None:
        if self.ended.is_set():
            return
        now = self.now()
        self.r.ended_by, self.r.ended_at = by, self.call_t(now)
        dropped = self.heard.queued_until - now
        if dropped > 0:  # the line is gone: what was queued is never heard
            self.r.audio_cut_s = round(dropped, 3)
            self.heard.clear(now)
        self.ended.set()

    async def hangup(self, by: str = "caller") -> None:
        if not self.ended.is_set():
            self.finish(by)
            await self.send("stop", stop={"accountSid": self.r.account_sid, "callSid": self.r.call_sid})
        if self.ws is not None:
            await self.ws.close()

    def on_rest(self, form: dict[str, str]) -> None:
        """The bot updated the call by REST: Twilio ends the stream (sends stop, closes)."""
        if form.get("Status") == "completed":
            self.r.rest_hangup_at = self.call_t(self.now())
            self.spawn(self.hangup("server-rest"))
        elif form.get("Twiml") or form.get("Url"):
            self.r.transferred_to = dial_target(form.get("Twiml", "")) or form.get("Url") or form.get("Twiml")
            self.spawn(self.hangup("transfer"))

    # -------------------------------------------------------------- steps
    async def run_steps(self) -> None:
        for i, step in enumerate(self.steps):
            if isinstance(step, Say):
                await self.say(step, self.pcms[i])
            elif isinstance(step, Press):
                await self.press(step)
            elif isinstance(step, Wait):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, WaitForBot):
                await self.wait_for_bot(step)
            elif isinstance(step, Hangup):
                await self.hangup("caller")
            self.steps_done = i + 1

    async def say(self, step: Say, pcm: np.ndarray) -> None:
        frames = A.ulaw_frames(pcm) or [A.SILENCE_FRAME]
        first, last = A.speech_bounds(pcm) or (0, len(frames) - 1)
        turn = Turn("say", step.describe(), start=0.0, end=0.0)
        done = asyncio.Event()

        def mark_frame(i: int) -> Callable[[float], None] | None:
            if i not in (first, last, len(frames) - 1):
                return None

            def on_sent(t: float) -> None:
                if i == first:
                    turn.start = self.call_t(t - A.FRAME_S)
                if i == last:
                    turn.end = self.call_t(t)
                    self.last_action_end = t
                if i == len(frames) - 1:
                    done.set()

            return on_sent

        self.r.turns.append(turn)
        self.out.extend((f, mark_frame(i)) for i, f in enumerate(frames))
        await done.wait()

    async def press(self, step: Press) -> None:
        start = self.now()
        for k, digit in enumerate(step.digits):
            if k:
                await asyncio.sleep(step.interval)
            await self.send("dtmf", dtmf={"track": "inbound_track", "digit": digit})
            self.r.dtmf_sent.append((self.call_t(self.now()), digit))
        self.last_action_end = self.now()
        self.r.turns.append(Turn("press", step.digits, self.call_t(start), self.call_t(self.last_action_end)))

    async def wait_for_bot(self, step: WaitForBot) -> None:
        since, deadline = self.last_action_end, self.now() + step.timeout
        while True:
            if self.heard.spoke_since(since):
                last = self.heard.last_active_end()
                if last is not None and self.now() - last >= step.silence_after:
                    return
            elif self.now() > deadline:
                self.r.warnings.append(f"WaitForBot: the bot did not speak within {step.timeout:.0f} s")
                return
            await asyncio.sleep(A.FRAME_S)


async def place_call(
    base_url: str,
    *,
    audio: Sequence[Step],
    token: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    call_sid: str | None = None,
    caller: str = "+33612345678",
    called: str = "+33100000000",
    record_path: str | Path | None = None,
    ws_url: str | None = None,
    hangup_after: float | None = None,
    timeout: float = 60,
    rest: FakeTwilioRest | None = None,
    public_base: str | None = None,
    webhook_params: dict[str, str] | None = None,
    on_message: MessageListener | None = None,
) -> CallReport:
    """Place one call to the bot at ``base_url`` and play ``audio`` steps in order.

    ``base_url`` is the server root (``/twilio/voice`` is appended) or the full webhook URL.
    After the last step, hang up after ``hangup_after`` s unless the server ended the
    call first (None: wait for the server, up to ``timeout``). With ``rest``, a REST
    ``Status=completed`` (or ``Twiml=<Dial>``) ends the stream like Twilio does. When the
    server closes the stream, ``<Connect action>`` is fetched and a ``<Dial>`` recorded
    as a transfer. ``public_base``: the server's public URL, for signatures (the server's
    ``public_url`` setting); TwiML URLs on that host are reached through ``base_url``.
    ``on_message(t, message)``: each well-formed message from the server, when it arrives
    (call time), e.g. to check how bot audio is paced.
    """
    report = CallReport(call_sid=call_sid or new_sid("CA"), account_sid=account_sid)
    steps = list(audio)
    pcms = dict(await asyncio.to_thread(lambda: {i: s.pcm() for i, s in enumerate(steps) if isinstance(s, Say)}))
    params = {"CallSid": report.call_sid, "AccountSid": account_sid, "From": caller, "To": called,
              "Caller": caller, "Called": called, "Direction": "inbound", "ApiVersion": "2010-04-01",
              "FromCountry": "FR", "ToCountry": "FR", **(webhook_params or {})}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout + 10, connect=10)) as http:
        call = _Call(report, steps, pcms, http=http, base_url=base_url, token=token,
                     public_base=public_base, params=params, on_message=on_message)
        unsubscribe = rest.subscribe(report.call_sid, call.on_rest) if rest else None
        try:
            if not await call.answer(ws_url):
                return report
        except (aiohttp.ClientError, OSError, ET.ParseError, asyncio.TimeoutError) as exc:
            report.errors.append(f"could not connect the call: {exc!r}")
            report.ended_by = "error"
            return report
        finally:
            if unsubscribe and report.answered_at is None:
                unsubscribe()
        call.spawn(call.receive())
        call.spawn(call.line())
        script = asyncio.create_task(call.run_steps())
        ended = asyncio.create_task(call.ended.wait())
        remaining = lambda: max(0.0, timeout - (time.monotonic() - call.t0))  # noqa: E731
        await asyncio.wait({script, ended}, timeout=remaining(), return_when=asyncio.FIRST_COMPLETED)
        if script.done() and script.exception() is not None:
            report.errors.append(f"step failed: {script.exception()!r}")
            await call.hangup("error")
        elif script.done() and not call.ended.is_set():
            wait = remaining() if hangup_after is None else min(hangup_after, remaining())
            await asyncio.wait({ended}, timeout=wait)
            if not call.ended.is_set() and hangup_after is not None:
                await call.hangup("caller")
        if not call.ended.is_set():
            report.errors.append(f"call still up after the {timeout:.0f} s timeout")
            await call.hangup("timeout")
        if not script.done():
            script.cancel()
            report.steps_skipped = len(steps) - call.steps_done
        ended.cancel()
        await asyncio.sleep(0.05)  # let an in-flight REST hang-up land
        if call.ws is not None:
            await call.ws.close()
        for task in list(call.tasks) + [script]:
            task.cancel()
        await asyncio.gather(*call.tasks, script, ended, return_exceptions=True)
        if report.ended_by == "server-ws":
            await call.follow_action()
    if unsubscribe:
        unsubscribe()
    if rest and report.rest_hangup_at is None and rest.hung_up(report.call_sid).is_set():
        report.rest_hangup_at = report.ended_at  # hung up by REST after the websocket closed
    analyse(report, call.heard, call.st0 - call.t0, record_path)
    return report


__all__ = ["place_call", "CallReport", "Turn", "Say", "Press", "Wait", "WaitForBot", "Hangup", "Step"]
