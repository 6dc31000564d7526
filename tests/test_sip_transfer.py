"""Transfers against real peers, loopback only: a refused blind transfer (the call stays
with the bot), the bridged transfer (``control.bridge``: the bot relays audio) and the
attended transfer (``control.attended_transfer``: consult, then REFER with Replaces).

Peers: the Debian ``baresip`` binary (caller, auto-answer agent; no Replaces support),
sipp as a busy target, and ``tests/sip/bpeer.py`` (baresip-python in its own process) as
the Replaces-capable transferee and target.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

import callbot_testing.sip_caller as C
from callbot_testing.sip_testbot import ToneBotServer as bot

BPEER = Path(__file__).parent / "sip" / "bpeer.py"

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) not installed"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.timeout(60),
]


def tone_at(pcm: bytes, hz: float, rate: int = 8000) -> bool:
    for s, e in C.segments(pcm, rate):
        if abs(C.pcm_stats(pcm[int(s * rate) * 2: int(e * rate) * 2], rate)["peak_hz"] - hz) < 15:
            return True
    return False


class BPeer:
    """``tests/sip/bpeer.py`` in a subprocess; its JSON event lines collected."""

    def __init__(self, *args: str) -> None:
        self.port = C.free_port()
        self.args = ["--port", str(self.port), *args]
        self.events: list[dict] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> BPeer:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(BPEER), *self.args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        self._task = asyncio.create_task(self._read())
        assert await self.wait("ready", timeout=15), "bpeer did not start"
        return self

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    async def wait(self, ev: str, *, call: str | None = None, timeout: float = 10.0, **match) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e["ev"] == ev and (call is None or e.get("call") == call) and \
                        all(e.get(k) == v for k, v in match.items()):
                    return e
            await asyncio.sleep(0.05)
        return None

    async def wait_heard(self, call: str, hz: float, n: int = 2, since: float = 0.0, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.heard(call, hz, since) >= n:
                return True
            await asyncio.sleep(0.1)
        return False

    def heard(self, call: str, hz: float, since: float = 0.0) -> int:
        """Number of 0.5 s windows in which ``call`` received a tone near ``hz``."""
        return sum(1 for e in self.events if e["ev"] == "heard" and e["call"] == call and e["t"] >= since
                   and e["rms"] > 500 and abs(e["hz"] - hz) < 20)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)


async def test_blind_transfer_refused_call_stays_up(tmp_path):
    """The transfer target answers 486: transfer() returns False, the caller stays with the bot."""
    busy_port = C.free_port()
    busy = asyncio.create_task(C.run_sipp("uas_busy.xml", "", local_port=busy_port, timeout=20))
    try:
        async with bot(bot={"transfer_to": f"sip:agent@127.0.0.1:{busy_port}"}) as b:
            caller = await C.BaresipPeer(tmp_path / "caller",
                                         source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 20)).start()
            try:
                await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
                est = await caller.wait_event("CALL_ESTABLISHED", 5)
                assert est
                for _ in range(200):
                    if b.records and b.records[0].transfer_result is not None:
                        break
                    await asyncio.sleep(0.05)
                rec = b.records[0]
                assert rec.transfer_result is False
                assert rec.transfer_outcome.status == 486, rec.transfer_outcome  # from the NOTIFY sipfrag
                print(f"REFER -> refused: {rec.transfer_secs * 1000:.0f} ms")
                # the caller followed the REFER, its new call got 486 (CALL_CLOSED for that leg only)
                closed = [ev for _, ev in caller.events if ev.get("type") == "CALL_CLOSED"]
                assert [ev.get("param") for ev in closed] == ["486 Busy Here"], caller.events
                assert closed[0]["id"] != est["id"]
                assert not rec.disconnected  # the original call is still up
                # the bot goes on: a digit after the failed transfer is answered
                await asyncio.sleep(0.5)
                await caller.digit("4")
                await asyncio.sleep(1.0)
                await caller.hangup()
                await b.wait_calls_done()
                assert rec.digits == ["4"] and rec.disconnected
                assert rec.rx_rms_max > 1000
            finally:
                await caller.stop()
        _, dec = caller.recordings()
        pcm, rate = C.read_wav(dec)
        assert tone_at(pcm, 440, rate) and tone_at(pcm, 880, rate)  # greeting, then the digit reply
        res = await busy
        assert res.returncode == 0, res.errors[-1500:]  # the target saw INVITE -> 486 -> ACK
    finally:
        busy.cancel()


async def test_bridged_transfer_relays_both_ways(tmp_path):
    """control.bridge(): the bot calls the agent and relays audio both ways until the caller hangs up."""
    agent = await C.BaresipPeer(tmp_path / "agent", user="agent", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 20)).start()
    try:
        async with bot(bot={"bridge_to": agent.uri}) as b:
            caller = await C.BaresipPeer(tmp_path / "caller",
                                         source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 20)).start()
            try:
                await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
                assert await caller.wait_event("CALL_ESTABLISHED", 5)
                est = await agent.wait_event("CALL_ESTABLISHED", 10)
                assert est, agent.events
                await asyncio.sleep(2.0)  # both talk through the bot
                await caller.hangup()
                # the bot hangs up the agent's leg when the caller leaves
                assert await agent.wait_event("CALL_CLOSED", 5), agent.events
                await b.wait_calls_done()
                rec = b.records[0]
                assert rec.transfer_result is True
                assert b.server.engine.calls == set()  # both legs gone
            finally:
                await caller.stop()
    finally:
        await agent.stop()
    _, heard_by_caller = caller.recordings()
    _, heard_by_agent = agent.recordings()
    pcm, rate = C.read_wav(heard_by_caller)
    assert tone_at(pcm, 440, rate)  # the greeting
    assert tone_at(pcm, 600, rate)  # then the agent, relayed
    pcm, rate = C.read_wav(heard_by_agent)
    assert tone_at(pcm, 1000, rate)  # the caller, relayed


async def test_attended_transfer_with_replaces():
    """Consultation call to the agent, then REFER with Replaces to the caller: the caller
    calls the agent, the agent swaps the consultation dialog for it, the bot leaves the path."""
    agent = await BPeer("--user", "agent", "--answer", "--tone", "600", "--secs", "20").start()
    try:
        async with bot(bot={"attended_to": f"sip:agent@127.0.0.1:{agent.port}"}) as b:
            caller = await BPeer("--dial", f"sip:mairie@127.0.0.1:{b.server.port}", "--tone", "1000",
                                 "--secs", "20").start()
            try:
                assert await caller.wait("established", call="out", timeout=5)
                # the bot greets, consults the agent, then sends the REFER
                req = await caller.wait("call_transfer", call="out", timeout=10)
                assert req and "?Replaces=" in req["text"] and f":{agent.port}" in req["text"], caller.events
                # (the dialed call's events can race its creation in the binding: go by the audio)
                xfer = await caller.wait("transfer_call", call="xfer1", timeout=5)
                assert xfer, caller.events
                # the agent: consultation leg replaced by the caller's new call
                consult = await agent.wait("closed", call="in0", timeout=5)
                assert consult and consult["text"].endswith("replaced"), agent.events
                inc = await agent.wait("incoming", call="in1")
                assert inc["headers"].get("Replaces") and inc["peer"].startswith("sip:peer@")
                await b.wait_calls_done()
                rec = b.records[0]
                assert rec.transfer_result is True and rec.transfer_outcome.status == 200
                print(f"attended transfer (consult + REFER/Replaces + NOTIFY 200): {rec.transfer_secs * 1000:.0f} ms")
                assert b.server.engine.calls == set()  # no leg left on the bot
                # caller and agent now talk to each other directly
                assert await caller.wait_heard("xfer1", 600, since=xfer["t"]), caller.events
                assert await agent.wait_heard("in1", 1000, since=xfer["t"]), agent.events
                assert caller.heard("out", 440) >= 1  # the greeting before
            finally:
                await caller.stop()
    finally:
        await agent.stop()


async def test_attended_transfer_target_without_replaces(tmp_path):
    """Debian baresip as the target ignores Replaces and takes the caller as a second call:
    the caller is connected all the same and the bot hangs up its consultation leg."""
    agent = await C.BaresipPeer(tmp_path / "agent", user="agent", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 20)).start()
    try:
        async with bot(bot={"attended_to": agent.uri}, replaces_grace=1.0) as b:
            caller = await BPeer("--dial", f"sip:mairie@127.0.0.1:{b.server.port}", "--tone", "1000",
                                 "--secs", "20").start()
            try:
                xfer = await caller.wait("transfer_call", call="xfer1", timeout=10)
                assert xfer, [e for e in caller.events if e["ev"] != "heard"]
                await b.wait_calls_done()
                assert b.records[0].transfer_result is True
                for _ in range(40):  # the consultation leg, hung up by the bot after the grace period
                    if not b.server.engine.calls:
                        break
                    await asyncio.sleep(0.05)
                assert b.server.engine.calls == set()
                assert await caller.wait_heard("xfer1", 600, since=xfer["t"]), caller.events
                established = [ev for _, ev in agent.events if ev.get("type") == "CALL_ESTABLISHED"]
                assert len(established) == 2  # consultation from the bot, then the caller
                assert await agent.wait_event("CALL_CLOSED", 3)  # the consultation leg, closed by the bot
            finally:
                await caller.stop()
    finally:
        await agent.stop()


async def test_attended_transfer_refused_without_replaces_support_keeps_call(tmp_path):
    """A caller that does not advertise Replaces (Debian baresip sends an empty ``Supported:``):
    attended_transfer() returns False before ringing the agent; the caller stays with the bot."""
    agent = await C.BaresipPeer(tmp_path / "agent", user="agent", auto_answer=True,
                                source_wav=C.tone_wav(tmp_path / "a.wav", 600, 20)).start()
    try:
        async with bot(bot={"attended_to": agent.uri}) as b:
            caller = await C.BaresipPeer(tmp_path / "caller",
                                         source_wav=C.tone_wav(tmp_path / "c.wav", 1000, 20)).start()
            try:
                await caller.dial(f"sip:mairie@127.0.0.1:{b.server.port}")
                assert await caller.wait_event("CALL_ESTABLISHED", 5)
                for _ in range(200):
                    if b.records and b.records[0].transfer_result is not None:
                        break
                    await asyncio.sleep(0.05)
                rec = b.records[0]
                assert rec.transfer_result is False and "Replaces" in rec.transfer_outcome.reason
                assert not agent.events  # the agent was never called
                assert not rec.disconnected
                # the bot goes on with the caller (greets again, answers a digit)
                await asyncio.sleep(1.5)
                await caller.digit("4")
                await asyncio.sleep(1.0)
                assert caller.event_time("CALL_CLOSED") is None
                await caller.hangup()
                await b.wait_calls_done()
                assert rec.digits == ["4"] and rec.disconnected
            finally:
                await caller.stop()
    finally:
        await agent.stop()
    _, dec = caller.recordings()
    pcm, rate = C.read_wav(dec)
    assert tone_at(pcm, 880, rate)  # the digit answered after the failed transfer


class SipTrace(logging.Handler):
    """Collects the bot engine's SIP trace (logger ``baresip.native.sip``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def sent_invite_directions(self, call_id: str) -> list[str]:
        """SDP direction of each INVITE/re-INVITE the bot sent in dialog ``call_id``."""
        out = []
        for m in self.messages:
            lines = m.split("\n")
            if m.startswith("TX ") and len(lines) > 1 and lines[1].startswith("INVITE ") and \
                    re.search(rf"^Call-ID:\s*{re.escape(call_id)}\s*$", m, re.MULTILINE | re.IGNORECASE):
                d = re.findall(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", m, re.MULTILINE)
                out.append(d[0] if d else "sendrecv")
        return out


async def test_attended_transfer_refused_by_caller_resumes_call():
    """The caller refuses the REFER (603): both legs were put on hold for the transfer; the
    consultation leg is hung up and the caller's leg is taken off hold, the bot goes on."""
    trace = SipTrace()
    logging.getLogger("baresip.native.sip").addHandler(trace)
    agent = await BPeer("--user", "agent", "--answer", "--tone", "600", "--secs", "20").start()
    try:
        async with bot(bot={"attended_to": f"sip:agent@127.0.0.1:{agent.port}"}) as b:
            caller = await BPeer("--dial", f"sip:mairie@127.0.0.1:{b.server.port}", "--tone", "1000",
                                 "--refuse-transfers", "--secs", "20").start()
            try:
                req = await caller.wait("call_transfer", call="out", timeout=10)
                assert req, caller.events
                for _ in range(100):
                    if b.records and b.records[0].transfer_result is not None:
                        break
                    await asyncio.sleep(0.05)
                rec = b.records[0]
                assert rec.transfer_result is False and rec.transfer_outcome.status == 603, rec.transfer_outcome
                assert await agent.wait("closed", call="in0", timeout=3)  # consultation leg hung up
                # re-INVITEs the bot sent to the caller: hold (sendonly) for the REFER, then resume
                dirs = trace.sent_invite_directions(rec.info.provider_call_id)
                assert dirs[-2:] == ["sendonly", "sendrecv"], dirs
                assert await caller.wait_heard("out", 440, n=1, since=req["t"], timeout=3)  # the bot greets again
                assert not rec.disconnected and b.server.engine.calls  # still up
            finally:
                await caller.stop()
            await b.wait_calls_done()
            assert b.records[0].disconnected
    finally:
        logging.getLogger("baresip.native.sip").removeHandler(trace)
        await agent.stop()
