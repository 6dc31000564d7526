"""Two callbot SIP workers behind Kamailio (Debian package, dispatcher module), loopback only.

Kamailio runs the production config ``deploy/kamailio/kamailio.cfg`` (round robin,
Record-Route, OPTIONS probing every second, failover on timeout); the workers are the
tone test bot in two processes (``python -m callbot_testing.sip_testbot``). sipp calls
the proxy with the proxy-aware scenarios (``rrs="true"``, ``[next_url]``, ``[routes]``).
The tests share one Kamailio and run in file order (the last one kills a worker).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import pytest

import callbot_testing.sip_caller as C
from tests.sip.kamailio.harness import Kamailio, ToneWorker, available, capture_sip

pytestmark = [
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.skipif(not available(), reason="kamailio (Debian package) not installed"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    d = tmp_path_factory.mktemp("kamailio")
    workers = [ToneWorker(d, f"bot{i}", C.free_port()).start() for i in (1, 2)]
    kam = None
    try:
        for w in workers:
            w.wait_ready()
        kam = Kamailio(d, [w.uri for w in workers], port=C.free_port(), ping_interval=1).start()
        yield kam, workers
    finally:
        if kam:
            kam.stop()
        for w in workers:
            w.stop()


def received(messages: str, start: str) -> list[str]:
    """Messages sipp received whose first line starts with ``start``."""
    out = []
    for block in messages.split("-----------------------------------------------")[1:]:
        head, _, msg = block.partition("\n\n")
        if "message received" in head and msg.lstrip().startswith(start):
            out.append(msg.lstrip())
    return out


def new_calls(workers: list[ToneWorker], seen: set[str]) -> dict[str, list[dict]]:
    out = {}
    for w in workers:
        out[w.name] = [c for c in w.calls() if c["sip_call_id"] not in seen]
    return out


async def wait_calls(workers, seen, n, timeout=5.0) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = new_calls(workers, seen)
        if sum(map(len, calls.values())) >= n or time.monotonic() > deadline:
            seen.update(c["sip_call_id"] for cs in calls.values() for c in cs)
            return calls
        await asyncio.sleep(0.05)


SEEN: set[str] = set()


async def test_round_robin_calls_complete_on_both_workers(lb):
    kam, workers = lb
    sink = await C.RtpSink.open()
    try:
        res = await C.run_sipp("uac_proxy.xml", kam.target, calls=4, limit=4, rate=20,
                               keys=C.sipp_keys(sink.port), timeout=20)
        assert res.returncode == 0, (res.errors[-1500:], kam.log())
        calls = await wait_calls(workers, SEEN, 4)
        # round robin: 2 + 2
        assert [len(calls[w.name]) for w in workers] == [2, 2], calls
        for c in calls["bot1"] + calls["bot2"]:
            assert c["digits"] == ["5"]  # the SIP INFO followed the Route set to the right worker
            assert c["caller_hung_up"]  # the caller's BYE too
            assert c["caller"] == "+33612345678" and c["called"] == "mairie"
        # the worker's re-INVITE reached sipp through the proxy (Record-Route honoured both ways)
        reinvites = received(res.messages, "INVITE sip:sipp@")
        assert len(reinvites) == 4 and all(f"Via: SIP/2.0/UDP 127.0.0.1:{kam.port};" in m for m in reinvites)
        # RTP goes straight between the caller and the workers: 4 greetings
        greetings = [s for s in sink.streams.values()
                     if any(0.8 <= e - b <= 1.3 for b, e in C.segments(bytes(s.pcm), 8000))]
        assert len(greetings) == 4
    finally:
        sink.close()


async def test_bot_bye_routes_through_proxy(lb):
    kam, workers = lb
    sink = await C.RtpSink.open()
    try:
        res = await C.run_sipp("uac_proxy_wait_bye.xml", kam.target, service="bye", calls=2, limit=2, rate=20,
                               keys=C.sipp_keys(sink.port), timeout=15)
        assert res.returncode == 0, (res.errors[-1500:], kam.log())
        byes = received(res.messages, "BYE sip:sipp@")
        assert len(byes) == 2
        for bye in byes:
            # top Via = Kamailio: the worker sent its BYE to the Record-Route'd proxy, not straight to sipp
            vias = re.findall(r"^Via: .*$", bye, re.MULTILINE)
            assert f"127.0.0.1:{kam.port};" in vias[0], bye
            assert len(vias) == 2
        calls = await wait_calls(workers, SEEN, 2)
        assert [len(calls[w.name]) for w in workers] == [1, 1], calls
        assert not any(c["caller_hung_up"] for cs in calls.values() for c in cs)
    finally:
        sink.close()


async def test_options_probing_keeps_both_workers_active(lb):
    kam, workers = lb
    dump = await asyncio.to_thread(capture_sip, workers[0].port, 2.5)
    if dump is not None:  # tcpdump present and allowed
        pings = re.findall(r"OPTIONS sip:callbot@127\.0\.0\.1:\d+ SIP/2\.0", dump)
        assert len(pings) >= 2, dump[-2000:]
        assert len(re.findall(r"SIP/2\.0 200 OK", dump)) >= len(pings) - 1  # the last reply may fall outside
    dests = kam.destinations()
    for w in workers:
        assert dests[w.uri]["flags"] == "AP", dests  # active, probing
        assert dests[w.uri]["ping_timeouts"] == 0, dests


async def test_failover_when_a_worker_dies_and_recovery(lb):
    kam, workers = lb
    bot1, bot2 = workers
    bot2.kill()  # SIGKILL: no BYE, no goodbye; Kamailio still thinks it is up
    t_kill = time.monotonic()

    async def when_inactive() -> float | None:
        ok = await asyncio.to_thread(kam.wait_flags, bot2.uri, "IP", 8)
        return time.monotonic() if ok else None

    detected = asyncio.create_task(when_inactive())
    sink = await C.RtpSink.open()
    try:
        res = await C.run_sipp("uac_proxy_wait_bye.xml", kam.target, service="bye", calls=4, limit=4, rate=20,
                               keys=C.sipp_keys(sink.port), timeout=20)
        assert res.returncode == 0, (res.errors[-1500:], kam.log())
        calls = await wait_calls(workers, SEEN, 4)
        assert len(calls["bot1"]) == 4, calls  # every call answered by the survivor
        # at least one INVITE was sent to the dead worker first, then failed over (fr_timer 2 s)
        assert "failover -> " + bot1.uri in kam.log(), kam.log()
        # the pings (or the failed INVITE) marked the dead worker inactive
        t_inactive = await detected
        assert t_inactive, kam.destinations()
        assert kam.destinations()[bot1.uri]["flags"] == "AP"
        print(f"dead worker marked inactive {t_inactive - t_kill:.1f} s after SIGKILL")

        # restart it on the same port (taking one call at a time): the next successful ping brings it back
        bot2.max_calls = 1
        bot2.start().wait_ready()
        t_ready = time.monotonic()
        assert kam.wait_flags(bot2.uri, "AP", 5), kam.destinations()
        print(f"restarted worker active again {time.monotonic() - t_ready:.1f} s after it was ready")
        res = await C.run_sipp("uac_proxy_wait_bye.xml", kam.target, service="bye", calls=2, limit=2, rate=20,
                               keys=C.sipp_keys(sink.port), timeout=15)
        assert res.returncode == 0, res.errors[-1500:]
        calls = await wait_calls(workers, SEEN, 2)
        assert [len(calls[w.name]) for w in workers] == [1, 1], calls
    finally:
        sink.close()


async def test_full_worker_503_fails_over_and_stays_active(lb):
    """bot2 takes one call at a time (previous test): its second round-robin INVITE gets
    503 + Retry-After, Kamailio hands it to bot1 and keeps bot2 in rotation."""
    kam, workers = lb
    bot1, bot2 = workers
    assert bot2.max_calls == 1
    await asyncio.sleep(0.3)  # the previous calls' slots are released
    sink = await C.RtpSink.open()
    try:
        res = await C.run_sipp("uac_proxy_wait_bye.xml", kam.target, service="bye", calls=4, limit=4, rate=20,
                               keys=C.sipp_keys(sink.port), timeout=15)
        assert res.returncode == 0, (res.errors[-1500:], kam.log())
        calls = await wait_calls(workers, SEEN, 4)
        assert [len(calls[w.name]) for w in workers] == [3, 1], calls
        assert "worker full, failover -> " + bot1.uri in kam.log()
        assert kam.destinations()[bot2.uri]["flags"] == "AP"  # not marked down
    finally:
        sink.close()


async def test_kamailio_front_permissions_and_proxy_auth(lb, tmp_path):
    """The template's optional front door (kamailio -A WITH_PERMISSIONS -A WITH_AUTH): sources in the
    trusted address list pass, others must answer a 407 digest challenge; bad credentials get 403."""
    _, workers = lb
    bot1 = workers[0]
    kam = Kamailio(tmp_path, [bot1.uri], port=C.free_port(), defines=("WITH_PERMISSIONS", "WITH_AUTH"),
                   trusted=["10.0.0.0/8"], auth=("pbx", "S3cret-trunk")).start()
    try:
        res = await C.run_sipp("uac_auth.xml", kam.target, service="bye", keys=C.sipp_keys(C.free_udp_port()),
                               timeout=8, extra=["-au", "pbx", "-ap", "wrong"])
        assert res.returncode != 0 and "SIP/2.0 403 Forbidden" in res.messages, res.messages[-1500:]
        assert "Proxy-Authenticate: Digest" in res.messages
        sink = await C.RtpSink.open()
        try:
            res = await C.run_sipp("uac_auth.xml", kam.target, service="bye", keys=C.sipp_keys(sink.port),
                                   timeout=10, extra=["-au", "pbx", "-ap", "S3cret-trunk"])
            assert res.returncode == 0, (res.errors[-1500:], kam.log())
        finally:
            sink.close()
        calls = await wait_calls(workers, SEEN, 1)
        assert len(calls["bot1"]) == 1
    finally:
        kam.stop()
    # trusted source (loopback in the address list): no challenge
    kam = Kamailio(tmp_path / "trusted", [bot1.uri], port=C.free_port(), defines=("WITH_PERMISSIONS",),
                   trusted=["127.0.0.0/8"]).start()
    try:
        sink = await C.RtpSink.open()
        try:
            res = await C.run_sipp("uac_proxy_wait_bye.xml", kam.target, service="bye", keys=C.sipp_keys(sink.port),
                                   timeout=10)
            assert res.returncode == 0, (res.errors[-1500:], kam.log())
        finally:
            sink.close()
    finally:
        kam.stop()
    kam = Kamailio(tmp_path / "untrusted", [bot1.uri], port=C.free_port(), defines=("WITH_PERMISSIONS",),
                   trusted=["10.0.0.0/8"]).start()
    try:
        res = await C.run_sipp("uac_refused.xml", kam.target, timeout=8)
        assert res.returncode == 0 and "SIP/2.0 403 Forbidden" in res.messages, res.messages[-1500:]
    finally:
        kam.stop()
