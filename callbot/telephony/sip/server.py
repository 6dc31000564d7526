"""SIP listener: admits calls (allow-list -> 403, optional digest auth -> 401/403,
concurrent-call cap -> 503 + Retry-After), answers them and runs
``on_call(transport, info, control)`` for each (``callbot.call.run_call``).

A draining worker (``set_draining``, callbot/drain.py) answers new INVITEs and OPTIONS
503 + Retry-After, so a proxy sends calls elsewhere and its probe takes the worker out
of rotation; requests within calls in progress are served as usual.

Usage (the web/CLI side owns the runtime)::

    server = SipServer.from_settings(settings, lambda t, i, c: run_call(runtime, t, i, c))
    await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from callbot.logsafe import mask_number
from callbot.telephony.base import CallInfo
from callbot.telephony.sip.auth import AuthResult, DigestAuth
from callbot.telephony.sip.control import SipCallControl
from callbot.telephony.sip.stack import BaresipEngine, EngineConfig, SipCall, SipEngine
from callbot.telephony.sip.transport import SipTransport

logger = logging.getLogger("callbot.sip")

OnCall = Callable[[SipTransport, CallInfo, "SipCallControl"], Awaitable[None]]
OnRejected = Callable[[CallInfo, int, str], None]  # (call, SIP status, why): the call log records refusals

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


@dataclass
class SipStats:
    offered: int = 0
    accepted: int = 0
    rejected_network: int = 0  # 403: source not in the allow-list
    rejected_busy: int = 0  # busy_status (503): call cap reached
    auth_challenges: int = 0  # 401 sent (no or stale credentials)
    rejected_auth: int = 0  # 403: wrong credentials or replay
    rejected_flood: int = 0  # 503: over the per-source INVITE rate
    rejected_draining: int = 0  # 503: the worker is draining (stopping)
    active: int = 0
    answer_ms: list[float] = field(default_factory=list)


class SipServer:
    def __init__(
        self,
        on_call: OnCall,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        max_calls: int = 50,
        allow: Iterable[str] = ("127.0.0.0/8", "::1/128"),
        media_timeout: int = 10,
        rtp_ports: tuple[int, int] = (30000, 30999),
        transfer_timeout: float = 30.0,
        replaces_grace: float = 2.0,
        busy_status: int = 503,
        retry_after: int = 5,
        auth_user: str = "",
        auth_password: str = "",
        auth_realm: str = "callbot",
        engine: SipEngine | None = None,
        on_rejected: OnRejected | None = None,
        invites_per_source: int = 0,
        invite_window_s: float = 10.0,
    ) -> None:
        self.on_call = on_call
        self.on_rejected = on_rejected
        self.host = host
        self.max_calls = max_calls
        self.allow = parse_networks(allow)
        self.busy_status = busy_status  # call cap reached (503 lets a proxy fail over; 486 = busy tone)
        self.retry_after = retry_after
        self.auth = DigestAuth(auth_user, auth_password, auth_realm) if auth_user else None
        self.transfer_timeout = transfer_timeout
        self.replaces_grace = replaces_grace  # attended transfer: wait this long for the target's BYE
        self.engine = engine or BaresipEngine(
            EngineConfig(
                host=host,
                port=port,
                # stack cap above ours: room for consultation legs; our own cap answers first
                max_calls=max_calls * 2 + 2,
                media_timeout=media_timeout,
                rtp_port_min=rtp_ports[0],
                rtp_port_max=rtp_ports[1],
            )
        )
        self.stats = SipStats()
        # a flood from one address must not crowd out the others: INVITEs per source IP and window
        self.invites_per_source = invites_per_source  # 0 = no limit
        self.invite_window_s = invite_window_s
        self._recent: dict[str, collections.deque[float]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._active: set[SipCall] = set()
        self.draining = False

    @classmethod
    def from_settings(cls, settings, on_call: OnCall, **kw) -> SipServer:
        password = getattr(settings, "sip_auth_password", None)
        if password is not None and hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        return cls(
            on_call,
            host=settings.sip_host,
            port=settings.sip_port,
            max_calls=settings.max_calls,
            allow=settings.sip_allow,
            media_timeout=settings.sip_media_timeout,
            rtp_ports=(settings.sip_rtp_port_min, settings.sip_rtp_port_max),
            auth_user=getattr(settings, "sip_auth_user", "") or "",
            invites_per_source=getattr(settings, "sip_invites_per_source", 0),
            auth_password=password or "",
            **kw,
        )

    @property
    def port(self) -> int:
        return self.engine.port

    @property
    def uri(self) -> str:
        return f"sip:callbot@{self.host}:{self.port}"

    def transfer_uri(self, destination: str) -> str:
        d = destination.strip()
        if d.startswith(("sip:", "sips:", "tel:")):
            return d
        return f"sip:{d}"  # "agent@host" -> sip:agent@host; bare user: stack completes the domain

    async def start(self) -> None:
        await self.engine.start(self._on_incoming)

    @property
    def active_calls(self) -> set[SipCall]:
        """Calls admitted and not yet over (answering, running, hanging up)."""
        return set(self._active)

    async def set_draining(self, draining: bool = True) -> None:
        """Refuse new calls (INVITE 503 + Retry-After) and answer OPTIONS 503, or serve again."""
        self.draining = draining
        set_options = getattr(self.engine, "set_options_status", None)
        if set_options is None:
            logger.warning("SIP engine %s cannot answer OPTIONS 503: a proxy probing with OPTIONS keeps this "
                           "worker in rotation (its INVITEs still get 503)", type(self.engine).__name__)
            return
        ok = await set_options(503 if draining else None, {"Retry-After": str(self.retry_after)})
        if not ok:
            logger.warning("SIP: OPTIONS still answered 200 while draining (see the engine's warning); "
                           "INVITEs get 503")

    async def stop(self) -> None:
        # the stack posts its events (a BYE just answered) to the loop: let them reach their calls first,
        # so a call whose caller had already hung up ends as such, not as cut by the stop
        await asyncio.sleep(0.05)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.stop()

    async def __aenter__(self) -> SipServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _on_incoming(self, call: SipCall) -> None:
        t = asyncio.get_running_loop().create_task(self._handle(call, time.monotonic()))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _allowed(self, call: SipCall, source) -> bool:
        if not self.allow:
            return True
        ip = source.ip() if source else None
        if ip is None:
            logger.warning("SIP %s: source address unknown; refused", call.meta.sip_call_id)
            return False
        return any(ip in net for net in self.allow)

    def _within_rate(self, source, now: float) -> bool:
        if not self.invites_per_source or source is None:
            return True
        key = str(source.ip() or source.host)
        recent = self._recent.setdefault(key, collections.deque())
        while recent and recent[0] <= now - self.invite_window_s:
            recent.popleft()
        if len(recent) >= self.invites_per_source:
            return False
        recent.append(now)
        if len(self._recent) > 10_000:  # forget quiet sources
            for k in [k for k, d in self._recent.items() if not d or d[-1] <= now - self.invite_window_s]:
                del self._recent[k]
        return True

    def _rejected(self, call: SipCall, source, status: int, why: str) -> None:
        if self.on_rejected is not None:
            try:
                self.on_rejected(_info(call, source), status, why)
            except Exception:  # the log must not break admission
                logger.exception("SIP: recording the refusal of %s failed", call.meta.sip_call_id)

    async def _handle(self, call: SipCall, t0: float) -> None:
        self.stats.offered += 1
        meta = call.meta
        source = await self.engine.source_of(meta.sip_call_id) if hasattr(self.engine, "source_of") else None
        if not self._within_rate(source, t0):
            self.stats.rejected_flood += 1
            if self.stats.rejected_flood in (1, 10, 100) or self.stats.rejected_flood % 1000 == 0:
                logger.warning("SIP INVITE flood from %s: %d refused so far (over %d per %.0f s)", source,
                               self.stats.rejected_flood, self.invites_per_source, self.invite_window_s)
            await call.reject(503, {"Retry-After": str(int(self.invite_window_s))})
            return  # not a call: a flood must not fill the call log either
        if not self._allowed(call, source):
            self.stats.rejected_network += 1
            logger.warning("SIP call %s from %s not in allow-list: rejected", meta.sip_call_id, source)
            await call.reject(403)
            self._rejected(call, source, 403, "source not allowed")
            return
        if self.draining:
            self.stats.rejected_draining += 1
            logger.info("SIP call %s from %s refused: draining (503)", meta.sip_call_id, source)
            await call.reject(503, {"Retry-After": str(self.retry_after)})
            return  # not recorded as a call: the proxy retries it on another worker
        if self.auth is not None:
            result = self.auth.verify(meta.headers.get("Authorization"), "INVITE")
            if result is not AuthResult.OK:
                if result is AuthResult.DENIED:
                    self.stats.rejected_auth += 1
                    logger.warning("SIP call %s from %s: bad credentials", meta.sip_call_id, source)
                    await call.reject(403)
                    self._rejected(call, source, 403, "bad credentials")
                else:
                    self.stats.auth_challenges += 1
                    await call.reject(401, self.auth.challenge(stale=result is AuthResult.STALE))
                return
        if len(self._active) >= self.max_calls:
            self.stats.rejected_busy += 1
            logger.warning("SIP call %s refused: %d calls active (cap)", meta.sip_call_id, len(self._active))
            await call.reject(self.busy_status,
                              {"Retry-After": str(self.retry_after)} if self.busy_status == 503 else None)
            self._rejected(call, source, self.busy_status, f"over capacity ({len(self._active)} calls)")
            return
        self._active.add(call)
        self.stats.active = len(self._active)
        try:
            await call.answer()
            self.stats.accepted += 1
            self.stats.answer_ms.append((time.monotonic() - t0) * 1000)
            info = _info(call, source)
            transport = SipTransport(call)
            control = SipCallControl(self, call, transport)
            logger.info("SIP call %s from %s (%s) answered", meta.sip_call_id, mask_number(meta.caller), source)
            try:
                await self.on_call(transport, info, control)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("SIP call %s: on_call failed", meta.sip_call_id)
            if not call.ended.is_set():
                await control.hangup("pipeline finished")
        except asyncio.CancelledError:
            await call.hangup()
            raise
        except Exception:
            logger.exception("SIP call %s failed", meta.sip_call_id)
            await call.hangup()
        finally:
            self._active.discard(call)
            self.stats.active = len(self._active)


def _info(call: SipCall, source) -> CallInfo:
    meta = call.meta
    return CallInfo(
        call_id=uuid.uuid4().hex,
        channel="sip",
        caller=meta.caller,
        called=meta.called,
        provider_call_id=meta.sip_call_id,
        extra={
            "from": meta.from_uri,
            "to": meta.to_uri,
            "source": f"{source.transport}:{source.host}:{source.port}" if source else "",
        },
    )
