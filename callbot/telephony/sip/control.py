"""``CallControl`` for one SIP call: hang-up, cold transfer (REFER), bridged and attended
transfers, and the line while the caller waits for an agent (hold audio, keypad, the agent's leg).
"""

from __future__ import annotations

import asyncio
import audioop
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from callbot.telephony.base import AgentLeg
from callbot.telephony.sip.stack import SipCall, TransferOutcome
from callbot.telephony.sip.transport import SipTransport

if TYPE_CHECKING:
    from callbot.telephony.sip.server import SipServer

logger = logging.getLogger("callbot.sip")


class SipCallControl:
    """One SIP call's provider actions (see the module docstring)."""

    def __init__(self, server: SipServer, call: SipCall, transport: SipTransport) -> None:
        self._server = server
        self._call = call
        self._transport = transport
        self.last_transfer = None  # TransferOutcome of the last transfer()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._line_started = False
        call.on_digit(self._digits.put_nowait)

    @property
    def end_reason(self) -> str:
        """Why the stack ended the call ("" while it is up): tells a media timeout from a hang-up."""
        return self._call.end_reason if self._call.ended.is_set() else ""

    # ---- the line while the caller waits (the pipeline has stopped)
    @property
    def caller_gone(self) -> asyncio.Event:
        return self._call.ended

    def digits(self) -> asyncio.Queue[str]:
        if not self._line_started:  # digits pressed while the flow listened were the flow's
            self._line_started = True
            while not self._digits.empty():
                self._digits.get_nowait()
        return self._digits

    async def play(self, pcm: bytes, rate: int) -> bool:
        """Write ``pcm`` a little ahead of the stack's clock; a digit flushes what is queued."""
        digits, call = self.digits(), self._call
        if rate != call.sample_rate:
            pcm, _ = audioop.ratecv(pcm, 2, 1, rate, call.sample_rate, None)
        ahead = call.sample_rate * 2 // 5  # 200 ms queued in the stack
        view = memoryview(pcm)
        try:
            return await self._write_paced(call, digits, view, ahead)
        except asyncio.CancelledError:  # cut short (an agent answered): what is queued must not delay the next
            call.flush_tx()
            raise

    @staticmethod
    async def _write_paced(call: SipCall, digits: asyncio.Queue[str], view: memoryview, ahead: int) -> bool:
        while True:
            if call.ended.is_set():
                return False
            if not digits.empty():
                call.flush_tx()
                return False
            if not view:
                if call.tx_buffered() == 0:
                    return True
            elif call.tx_buffered() < ahead:
                n = call.write_audio(bytes(view[: ahead - ahead % 2]))
                view = view[n:]
            await asyncio.sleep(0.02)

    async def connect_agent(self, destination: str, *, ring_timeout: float, call_id: str) -> AgentLeg:
        """Ring the agent (French ringback to the caller meanwhile), then relay audio between the legs
        until one hangs up. The bot stays in the media path: it works with any trunk or PBX, no REFER."""
        if not destination:
            return AgentLeg("failed", detail="the agent has no phone configured")
        target = self._server.transfer_uri(destination)
        try:
            agent = await self._server.engine.dial(target)
        except Exception as e:  # the stack refused the URI
            return AgentLeg("failed", detail=f"cannot dial {target}: {e}")
        ringback = asyncio.create_task(self._ringback())
        try:
            answered = asyncio.ensure_future(agent.wait_established(ring_timeout))
            gone = asyncio.ensure_future(self._call.ended.wait())
            await asyncio.wait({answered, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
        finally:
            ringback.cancel()
        if self._call.ended.is_set():
            answered.cancel()
            await agent.hangup()
            return AgentLeg("caller_gone")
        if not answered.result():
            reason = agent.end_reason or "no answer"
            await agent.hangup()
            return AgentLeg(_leg_failure(reason, agent.ended.is_set()), detail=reason)
        logger.info("SIP %s bridged to agent %s", self._call.meta.sip_call_id, target)
        self._transport.closing = True
        t0 = time.monotonic()
        await relay(self._call, agent)
        return AgentLeg("ended", talk_s=time.monotonic() - t0)

    async def _ringback(self) -> None:
        """French ringback: 440 Hz, 1.5 s on, 3.5 s off."""
        rate = self._call.sample_rate
        t = np.arange(int(1.5 * rate)) / rate
        tone = (np.sin(2 * np.pi * 440 * t) * 3000).astype("<i2").tobytes()
        pause = bytes(int(3.5 * rate) * 2)
        while True:
            await self.play(tone + pause, rate)
            await asyncio.sleep(0.02)

    async def hangup(self, reason: str) -> None:
        """BYE after the queued audio has played (bounded); safe twice."""
        self._transport.closing = True
        deadline = time.monotonic() + 10
        while (
            not self._call.ended.is_set()
            and self._call.tx_buffered() > 0
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        logger.info("SIP hangup %s (%s)", self._call.meta.sip_call_id, reason)
        await self._call.hangup()

    async def transfer(self, destination: str) -> bool:
        """Blind transfer (REFER); True once the NOTIFY reports the new call answered.

        ``destination``: a SIP URI, or a number/user completed with the caller's
        domain by the stack. On success the call ends (the caller's side BYEs).
        """
        target = self._server.transfer_uri(destination)
        logger.info("SIP REFER %s -> %s", self._call.meta.sip_call_id, target)
        self._transport.closing = True
        outcome = await self._call.transfer(target, timeout=self._server.transfer_timeout)
        self.last_transfer = outcome
        if not outcome.ok:
            self._transport.closing = False
            logger.warning("SIP transfer to %s failed: %s", target, outcome.reason)
        return outcome.ok

    async def bridge(self, destination: str, *, timeout: float = 30.0) -> bool:
        """Bridged (attended-style) transfer: call ``destination`` and relay audio
        between the two legs in Python until either side hangs up.

        The pipeline must stop using the call's audio first (the flow ends its
        pipeline with ``hangup_on_end`` False on the transport, then calls this).
        Returns False when the destination did not answer (caller leg untouched).
        """
        target = self._server.transfer_uri(destination)
        consult = await self._server.engine.dial(target)
        if not await consult.wait_established(timeout):
            await consult.hangup()
            return False
        self._transport.closing = True
        await relay(self._call, consult)
        return True

    async def attended_transfer(self, destination: str, *, timeout: float = 30.0) -> bool:
        """Consult ``destination``, then REFER the caller to it with Replaces (the
        bot leaves the path). Needs a caller that supports Replaces; otherwise use
        :meth:`bridge`.

        Returns False (call still up, off hold) when the caller did not advertise
        Replaces (checked before ringing the destination), the destination did not
        answer, or the caller's NOTIFY reported a failure; ``last_transfer`` says why.
        A destination that ignores Replaces gets the caller as a new call; the bot
        then hangs up its consultation leg after ``replaces_grace`` seconds.
        """
        if self._call.supports_replaces() is False:
            self.last_transfer = TransferOutcome(False, None, "caller does not support Replaces")
            logger.warning("SIP attended transfer of %s: caller does not support Replaces",
                           self._call.meta.sip_call_id)
            return False
        target = self._server.transfer_uri(destination)
        consult = await self._server.engine.dial(target)
        if not await consult.wait_established(timeout):
            await consult.hangup()
            self.last_transfer = TransferOutcome(False, None, "destination did not answer")
            return False
        self._transport.closing = True
        outcome = await self._call.attended_transfer(consult, timeout=timeout)
        self.last_transfer = outcome
        if not outcome.ok:
            await consult.hangup()
            self._transport.closing = False
            return False
        # A Replaces-capable target ends the consultation leg itself (BYE); one that
        # ignores Replaces (Debian's baresip 1.0) takes the transferee as a second call
        # and would keep our leg open: hang it up.
        try:
            await asyncio.wait_for(consult.ended.wait(), self._server.replaces_grace)
        except TimeoutError:
            logger.info("SIP attended transfer: target kept the consultation leg; hanging it up")
            await consult.hangup()
        return True


def _leg_failure(reason: str, ended: bool) -> str:
    """Why the agent's phone did not answer, from the stack's end reason."""
    r = reason.lower()
    if "486" in r or "busy" in r:
        return "busy"
    if "603" in r or "decline" in r:
        return "declined"
    return "failed" if ended and "487" not in r and "timeout" not in r else "no_answer"


async def relay(a: SipCall, b: SipCall, frame_secs: float = 0.02) -> None:
    """Copy PCM both ways until one leg ends, then hang up the other."""
    a.flush_tx()
    b.flush_tx()
    while not (a.ended.is_set() or b.ended.is_set()):
        for src, dst in ((a, b), (b, a)):
            pcm = src.read_audio(3200)
            if pcm and dst.tx_buffered() < 2400:
                dst.write_audio(pcm)
        await asyncio.sleep(frame_secs)
    await a.hangup()
    await b.hangup()
