"""Fuzzing the Twilio Media Streams messages: hostile traffic never crashes a reader, and the call goes on.

House rule: a malformed websocket message is rejected with a message that says what and where;
the call goes on. Two parts:

- ``test_hostile_messages_get_a_typed_error``: >= 10 000 generated messages (seeded, the seed is
  printed; ``FUZZ_SEED`` / ``FUZZ_MEDIA_CASES`` override) go straight to every reader of the media
  socket: ``parse_message``, the pipeline serializer (``media_audio`` fast path and
  ``deserialize``) and ``TwilioCallControl._on_message``. Each must return, or raise
  ``MediaStreamError`` naming the field; any other exception, or a case slower than a second, is a crash.
- ``test_hostile_traffic_over_a_real_websocket``: ~200 of them through a real aiohttp server
  running the real ``/twilio/media`` handler and websocket transport on 127.0.0.1, interleaved with
  valid audio and keypad digits, before ``start``, after ``stop``: every valid digit and packet
  still arrives, every bad message is counted and logged with the call and the field, nothing is
  logged as an error, and a clean call afterwards works.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import random
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import Frame, InputAudioRawFrame, InputDTMFFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer

from callbot.call import run_pipeline
from callbot.config import Settings
from callbot.telephony import twilio
from callbot.telephony.twilio import CallbotTwilioSerializer
from callbot.telephony.twilio_line import TwilioCallControl
from callbot.telephony.twilio_messages import MediaStreamError, parse_message
from callbot_testing.mutate import paths

pytestmark = pytest.mark.timeout(120)

SEED = int(os.environ.get("FUZZ_SEED", "20260611"))
CASES = int(os.environ.get("FUZZ_MEDIA_CASES", "12000"))
KEYPAD = {k.value for k in KeypadEntry}
PCM_PER_ULAW_BYTE = 4  # 8 kHz µ-law byte -> two 16-bit samples at the pipeline's 16 kHz


# ---------------------------------------------------------------- the generator
SID = "MZ" + "f0" * 16
CALL = "CA" + "f0" * 16
ACCOUNT = "AC" + "f0" * 16
SILENCE = base64.b64encode(b"\xff" * 160).decode()


def valid(event: str, i: int = 1, *, sid: str = SID, call: str = CALL, digit: str = "1") -> dict[str, Any]:
    """A well-formed Media Streams message, as Twilio sends it."""
    head = {"event": event, "sequenceNumber": str(i), "streamSid": sid}
    if event == "connected":
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    if event == "start":
        return {**head, "start": {"streamSid": sid, "accountSid": ACCOUNT, "callSid": call,
                                  "tracks": ["inbound"], "customParameters": {"caller": "+33612345678"},
                                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    if event == "media":
        return {**head, "media": {"track": "inbound", "chunk": str(i), "timestamp": str(20 * i), "payload": SILENCE}}
    if event == "dtmf":
        return {**head, "dtmf": {"track": "inbound_track", "digit": digit}}
    if event == "mark":
        return {**head, "mark": {"name": "callbot-end"}}
    return {**head, "stop": {"accountSid": ACCOUNT, "callSid": call}}


EVENTS = ("connected", "start", "media", "dtmf", "mark", "stop")
GARBAGE_CHARS = "\x00\x01\x7f\u00e9\u202e\u200b\ufeff\ud800\udfff\U0001f600\u0661\\\"{}[]:,"
WEIRD_DIGITS: list[Any] = ["", "11", "Z", "é", "\x00", 1, 5.0, None, True, [], {}, "#", "*", "A", "D", "E", " 1",
                           "1 ", "\u0661", "１", "-1", "10", "**", "\ud800", "x" * 10_000]
WEIRD_NUMBERS: list[Any] = [-1, 0, 2**63, -(2**63) - 1, 10**400, 1e308, -0.0, "", "-5", "1e999", "NaN", "0x10",
                            "99999999999999999999999999", None, [], {}, True]
BAD_BASE64 = ["!!!", "////", "/w=", "=", "==", "/w==/w==", " /w== ", "\n/w==", "é", "/w\x00=", "a", "ab", "abc",
              "////\n////", "-_-_", "\ud800", "*" * 5000]


def random_value(rnd: random.Random) -> Any:
    return rnd.choice([None, True, False, 0, -1, 2**70, -(10**30), 1.5, float("inf"), "", "x",
                       "".join(rnd.choice(GARBAGE_CHARS) for _ in range(rnd.randint(1, 30))),
                       [], [1, "a"], {}, {"a": {"b": []}}])


def set_at(obj: Any, path: tuple, value: Any, *, delete: bool = False) -> None:
    for p in path[:-1]:
        obj = obj[p]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def nested(rnd: random.Random, depth: int) -> str:
    opener, closer = rnd.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + "1" + closer * depth


def hostile(rnd: random.Random, i: int, *, max_chars: int = 2_000_000) -> tuple[str, str | bytes]:
    """(kind, message): one hostile Media Streams message."""
    kinds = ("binary", "unicode", "truncated", "not_object", "delete_key", "retype", "sequence", "bad_base64",
             "payload_size", "unknown_event", "dtmf_digit", "deep", "duplicate_key", "flip", "huge_string", "valid")
    kind = kinds[i % len(kinds)]
    base = valid(rnd.choice(EVENTS), rnd.randint(1, 10_000), digit=rnd.choice("0123456789*#"))
    if kind == "binary":
        data: str | bytes = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        if rnd.random() < 0.3:
            data = json.dumps(base).encode()  # a well-formed message, but in a binary frame
    elif kind == "unicode":
        data = "".join(rnd.choice(GARBAGE_CHARS) for _ in range(rnd.randint(0, 200)))
        if rnd.random() < 0.5:
            data = '{"event": "media", "media": {"payload": "' + data + '"}}'
    elif kind == "truncated":
        text = json.dumps(base)
        data = text[: rnd.randint(0, len(text) - 1)]
    elif kind == "not_object":
        data = rnd.choice(["[]", "[1, 2, 3]", '"media"', '"a string"', "null", "true", "42", "-1e999", "NaN",
                           '["event", "media"]', json.dumps([base]), "", " ", "\n"])
    elif kind == "delete_key":
        victim = rnd.choice(paths(base))
        set_at(base, victim, None, delete=True)
        data = json.dumps(base)
    elif kind == "retype":
        victim = rnd.choice(paths(base))
        set_at(base, victim, random_value(rnd))
        data = json.dumps(base)
    elif kind == "sequence":
        for key in ("sequenceNumber", "chunk", "timestamp"):
            target = base if key == "sequenceNumber" else base.get("media", base)
            target[key] = rnd.choice(WEIRD_NUMBERS)
        data = json.dumps(base)
    elif kind == "bad_base64":
        base = valid("media", i)
        base["media"]["payload"] = rnd.choice(BAD_BASE64)
        data = json.dumps(base)
    elif kind == "payload_size":
        base = valid("media", i)
        size = rnd.choice([0, 1, 3, 159, 161, 321, 4001, 8000, 8001, rnd.randint(0, 20_000)])
        if rnd.random() < 0.05:
            size = 700_000
        base["media"]["payload"] = base64.b64encode(bytes(rnd.getrandbits(8) for _ in range(size))
                                                    if size < 5000 else b"\x7f" * size).decode()
        data = json.dumps(base)
    elif kind == "unknown_event":
        base["event"] = rnd.choice(["", "Media", "MEDIA", "medias", "clear", "start ", "\u0000", "dtmf\n",
                                    "media\u200b", "x" * 5000, 1, None, [], {"event": "media"}, True])
        data = json.dumps(base)
    elif kind == "dtmf_digit":
        base = valid("dtmf", i)
        base["dtmf"]["digit"] = rnd.choice(WEIRD_DIGITS)
        data = json.dumps(base)
    elif kind == "deep":
        depth = rnd.choice([50, 500, 1_000, 5_000, 100_000, 300_000])
        field = rnd.choice(["media", "dtmf", "start", "mark", "extra"])
        text = json.dumps(valid(field if field in EVENTS else "media", i))
        data = text[:-1] + f', "{field}x": ' + nested(rnd, depth) + "}"
        if rnd.random() < 0.3:
            data = '{"event": "media", "media": ' + nested(rnd, depth) + "}"
    elif kind == "duplicate_key":
        data = json.dumps(base)[:-1] + ', "event": ' + json.dumps(rnd.choice(list(EVENTS) + ["nope"])) + "}"
    elif kind == "flip":
        text = list(json.dumps(base))
        for _ in range(rnd.randint(1, 8)):
            text[rnd.randrange(len(text))] = rnd.choice(GARBAGE_CHARS + "abc019 ")
        data = "".join(text)
    elif kind == "huge_string":
        victim = rnd.choice(paths(base))
        set_at(base, victim, "é" * rnd.choice([10_000, 300_000]))
        data = json.dumps(base, ensure_ascii=rnd.random() < 0.5)
    else:
        data = json.dumps(base)
    if len(data) > max_chars:
        data = data[:max_chars]
    return kind, data


# ---------------------------------------------------------------- straight to the parsers
def _serializer(sid: str = SID, call: str = CALL) -> CallbotTwilioSerializer:
    serializer = CallbotTwilioSerializer(sid, call_sid=call,
                                         params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    serializer._sample_rate = 16000  # what the pipeline's StartFrame sets
    return serializer


def _control() -> TwilioCallControl:
    return TwilioCallControl(Settings(), SimpleNamespace(closed=False), None, redis=lambda: None, account_sid="",
                             call_sid=CALL, stream_sid=SID, call_id="fuzz", public_base="https://bot.example")


async def test_hostile_messages_get_a_typed_error():
    rnd = random.Random(SEED)
    serializer, control = _serializer(), _control()
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    crashes: list[str] = []
    slowest = 0.0
    t0 = time.perf_counter()
    logging.disable(logging.WARNING)  # 10 000 warnings about skipped messages: the point, not worth printing
    try:
        for i in range(CASES):
            kind, data = hostile(rnd, i)
            started = time.perf_counter()
            reader = "parse_message"
            try:
                try:
                    message = parse_message(data)
                    error = None
                except MediaStreamError as e:
                    message, error = None, e
                    assert e.message and len(e.message) < 300, f"unhelpful or huge error: {e.message[:300]!r}"
                outcomes[(kind, "rejected" if error else message.event)] += 1

                reader = "media_audio"
                if isinstance(data, str):
                    audio = serializer.media_audio(data)
                    assert (audio is not None) == bool(message and message.event == "media" and message.audio)

                reader = "deserialize"
                try:
                    frame = await serializer.deserialize(data)
                except MediaStreamError as e:
                    assert error is not None, f"deserialize rejected what parse_message accepted: {e}"
                    assert e.message.startswith(f"Twilio stream {SID} (call {CALL}): ") and error.message in e.message
                else:
                    assert error is None, f"deserialize accepted what parse_message rejected: {error}"
                    if message.event == "dtmf" and message.digit in KEYPAD:
                        assert isinstance(frame, InputDTMFFrame) and frame.button.value == message.digit
                    elif message.event == "media" and message.audio:
                        assert isinstance(frame, InputAudioRawFrame)
                        assert abs(len(frame.audio) - PCM_PER_ULAW_BYTE * len(message.audio)) <= 8
                    else:
                        assert frame is None

                reader = "TwilioCallControl._on_message"
                if isinstance(data, str):
                    bad_before = control.bad_messages
                    control._on_message(data)
                    skipped = '"media"' in data and '"dtmf"' not in data  # its fast path for hold-time audio
                    assert control.bad_messages - bad_before == (0 if skipped else int(error is not None))
                    if not control._digits.empty():
                        assert control._digits.get_nowait() == message.digit
                    control._gone.clear()  # a 'stop' ends the line; the next case starts a fresh one
            except Exception as e:  # noqa: BLE001 - anything else is what the fuzzer is looking for
                crashes.append(f"case {i} ({kind}) in {reader}: {type(e).__name__}: {str(e)[:200]}\n"
                               f"    input: {data[:300]!r}")
            slowest = max(slowest, time.perf_counter() - started)
    finally:
        logging.disable(logging.NOTSET)
    elapsed = time.perf_counter() - t0
    rejected = sum(n for (_, what), n in outcomes.items() if what == "rejected")
    print(f"\nmedia stream fuzz: seed {SEED}, {CASES} cases ({rejected} rejected, {CASES - rejected} accepted), "
          f"{len(crashes)} crashes, {elapsed:.1f} s, slowest case {slowest * 1000:.0f} ms")
    assert not crashes, f"{len(crashes)} crashes (seed {SEED}):\n" + "\n".join(crashes[:10])
    assert slowest < 1.0, f"a case took {slowest:.2f} s"
    # the generator does what it says: every kind ran, the valid ones pass, the junk is refused
    kinds = {kind for kind, _ in outcomes}
    assert len(kinds) == 16 and CASES >= 10_000
    assert not any(what == "rejected" for kind, what in outcomes if kind == "valid")
    assert all(what == "rejected" for kind, what in outcomes if kind in ("binary", "not_object"))


@pytest.mark.parametrize("data,where", [
    ('{"event": "media", "media": {"payload": "!!!"}}', "media.payload: not base64"),
    ('{"event": "media", "media": "x"}', "media: a string, expected an object"),
    ('{"event": "media", "media": {}}', "media.payload: missing"),
    ('{"event": "media", "media": {"payload": "' + "A" * 12_000 + '"}}', "media.payload: 12000 characters"),
    ('{"event": "dtmf", "dtmf": {"digit": "Z"}}', "dtmf.digit: 'Z' is not a keypad key"),
    ('{"event": "dtmf", "dtmf": {"digit": 5}}', "dtmf.digit: a number, expected a string"),
    ('{"event": "mark", "mark": 5}', "mark: a number, expected an object"),
    ('{"event": "start", "start": {"callSid": ""}}', "start.callSid: empty"),
    ('{"event": "start", "start": {"callSid": "CA1", "customParameters": [1]}}', "start.customParameters: a list"),
    ('{"event": "clear"}', "event: unknown event 'clear'"),
    ('{"event": ["media"]}', "event: a list, expected a string"),
    ('{"no": "event"}', "event: missing"),
    ("[1, 2]", "a list, expected a JSON object"),
    ("{not json", "not JSON (Expecting property name enclosed in double quotes: line 1 column 2"),
    ('{"event": "media", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply"),
    (b"\x00\xff", "a binary frame (2 bytes)"),
])
def test_errors_say_what_and_where(data, where):
    with pytest.raises(MediaStreamError) as info:
        parse_message(data)
    assert info.value.message.startswith(where), info.value.message


def test_valid_messages_parse():
    assert parse_message(json.dumps(valid("media"))).audio == b"\xff" * 160
    assert parse_message(json.dumps(valid("dtmf", digit="#"))).digit == "#"
    assert parse_message(json.dumps(valid("mark"))).mark == "callbot-end"
    assert parse_message('{"event": "mark", "mark": null}').mark == ""  # Twilio's echo of a nameless mark
    assert parse_message(json.dumps(valid("start"))).start["callSid"] == CALL
    assert [parse_message(json.dumps(valid(e))).event for e in ("connected", "stop")] == ["connected", "stop"]


# ---------------------------------------------------------------- through a real websocket
class Collect(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.digits: list[str] = []
        self.audio_bytes = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio_bytes += len(frame.audio)
        elif isinstance(frame, InputDTMFFrame):
            self.digits.append(frame.button.value)
        await self.push_frame(frame, direction)


@pytest.fixture
async def media_server():
    """(base ws URL, calls): the real ``/twilio/media`` route; each call runs a pipeline that collects its input."""
    calls: dict[str, dict[str, Any]] = {}

    async def on_call(transport, info, control) -> None:
        record = calls.setdefault(info.provider_call_id, {"done": asyncio.Event()})
        collect = record["collect"] = Collect()
        try:
            await run_pipeline(Pipeline([transport.input(), collect]), transport)
        except BaseException as e:  # recorded, then re-raised: the test asserts there was none
            record["error"] = repr(e)
            raise
        finally:
            record.update(digits=collect.digits, audio_bytes=collect.audio_bytes, bad=transport.bad_messages)
            record["done"].set()

    app = web.Application()
    twilio.setup_routes(app, Settings(), on_call)
    runner = web.AppRunner(app, access_log=None)  # like web.run_app: a peer leaving does not cancel the handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/twilio/media", calls
    finally:
        await runner.cleanup()


def _sendable(data: str | bytes) -> bool:
    """What a websocket peer can send at all: text frames are UTF-8 (no lone surrogates), under 1 MiB."""
    try:
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    except UnicodeEncodeError:
        return False
    return size < 1_000_000


def _is_start(data: str | bytes) -> bool:
    try:
        return parse_message(data).event == "start"
    except MediaStreamError:
        return False


async def _call_done(calls: dict[str, dict[str, Any]], call_sid: str) -> dict[str, Any]:
    """The server's record of a call, once its handler has returned."""
    async with asyncio.timeout(10):
        while call_sid not in calls:
            await asyncio.sleep(0.02)
        await calls[call_sid]["done"].wait()
    return calls[call_sid]


async def _until_received(calls: dict[str, dict[str, Any]] | None, call_sid: str, pcm_bytes: int) -> None:
    """Before hanging up, wait (at most 10 s) until the call's pipeline has the audio sent: a hang-up cancels
    the pipeline at once, and under CPU load its audio task lags behind the socket (a fixed 0.3 s failed
    every time with two busy processes beside the test)."""
    deadline = time.monotonic() + 10
    while calls is not None and time.monotonic() < deadline:
        collect = calls.get(call_sid, {}).get("collect")
        if collect is not None and collect.audio_bytes >= pcm_bytes:
            return
        await asyncio.sleep(0.02)


async def _send(ws: aiohttp.ClientWebSocketResponse, data: str | bytes) -> None:
    await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))


async def _hostile_call(url: str, k: int, rnd: random.Random, per_call: int,
                        calls: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One call: junk before ``start``, then ``per_call`` hostile messages between valid audio and digits,
    ``stop``, junk after it. Returns what the server must have seen."""
    sid, call = f"MZfuzz{k:02d}" + "0" * 26, f"CAfuzz{k:02d}" + "0" * 26
    expect = {"sid": sid, "call": call, "digits": [], "ulaw_bytes": 0, "bad": 0, "hostile": 0}

    def after_start(data: str | bytes) -> None:
        try:
            message = parse_message(data)
        except MediaStreamError:
            expect["bad"] += 1
            return
        if message.event == "media":
            expect["ulaw_bytes"] += len(message.audio)
        elif message.event == "dtmf" and message.digit in KEYPAD:
            expect["digits"].append(message.digit)

    def next_hostile(*, starts: bool = True) -> str | bytes:
        while True:
            _, data = hostile(rnd, rnd.randrange(10_000), max_chars=900_000)
            if _sendable(data) and (starts or not _is_start(data)):
                expect["hostile"] += 1
                return data

    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps(valid("connected")))
        for data in (json.dumps(valid("media", sid=sid)), b"\x00\xffjunk", "{not json", next_hostile(starts=False),
                     json.dumps({"event": "start", "start": {"callSid": ""}})):  # before start: skipped, logged
            await _send(ws, data)
        await ws.send_str(json.dumps(valid("start", sid=sid, call=call)))
        script: list[str | bytes] = [json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "!!!"}}),
                                     json.dumps(valid("start", sid=sid, call=call))]  # a duplicate start
        for j in range(per_call):
            script.append(next_hostile())
            script.append(json.dumps(valid("media", j, sid=sid)))
            if j % 5 == 0:
                script.append(json.dumps(valid("dtmf", j, sid=sid, digit=rnd.choice("0123456789*#"))))
        script.append(json.dumps(valid("stop", sid=sid, call=call)))
        script += [next_hostile(), json.dumps(valid("dtmf", sid=sid, digit="9"))]  # after stop: still read
        for data in script:
            after_start(data)
            await _send(ws, data)
        await _until_received(calls, call, expect["ulaw_bytes"] * PCM_PER_ULAW_BYTE - 1280)
    return expect


async def test_hostile_traffic_over_a_real_websocket(media_server, caplog, monkeypatch):
    url, calls = media_server
    caplog.set_level(logging.INFO)
    rnd = random.Random(SEED + 1)
    n_calls, per_call = 8, 24
    t0 = time.perf_counter()
    expects = await asyncio.gather(*(_hostile_call(url, k, rnd, per_call, calls) for k in range(n_calls)))
    for exp in expects:
        await _call_done(calls, exp["call"])
    hostile_sent = sum(e["hostile"] for e in expects)

    # a peer that never sends a valid start is closed after START_TIMEOUT_S, not served
    monkeypatch.setattr(twilio, "START_TIMEOUT_S", 0.5)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        for data in ("[]", b"\x01", json.dumps({"event": "start", "start": []}), json.dumps(valid("media"))):
            await _send(ws, data)
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)

    # then a clean call on another websocket: one second of audio and two digits, all received
    sid, call = "MZ" + "c1ea" * 8, "CA" + "c1ea" * 8
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps(valid("connected")))
        await ws.send_str(json.dumps(valid("start", sid=sid, call=call)))
        for j in range(50):
            await ws.send_str(json.dumps(valid("media", j, sid=sid)))
            if j in (10, 30):
                await ws.send_str(json.dumps(valid("dtmf", j, sid=sid, digit="4" if j == 10 else "2")))
        await _until_received(calls, call, 50 * 160 * PCM_PER_ULAW_BYTE - 64 * 20)
    await _call_done(calls, call)
    elapsed = time.perf_counter() - t0

    clean = calls[call]
    assert "error" not in clean and clean["digits"] == ["4", "2"] and clean["bad"] == 0
    assert abs(clean["audio_bytes"] - 50 * 160 * PCM_PER_ULAW_BYTE) <= 64 * 20, clean
    for exp in expects:
        got = calls[exp["call"]]
        assert "error" not in got, got["error"]
        assert got["digits"] == exp["digits"], (exp["call"], got["digits"], exp["digits"])
        assert got["bad"] == exp["bad"], (exp["call"], got["bad"], exp["bad"])
        # all the audio arrived (give or take the resampler's few samples per packet and one unflushed chunk)
        assert exp["ulaw_bytes"] * PCM_PER_ULAW_BYTE - 1280 <= got["audio_bytes"] <= exp["ulaw_bytes"] * 4 + 640, \
            (exp["call"], got["audio_bytes"], exp["ulaw_bytes"])
        # each bad message was logged saying where (the stream and call) and what (the field)
        assert any(f"Twilio stream {exp['sid']} (call {exp['call']}): media.payload: not base64" in r.getMessage()
                   for r in caplog.records), exp["call"]
        assert any(f"call {exp['call']}: skipped a second 'start'" in r.getMessage() for r in caplog.records)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("before 'start': skipped a malformed message" in m for m in messages) >= 4 * n_calls
    assert any("no valid 'start' message" in m for m in messages)
    errors = [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors  # aiohttp's "Error handling request", a failed reader…: none
    print(f"\nmedia stream fuzz over a websocket: seed {SEED + 1}, {n_calls} calls, {hostile_sent} hostile messages "
          f"({sum(e['bad'] for e in expects)} rejected), 0 crashes, a clean call afterwards, {elapsed:.1f} s")
    assert hostile_sent >= 200
