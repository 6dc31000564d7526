"""An INVITE flood from one address does not stop the others (per-source rate limit, loopback only).

sipp floods from 127.0.0.2 while a citizen calls from 127.0.0.1: the flooder gets 503 beyond its quota,
the citizen's call is answered and greeted.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

import callbot_testing.sip_caller as C
from callbot_testing.sip_testbot import ToneBotServer as bot

pytestmark = [
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.timeout(90),
]


async def test_a_flood_from_one_address_does_not_stop_the_others():
    async with bot(max_calls=20, invites_per_source=5, bot={"end_after_greeting": True}) as b:
        flood = asyncio.create_task(C.run_sipp("uac_refused.xml", b.target, calls=60, limit=60, rate=60,
                                               local_ip="127.0.0.2", timeout=20))
        await asyncio.sleep(0.5)  # the flood is under way
        sink = await C.RtpSink.open()
        try:
            citizen = await C.run_sipp("uac_wait_bye.xml", b.target, keys=C.sipp_keys(sink.port), timeout=20)
        finally:
            sink.close()
        await flood
        stats = b.server.stats
        print(f"flood: {stats.rejected_flood} INVITEs refused (503), {stats.accepted} calls answered")
        assert citizen.returncode == 0, (citizen.errors[-1500:], citizen.stats)
        assert stats.rejected_flood >= 50
        assert stats.accepted <= 5 + 1  # the flooder's quota, and the citizen
