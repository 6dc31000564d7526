"""The Twilio test caller against a minimal fake bot speaking the Media Streams protocol.

The fake bot: answers the webhook (checking X-Twilio-Signature when it has a token)
with TwiML pointing at ``wss://`` (the caller must map it to ``ws://``), greets with
1 s of 440 Hz tone, replies ``REPLY_DELAY`` s after each caller utterance ends (its own
end-of-speech detector needs ``EOS_SILENCE`` s of silence), answers DTMF at once,
sends ``clear`` when the caller barges in on a long reply, and on "2" plays a goodbye,
waits for its mark to come back, hangs up over REST and closes the websocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from callbot_testing import audio as A
from callbot_testing.fake_twilio_rest import FakeTwilioRest
from callbot_testing.twiml import dial_target, local_url, parse_twiml
from callbot_testing.twilio_caller import Hangup, Press, Say, Wait, WaitForBot, place_call

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
ACCOUNT = "AC" + "ab" * 16
TOKEN = "s3cr3t-token"
EOS_SILENCE = 0.3  # fake bot's end-of-speech detector
REPLY_DELAY = 0.2  # fake bot's "thinking" time
TOL = 0.15  # timing tolerance: generous for loaded CI machines


class FakeBot:
    def __init__(self, token: str | None = None, rest: FakeTwilioRest | None = None):
        self.token, self.rest = token, rest
        self.webhooks: list[dict[str, str]] = []
        self.signature_ok: list[bool] = []
        self.ws_signature: str | None = None
        self.events: list[dict] = []
        self.digits: list[str] = []
        self.media_frames = 0
        self.app = web.Application()
        self.app.router.add_post("/twilio/voice", self.voice)
        self.app.router.add_get("/twilio/media", self.media)
        self.app.router.add_post("/twilio/after", self.after)
        self.transfer_to: str | None = None
        self.after_signature_ok: list[bool] = []

    async def after(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        sig = request.headers.get("X-Twilio-Signature", "")
        self.after_signature_ok.append(RequestValidator(TOKEN).validate(str(request.url), form, sig))
        verb = f"<Dial>{self.transfer_to}</Dial>" if self.transfer_to else "<Hangup/>"
        return web.Response(text=f"<Response>{verb}</Response>", content_type="text/xml")

    async def voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.webhooks.append(form)
        sig = request.headers.get("X-Twilio-Signature")
        if self.token:
            ok = sig is not None and RequestValidator(self.token).validate(str(request.url), form, sig)
            self.signature_ok.append(ok)
            if not ok:
                return web.Response(status=403, text="bad signature")
        else:
            self.signature_ok.append(sig is None)
        twiml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="http://{request.host}/twilio/after">'
            f'<Stream url="wss://{request.host}/twilio/media"><Parameter name="caller" value="{form["From"]}"/>'
            f"</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_signature = request.headers.get("X-Twilio-Signature")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = ""
        talking_until = 0.0  # loop time until which our queued audio plays
        loop = asyncio.get_running_loop()
        speech = silent = 0  # caller VAD: loud frames in utterance, silent frames since
        barged = False
        mark_back: asyncio.Event | None = None

        async def play(pcm: np.ndarray, chunk: int = 800) -> None:
            nonlocal talking_until
            data = A.ulaw_encode(pcm)
            for i in range(0, len(data), chunk):  # faster than real time, like a TTS
                await ws.send_json({"event": "media", "streamSid": sid,
                                    "media": {"payload": base64.b64encode(data[i:i + chunk]).decode()}})
            talking_until = max(loop.time(), talking_until) + len(pcm) / A.RATE

        async def reply_later(pcm: np.ndarray) -> None:
            await asyncio.sleep(REPLY_DELAY)
            await play(pcm)

        async def goodbye(call_sid: str) -> None:
            nonlocal mark_back
            mark_back = asyncio.Event()
            await play(A.tone(660, 0.5))
            await ws.send_json({"event": "mark", "streamSid": sid, "mark": {"name": "bye"}})
            await asyncio.wait_for(mark_back.wait(), 3)
            async with aiohttp.ClientSession() as http:
                url = f"{self.rest.base_url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{call_sid}.json"
                async with http.post(url, data={"Status": "completed"}, auth=aiohttp.BasicAuth(ACCOUNT, TOKEN)) as r:
                    assert r.status == 200
            await ws.close()

        call_sid = ""
        async for msg in ws:
            event = json.loads(msg.data)
            self.events.append(event)
            kind = event["event"]
            if kind == "start":
                sid, call_sid = event["streamSid"], event["start"]["callSid"]
                await play(A.tone(440, 1.0))
                await ws.send_json({"event": "mark", "streamSid": sid, "mark": {"name": "greeting"}})
            elif kind == "media":
                self.media_frames += 1
                loud = A.frame_dbfs(A.ulaw_decode(base64.b64decode(event["media"]["payload"])))[0] > -40
                if loud:
                    speech, silent = speech + 1, 0
                    if speech == 3 and loop.time() < talking_until and not barged:
                        barged = True  # caller talks over our long reply: barge-in
                        await ws.send_json({"event": "clear", "streamSid": sid})
                        talking_until = loop.time()
                elif speech:
                    silent += 1
                    if silent * A.FRAME_S >= EOS_SILENCE - 1e-9:
                        speech = silent = 0
                        asyncio.create_task(reply_later(A.tone(880, 0.5)))
            elif kind == "dtmf":
                digit = event["dtmf"]["digit"]
                self.digits.append(digit)
                if digit == "1":
                    await play(A.tone(550, 3.0))  # long reply, the caller will barge in
                elif digit == "2":
                    asyncio.create_task(goodbye(call_sid))
                elif digit == "4":  # buggy hang-up: close without waiting for the audio to play
                    await play(A.tone(440, 2.0))
                    await ws.close()
                elif digit == "3":  # transfer: close the stream, <Connect action> answers <Dial>
                    self.transfer_to = "+33199999999"
                    await ws.close()
            elif kind == "mark" and event["mark"]["name"] == "bye" and mark_back:
                mark_back.set()
            elif kind == "stop":
                break
        return ws


@pytest.fixture
async def servers():
    rest = await FakeTwilioRest(ACCOUNT, TOKEN).start()
    bot = FakeBot(token=TOKEN, rest=rest)
    runner = web.AppRunner(bot.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield bot, rest, f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await rest.stop()


async def test_full_call(servers, tmp_path):
    bot, rest, url = servers
    record = tmp_path / "bot.wav"
    report = await place_call(
        url, token=TOKEN, account_sid=ACCOUNT, rest=rest, record_path=record, timeout=20,
        audio=[
            WaitForBot(silence_after=0.3),
            Say(FIXTURES / "oui.wav"),
            WaitForBot(silence_after=0.3),
            Press("1"),  # long reply ...
            Wait(0.5),
            Say(FIXTURES / "non.wav"),  # ... barged in on: clear
            WaitForBot(silence_after=0.3),
            Press("2"),  # goodbye + REST hang-up
        ],
    )
    print(report.timeline())
    assert report.completed, report.errors
    # webhook: signed, validated, TwiML wss:// mapped to ws://, custom parameter round trip
    assert report.signed and bot.signature_ok == [True]
    assert bot.webhooks[0]["CallSid"] == report.call_sid and bot.webhooks[0]["From"] == "+33612345678"
    assert bot.ws_signature == RequestValidator(TOKEN).compute_signature(report.stream_url, {})
    assert report.stream_url.startswith("wss://") and report.connected_url.startswith("ws://")
    start = next(e for e in bot.events if e["event"] == "start")
    assert start["start"]["customParameters"] == {"caller": "+33612345678"}
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert bot.events[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    # media: contiguous sequence numbers and chunks, 20 ms timestamps, real-time pacing
    seqs = [int(e["sequenceNumber"]) for e in bot.events[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    media = [e["media"] for e in bot.events if e["event"] == "media"]
    assert [int(m["chunk"]) for m in media] == list(range(1, len(media) + 1))
    assert all(int(m["timestamp"]) == 20 * (int(m["chunk"]) - 1) for m in media)
    assert all(len(base64.b64decode(m["payload"])) == 160 for m in media)
    stream_s = report.ended_at - report.answered_at
    assert abs(len(media) * 0.02 - stream_s) < 0.1, (len(media), stream_s)
    # greeting: the bot answers at once
    assert report.greeting_latency is not None and report.greeting_latency < TOL
    # voice-to-voice: end of caller speech -> bot EOS detector + thinking time
    expected = EOS_SILENCE + REPLY_DELAY
    v2v = report.voice_to_voice
    assert len(v2v) == 2 and all(d is not None and abs(d - expected) < TOL for d in v2v), v2v
    # DTMF delivered, in order, answered at once
    assert bot.digits == ["1", "2"] and [d for _, d in report.dtmf_sent] == ["1", "2"]
    assert all(d is not None and d < TOL for d in report.dtmf_to_voice), report.dtmf_to_voice
    # barge-in: one clear, the 3 s reply was cut short in what we heard
    assert report.clear_count == 1
    long_reply = [e - s for s, e in report.bot_speech if s >= report.turns[1].end - 0.01][0]
    assert 0.5 < long_reply < 1.5, report.bot_speech
    # marks: both echoed (greeting after it played; bye before the bot hung up)
    assert report.marks_received == 2 and report.marks_echoed == 2
    # hang-up by REST, goodbye fully played, stop not needed
    assert report.ended_by == "server-rest" and report.server_hung_up
    assert rest.hung_up(report.call_sid).is_set()
    assert report.audio_cut_s == 0
    assert rest.requests[0].auth_ok and rest.requests[0].form == {"Status": "completed"}
    # recording: timeline-accurate, from stream start to hang-up
    pcm = A.read_wav(record)
    assert abs(len(pcm) / A.RATE - stream_s) < 0.05
    assert abs(report.recorded_s - stream_s) < 0.05
    act = A.active_frames(pcm)
    assert act[:45].all() and not act[55:60].any()  # 1 s greeting tone then silence
    assert np.array_equal(report.bot_audio, pcm)
    reply = report.bot_reply(report.turns[0])  # the 0.5 s 880 Hz answer to "oui"
    assert abs(len(reply) / A.RATE - 0.5) < 0.05
    spectrum = np.abs(np.fft.rfft(reply.astype(float)))
    assert abs(np.argmax(spectrum) * A.RATE / len(reply) - 880) < 10
    assert "bot_audio" not in json.dumps(report.to_dict())
    assert "greeting latency" in report.timeline()


async def test_unsigned_call_caller_hangs_up(servers):
    bot, rest, url = servers
    bot.token = None
    report = await place_call(url, audio=[Wait(0.3), Hangup()], timeout=5)
    assert report.completed and report.ended_by == "caller" and not report.server_hung_up
    assert not report.signed and bot.signature_ok == [True]  # no header sent
    await asyncio.sleep(0.05)
    stop = bot.events[-1]
    assert stop["event"] == "stop" and stop["stop"]["callSid"] == report.call_sid
    assert stop["streamSid"] == report.stream_sid


async def test_transfer_through_connect_action(servers):
    bot, rest, url = servers
    report = await place_call(url, token=TOKEN, audio=[Press("3")], timeout=5)
    assert report.completed and report.ended_by == "transfer" and report.server_hung_up
    assert report.transferred_to == "+33199999999" and bot.after_signature_ok == [True]
    assert "transferred to +33199999999" in report.timeline()


async def test_server_closing_before_its_audio_played(servers):
    bot, rest, url = servers
    report = await place_call(url, token=TOKEN, audio=[Press("4"), Say(FIXTURES / "horaires.wav")], timeout=5)
    assert report.completed and report.ended_by == "server-ws" and report.after_twiml
    assert 2.8 < report.audio_cut_s <= 3.0  # the 1 s greeting + 2 s tone were never heard
    assert report.steps_skipped == 1 and report.turns[-1].label.endswith("(cut off)")
    assert "never played" in report.timeline()


async def test_wrong_token_is_rejected(servers):
    bot, rest, url = servers
    report = await place_call(url, token="wrong", audio=[Hangup()], timeout=5)
    assert not report.completed and report.webhook_status == 403
    assert bot.signature_ok == [False]


async def test_hangup_after_and_timeout(servers):
    bot, rest, url = servers
    report = await place_call(url, token=TOKEN, audio=[], hangup_after=0.2, timeout=5)
    assert report.completed and report.ended_by == "caller"
    report = await place_call(url, token=TOKEN, audio=[], timeout=0.6)
    assert not report.completed and report.ended_by == "timeout"


async def test_cli(servers, tmp_path):
    bot, rest, url = servers
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "call"), "--url", url, "--token", TOKEN, "--press", "7",
        "--wait", "0.2", "--hangup", "--no-auto-wait", "--json", "--record", str(tmp_path / "c.wav"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    data = json.loads(out)
    assert data["completed"] and data["ended_by"] == "caller" and bot.digits == ["7"]
    assert (tmp_path / "c.wav").exists()


# ------------------------------------------------------------- unit tests
def test_ulaw_roundtrip_and_silence():
    pcm = A.tone(1000, 0.1)
    back = A.ulaw_decode(A.ulaw_encode(pcm))
    assert np.max(np.abs(back.astype(int) - pcm)) < 0.04 * 32768
    assert A.ulaw_encode(np.zeros(4, dtype=np.int16)) == b"\xff" * 4
    assert not A.active_frames(A.ulaw_decode(A.SILENCE_FRAME * 10)).any()
    noise = (np.random.default_rng(1).normal(0, 40, 8000)).astype(np.int16)  # comfort noise
    assert not A.active_frames(noise).any()


def test_heard_audio_playout_clear_and_marks():
    h = A.HeardAudio()
    assert h.write(A.ulaw_encode(A.tone(440, 1.0)), now=0.5) == 0.5  # all at once: queued
    h.mark("m", now=0.6)
    assert h.queued_until == pytest.approx(1.5)
    assert h.due_marks(1.0) == []
    assert h.clear(1.0) == ["m"]  # clear drops the rest, pending marks come back
    assert h.queued_until == pytest.approx(1.0) and h.dropped_s == pytest.approx(0.5)
    assert h.write(A.ulaw_encode(A.tone(440, 0.2)), now=2.0) == 2.0  # gap = silence
    assert h.onset_after(0.0) == pytest.approx(0.5, abs=0.002)
    assert h.onset_after(0.7) == pytest.approx(2.0, abs=0.002)
    assert A.segments(h.active()) == [(0.5, 1.0), (2.0, 2.2)]


def test_twiml_and_urls():
    t = parse_twiml(
        '<Response><Connect action="https://h/twilio/after"><Stream url="wss://h/twilio/media">'
        '<Parameter name="caller" value="+33"/></Stream></Connect></Response>')
    assert (t.url, t.parameters, t.verb, t.action) == (
        "wss://h/twilio/media", {"caller": "+33"}, "Connect", "https://h/twilio/after")
    t = parse_twiml("<Response><Reject/></Response>")
    assert (t.url, t.verb) == (None, "Reject")
    assert local_url("wss://127.0.0.1:8080/twilio/media", "http://127.0.0.1:8080")[0] == "ws://127.0.0.1:8080/twilio/media"
    url, warning = local_url("wss://bot.example.fr/twilio/media", "http://127.0.0.1:9000")
    assert url == "ws://127.0.0.1:9000/twilio/media" and warning
    assert local_url("wss://bot.example.fr/m", "https://bot.example.fr")[0] == "wss://bot.example.fr/m"
    assert dial_target("<Response><Dial>+33123</Dial></Response>") == "+33123"
    assert dial_target("<Response><Dial><Sip>sip:a@b</Sip></Dial></Response>") == "sip:a@b"
    assert dial_target("<Response><Hangup/></Response>") is None


async def test_fake_rest_checks_basic_auth():
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest, aiohttp.ClientSession() as http:
        url = f"{rest.base_url}/2010-04-01/Accounts/{ACCOUNT}/Calls/CA1.json"
        async with http.post(url, data={"Status": "completed"}, auth=aiohttp.BasicAuth(ACCOUNT, "nope")) as r:
            assert r.status == 401 and (await r.json())["code"] == 20003
        assert not rest.hung_up("CA1").is_set()
        async with http.post(url, data={"Status": "completed"}, auth=aiohttp.BasicAuth(ACCOUNT, TOKEN)) as r:
            assert r.status == 200 and (await r.json())["status"] == "completed"
        assert await rest.wait_hangup("CA1", 0.1)
        assert [q.auth_ok for q in rest.requests_for("CA1")] == [False, True]


def test_fixtures_are_telephone_wavs():
    names = {p.stem for p in FIXTURES.glob("*.wav")}
    assert {"horaires", "agent", "lampadaire", "adresse", "description", "oui", "au_revoir", "urgence"} <= names
    for p in FIXTURES.glob("*.wav"):
        import wave

        with wave.open(str(p)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert p.stat().st_size < 100_000 and A.speech_bounds(A.read_wav(p))


@pytest.mark.skipif(not (shutil.which("pico2wave") or shutil.which("espeak-ng")), reason="no offline TTS")
def test_say_text_is_synthesised_at_8k():
    pcm = Say("Bonjour, je voudrais les horaires.").pcm()
    first, last = A.speech_bounds(pcm)
    assert 1.0 < (last - first) * A.FRAME_S < 4.0
