"""SIP transport against real peers (sipp, Debian baresip), loopback only.

Each test starts its own SipServer (baresip-python engine) on a free port, with
the tone test bot (``callbot_testing.sip_testbot``) as the pipeline, and
places real calls. Needs the Debian packages ``sip-tester`` and ``baresip-core``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import socket
import time

import pytest

import callbot_testing.sip_caller as C
from callbot_testing.sip_testbot import ToneBotServer

pytestmark = [
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.timeout(60),
]


def bot(**kw) -> ToneBotServer:
    return ToneBotServer(**kw)


def assert_greeting(stream: C.RtpStream, *, hz: float = 440.0) -> None:
    segs = C.segments(bytes(stream.pcm), 8000)
    assert segs, "no bot audio (silence only)"
    start, end = segs[0]
    assert 0.8 <= end - start <= 1.3, segs
    greet = bytes(stream.pcm)[int(start * 16000): int(end * 16000)]
    assert abs(C.pcm_stats(greet)["peak_hz"] - hz) < 15


async def sipp_call(b: ToneBotServer, sink: C.RtpSink, *, codec: str = "PCMA", transport: str = "u1",
                    digit: str = "7", info_digit: str = "5") -> C.SippResult:
    speech = C.g711a_pcap_pcm()[: 8000 * 2 * 2]  # 2 s of the Debian sample speech

    async def media() -> None:
        await sink.play(speech)
        await sink.send_digit(digit)

    task = asyncio.create_task(media())
    res = await C.run_sipp("uac.xml", b.target, transport=transport, timeout=20,
                           keys=C.sipp_keys(sink.port, codec=codec, info_digit=info_digit))
    await task
    return res


@pytest.mark.parametrize("codec,transport", [("PCMA", "u1"), ("PCMU", "u1"), ("PCMA", "t1")])
async def test_sipp_call_audio_digits_caller_hangs_up(codec, transport):
    async with bot() as b:
        sink = await C.RtpSink.open()
        try:
            res = await sipp_call(b, sink, codec=codec, transport=transport)
            assert res.returncode == 0, res.errors[-1500:]
            await b.wait_calls_done()
            rec = b.records[0]
            # caller hung up -> the transport told the pipeline
            assert rec.disconnected
            # RFC 4733 digit then SIP INFO digit reached the pipeline as InputDTMFFrame
            assert rec.digits == ["7", "5"]
            # caller audio reached the pipeline, upsampled once to 16 kHz
            assert rec.rx_rate == 16000 and rec.rx_rms_max > 1000
            # identity: P-Asserted-Identity wins over From; To user part = called
            assert rec.info.channel == "sip"
            assert rec.info.caller == "+33612345678" and rec.info.called == "mairie"
            assert rec.info.provider_call_id and rec.info.extra["source"].startswith(
                "tcp:127.0.0.1:" if transport == "t1" else "udp:127.0.0.1:")
            stream = sink.bot_stream()
            assert stream.pts == {0 if codec == "PCMU" else 8}
            assert_greeting(stream)
            # greeting starts right after the first RTP packet (answer)
            assert stream.first_voice_at - stream.first_at < 0.3
            # one 880 Hz reply per digit after the greeting
            assert len(C.segments(bytes(stream.pcm), 8000)) >= 3
            assert b.server.stats.answer_ms[0] < 100
        finally:
            sink.close()


async def test_bot_hangs_up_after_greeting_played():
    async with bot(bot={"end_after_greeting": True}) as b:
        sink = await C.RtpSink.open()
        try:
            res = await C.run_sipp("uac_wait_bye.xml", b.target, keys=C.sipp_keys(sink.port), timeout=15)
            assert res.returncode == 0, res.errors[-1500:]
            assert "BYE sip:" in res.messages
            stream = sink.bot_stream()
            assert_greeting(stream)  # the whole greeting was played before the BYE
            await b.wait_calls_done()
            assert not b.records[0].disconnected
        finally:
            sink.close()


async def test_unsupported_codec_gets_488_and_options_200():
    async with bot() as b:
        res = await C.run_sipp("uac_488.xml", b.target, timeout=8)
        assert res.returncode == 0, res.errors[-1500:]
        res = await C.run_sipp("options.xml", b.target, timeout=8)
        assert res.returncode == 0, res.errors[-1500:]
        assert b.server.stats.accepted == 0


async def test_server_binds_its_sip_port_only():
    """No SIP/TLS on port + 1 nor WebSocket ports: a second port nobody configured made starts fail."""
    import os

    import psutil

    async with bot() as b:
        port = int(b.target.rsplit(":", 1)[1])
        tcp = {c.laddr.port for c in psutil.Process(os.getpid()).net_connections("tcp")
               if c.status == psutil.CONN_LISTEN}
        assert port in tcp
        assert port + 1 not in tcp and port + 2 not in tcp


async def test_allow_list_refuses_other_networks_with_403():
    async with bot(allow=["10.0.0.0/8"]) as b:
        res = await C.run_sipp("uac_refused.xml", b.target, timeout=8)
        assert res.returncode == 0, res.errors[-1500:]
        assert "SIP/2.0 403 Forbidden" in res.messages
        assert b.server.stats.rejected_network == 1 and b.server.stats.accepted == 0
        assert not b.records
        assert b.server.engine.calls == set()  # the refused call is gone from the stack too


async def test_call_cap_answers_503_retry_after_and_recovers():
    async with bot(max_calls=1) as b:
        sink = await C.RtpSink.open()
        try:
            first = asyncio.create_task(sipp_call(b, sink))
            while not b.records:
                await asyncio.sleep(0.05)
            res = await C.run_sipp("uac_refused.xml", b.target, timeout=8)
            assert res.returncode == 0, res.errors[-1500:]
            assert "SIP/2.0 503 Service Unavailable" in res.messages and "Retry-After: 5" in res.messages
            assert b.server.stats.rejected_busy == 1
            assert (await first).returncode == 0
            await b.wait_calls_done()
            # the slot is free again
            sink2 = await C.RtpSink.open()
            try:
                assert (await sipp_call(b, sink2)).returncode == 0
            finally:
                sink2.close()
        finally:
            sink.close()


async def test_media_timeout_ends_call():
    async with bot(media_timeout=2) as b:
        sink = await C.RtpSink.open()
        sink.keep_line = False
        try:
            play = asyncio.create_task(sink.play(C.g711a_pcap_pcm()[: 8000 * 2]))  # 1 s, then RTP stops
            t0 = time.monotonic()
            res = await C.run_sipp("uac_wait_bye.xml", b.target, keys=C.sipp_keys(sink.port), timeout=15)
            await play
            assert res.returncode == 0, res.errors[-1500:]
            assert time.monotonic() - t0 < 8
            await b.wait_calls_done()
            assert b.records[0].disconnected  # the pipeline was told the call is gone
            print("stack end reason:", b.records[0].end_reason)
            from callbot.call import LINE_LOST

            assert any(m in b.records[0].end_reason.lower() for m in LINE_LOST)  # run_call: end reason "timeout"
        finally:
            sink.close()


def _fuzz_packets(target_port: int, n: int = 300) -> list[bytes]:
    rnd = random.Random(4)
    invite = (
        "INVITE sip:mairie@127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{b}\r\n"
        "From: <sip:x@127.0.0.1>;tag={b}\r\nTo: <sip:mairie@127.0.0.1>\r\nCall-ID: fuzz{b}\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:9>\r\nContent-Type: application/sdp\r\n"
        "Content-Length: {n}\r\n\r\n{sdp}"
    )
    good_sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
    bad_sdps = ["v=0\r\nm=audio\r\n", "m=audio 99999999 RTP/AVP 0 0 0 0\r\nc=IN IP4 999.1.1.1\r\n",
                "garbage\x00\xff" * 20, "v=0\r\nc=IN IP6 ::::\r\nm=audio -5 RTP/AVP abc\r\n", ""]
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 1400))))
        elif kind == 1:  # truncated valid INVITE
            sdp = good_sdp
            msg = invite.format(p=target_port, b=i, n=len(sdp), sdp=sdp).encode()
            out.append(msg[: rnd.randint(1, len(msg) - 1)])
        elif kind == 2:  # garbage SDP, wrong Content-Length
            sdp = rnd.choice(bad_sdps)
            out.append(invite.format(p=target_port, b=i, n=rnd.choice([len(sdp), 0, 99999, -1]), sdp=sdp)
                       .encode("latin-1", "replace"))
        elif kind == 3:  # mutated bytes
            msg = bytearray(invite.format(p=target_port, b=i, n=len(good_sdp), sdp=good_sdp).encode())
            for _ in range(10):
                msg[rnd.randrange(len(msg))] = rnd.getrandbits(8)
            out.append(bytes(msg))
        else:  # header soup
            out.append(b"SIP/2.0 200 OK\r\n" + b"Via: " + b";" * rnd.randint(0, 3000) + b"\r\n\r\n")
    return out


async def test_malformed_datagrams_do_not_hurt_and_next_call_works():
    async with bot() as b:
        pkts = _fuzz_packets(b.server.port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in pkts:
                s.sendto(p, ("127.0.0.1", b.server.port))
        for p in pkts[:40]:  # same over TCP, one connection each
            with contextlib.suppress(OSError):
                r, w = await asyncio.open_connection("127.0.0.1", b.server.port)
                w.write(p)
                await w.drain()
                w.close()
        await asyncio.sleep(1.0)
        sink = await C.RtpSink.open()
        try:
            res = await sipp_call(b, sink)
            assert res.returncode == 0, res.errors[-1500:]
            await b.wait_calls_done(len(b.records))
            assert b.records[-1].digits == ["7", "5"]
            assert_greeting(sink.bot_stream())
        finally:
            sink.close()
        # still answering pings; well-formed fuzz INVITEs that were answered but never
        # ACKed are closed by the stack's timer (64*T1), not counted as failures here
        assert (await C.run_sipp("options.xml", b.target, timeout=8)).returncode == 0


async def test_ten_simultaneous_calls_all_get_audio():
    async with bot(max_calls=12, bot={"end_after_greeting": True}) as b:
        sink = await C.RtpSink.open()
        try:
            t0 = time.monotonic()
            res = await C.run_sipp("uac_wait_bye.xml", b.target, calls=10, limit=10, rate=50,
                                   keys=C.sipp_keys(sink.port), timeout=20)
            # the bot hangs up each call after its greeting
            assert res.returncode == 0, (res.errors[-1500:], res.stats)
            assert time.monotonic() - t0 < 10
            assert len(b.records) == 10
            streams = [s for s in sink.streams.values() if len(s.pcm) > 8000]
            assert len(streams) == 10
            for st in streams:
                assert_greeting(st)
        finally:
            sink.close()


async def test_digest_auth_challenge_then_call():
    async with bot(auth_user="mairie-pbx", auth_password="s3cret-Pa55", bot={"end_after_greeting": True}) as b:
        # no credentials: 401 with a challenge
        res = await C.run_sipp("uac_refused.xml", b.target, timeout=8)
        assert res.returncode == 0, res.errors[-1500:]
        assert "SIP/2.0 401 Unauthorized" in res.messages
        assert re.search(r'WWW-Authenticate: Digest realm="callbot", nonce="\d+\.\w+", algorithm=MD5, qop="auth"',
                         res.messages)
        # wrong password: challenged, then 403
        res = await C.run_sipp("uac_auth.xml", b.target, keys=C.sipp_keys(C.free_udp_port()), timeout=8,
                               extra=["-au", "mairie-pbx", "-ap", "wrong"])
        assert res.returncode != 0 and "SIP/2.0 403 Forbidden" in res.messages
        assert b.server.stats.rejected_auth == 1 and not b.records
        # right credentials: challenged, answered, greeting, the bot hangs up
        sink = await C.RtpSink.open()
        try:
            res = await C.run_sipp("uac_auth.xml", b.target, keys=C.sipp_keys(sink.port), timeout=10,
                                   extra=["-au", "mairie-pbx", "-ap", "s3cret-Pa55"])
            assert res.returncode == 0, res.errors[-1500:]
            assert_greeting(sink.bot_stream())
        finally:
            sink.close()
        await b.wait_calls_done()
        assert len(b.records) == 1 and b.server.stats.accepted == 1
        assert b.server.stats.auth_challenges == 3
        assert b.server.engine.calls == set()
