"""The SIP stack behind a small interface callbot owns, and its baresip-python adapter.

Everything above this module (``transport.py``, ``server.py``) talks to
``SipEngine`` / ``SipCall`` only, so the engine can be swapped (the measured
fallback is aiosipua + aiortp; see docs/sip.md). PCM crossing this interface is
signed 16-bit mono at ``SipCall.sample_rate`` (8 kHz for G.711).

baresip-python facts this adapter absorbs (measured, docs/sip.md):
- one ``baresip.Runtime`` per process (libre state is global): one engine per process;
- the stack re-INVITEs once after every ACK and that (or any) re-INVITE replaces
  the media streams: ``AudioRestarted`` is caught here and the operation retried;
- the stack does not report the peer's source address: the SIP trace (RX lines)
  is parsed to map Call-ID -> source address, which the allow-list needs;
- ``max_concurrent_calls`` defaults to 2 in the binding: always set explicitly.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("callbot.sip")

DigitCallback = Callable[[str], None]


@dataclass(frozen=True)
class PeerAddress:
    transport: str  # "udp" | "tcp" | "tls"
    host: str
    port: int

    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return None


@dataclass(frozen=True)
class CallMeta:
    """What the INVITE told us about an incoming call."""

    sip_call_id: str
    from_uri: str = ""
    to_uri: str = ""
    caller: str = ""  # P-Asserted-Identity user part, else From user part
    called: str = ""  # To user part
    source: PeerAddress | None = None  # where the INVITE came from (network level)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferOutcome:
    ok: bool
    status: int | None = None  # final sipfrag status from the NOTIFY, when known
    reason: str = ""


class SipCall(abc.ABC):
    """One call leg. PCM is 16-bit mono at ``sample_rate``; never blocks."""

    meta: CallMeta
    sample_rate: int = 8000

    @abc.abstractmethod
    async def answer(self) -> None: ...

    @abc.abstractmethod
    async def reject(self, status: int = 486, headers: dict[str, str] | None = None) -> None:
        """Refuse an unanswered call with ``status`` (3xx-6xx) and extra response headers
        (e.g. ``WWW-Authenticate``, ``Retry-After``); engines that cannot fall back to 486."""

    @abc.abstractmethod
    async def hangup(self) -> None:
        """BYE (or CANCEL/decline before answer). Safe to call twice."""

    @abc.abstractmethod
    async def transfer(self, target: str, timeout: float = 30.0) -> TransferOutcome:
        """Blind transfer (REFER); resolves with the NOTIFY outcome."""

    @abc.abstractmethod
    async def attended_transfer(self, consult: SipCall, timeout: float = 30.0) -> TransferOutcome:
        """REFER with Replaces: connect this call's peer to ``consult``'s peer."""

    @abc.abstractmethod
    async def wait_established(self, timeout: float = 30.0) -> bool: ...

    def supports_replaces(self) -> bool | None:
        """Did the peer's INVITE advertise Replaces (``Supported: replaces``), which an
        attended transfer needs? None when unknown (header not seen / outbound leg)."""
        if "Supported" not in self.meta.headers:
            return None
        tokens = {t.strip().lower() for t in self.meta.headers["Supported"].split(",")}
        return "replaces" in tokens

    @abc.abstractmethod
    def read_audio(self, max_bytes: int = 3200) -> bytes:
        """Received PCM since the last read (b"" when none or no media)."""

    @abc.abstractmethod
    def write_audio(self, pcm: bytes) -> int:
        """Queue PCM to send; returns bytes accepted (0 when no media yet)."""

    @abc.abstractmethod
    def tx_buffered(self) -> int:
        """Bytes queued but not yet sent (the stack's clock drains them)."""

    @abc.abstractmethod
    def flush_tx(self) -> None: ...

    @abc.abstractmethod
    def on_digit(self, callback: DigitCallback) -> None:
        """``callback(digit)`` for RFC 4733 events and SIP INFO digits."""

    @property
    @abc.abstractmethod
    def ended(self) -> asyncio.Event: ...

    @property
    @abc.abstractmethod
    def end_reason(self) -> str: ...

    @property
    @abc.abstractmethod
    def established(self) -> bool: ...


IncomingHandler = Callable[[SipCall], None]


@dataclass(frozen=True)
class EngineConfig:
    host: str = "127.0.0.1"
    port: int = 5060  # 0 = pick a free port (tests)
    user: str = "callbot"  # our user part (Contact, From of our requests)
    max_calls: int = 50  # stack-level cap (486 beyond); keep above the server's own cap
    media_timeout: int = 10  # seconds without RTP -> call closed; 0 = off
    rtp_port_min: int = 30000
    rtp_port_max: int = 30999
    sip_log_level: str = "warning"


class SipEngine(abc.ABC):
    @abc.abstractmethod
    async def start(self, on_incoming: IncomingHandler) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def dial(self, uri: str) -> SipCall: ...

    @property
    @abc.abstractmethod
    def port(self) -> int: ...


# --------------------------------------------------------------------------- helpers

_URI_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>?\s]+)", re.IGNORECASE)


def uri_user(value: str | None) -> str:
    """``"Alice" <sip:+33123@host>;tag=x`` -> ``+33123``; tel: URIs too."""
    if not value:
        return ""
    m = _URI_USER.search(value)
    return m.group(1) if m else ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on both UDP and TCP (probe; tiny race acceptable in tests)."""
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no free port")


class _SourceTracker(logging.Handler):
    """Maps Call-ID -> source address of its first INVITE, from the stack's SIP trace.

    The trace arrives on the stack's log thread, possibly a little after the
    CALL_INCOMING event reaches the loop: ``lookup`` waits briefly for it.
    """

    _HEAD = re.compile(r"^RX (UDP|TCP|TLS|WS|WSS) (\S+) -> \S+")
    _CALL_ID = re.compile(r"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = 2048) -> None:
        super().__init__(level=logging.DEBUG)
        self._loop = loop
        self._map: collections.OrderedDict[str, PeerAddress] = collections.OrderedDict()
        self._size = size
        self._waiters: dict[str, list[asyncio.Future]] = {}

    def emit(self, record: logging.LogRecord) -> None:  # log thread
        try:
            text = record.getMessage()
            head = self._HEAD.match(text)
            if not head:
                return
            first = text.split("\n", 2)[1] if "\n" in text else ""
            if not first.startswith("INVITE "):
                return
            cid = self._CALL_ID.search(text)
            if not cid:
                return
            addr = head.group(2)
            host, _, port = addr.rpartition(":")
            peer = PeerAddress(head.group(1).lower(), host.strip("[]"), int(port or 0))
            self._loop.call_soon_threadsafe(self._store, cid.group(1), peer)
        except Exception:  # never let a trace line hurt the stack
            pass

    def _store(self, call_id: str, peer: PeerAddress) -> None:
        if call_id not in self._map:
            self._map[call_id] = peer
            while len(self._map) > self._size:
                self._map.popitem(last=False)
        for fut in self._waiters.pop(call_id, []):
            if not fut.done():
                fut.set_result(peer)

    async def lookup(self, call_id: str, timeout: float = 0.2) -> PeerAddress | None:
        if call_id in self._map:
            return self._map[call_id]
        fut = self._loop.create_future()
        self._waiters.setdefault(call_id, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(call_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    self._waiters.pop(call_id, None)


# --------------------------------------------------------------------------- native reject

REASONS = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 480: "Temporarily Unavailable",
    486: "Busy Here", 488: "Not Acceptable Here", 500: "Server Internal Error",
    503: "Service Unavailable", 603: "Decline",
}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


class _NativeReject:
    """Reject an incoming call with any status and extra headers, which the binding
    (0.5.2a3) cannot: it only sends 486.

    The binding's extension module exports libbaresip and libre, so this calls the
    function the binding's own reject uses, ``ua_hangupf(ua, call, scode, reason, fmt,
    ...)`` (through ctypes), with the status and headers we want; the call is found by
    its SIP Call-ID (``uag_call_find``). libre is single-threaded, so this must run
    on the stack's thread: ``re_thread_enter()`` from another thread does **not**
    exclude it here (measured: the stack kept answering OPTIONS while another thread
    "held" it, and calling in from a worker thread corrupted the heap). The only
    Python code that runs on that thread is the binding's event sink, so the sink is
    wrapped: a reject is queued, a PING command is sent, and the wrapper runs the
    queued job on the stack's thread just before the PING's completion goes on to the
    binding — so the job is done when ``await runtime.cmd(PING)`` returns.
    ``ua_hangupf`` emits the usual CALL_CLOSED, so the binding's bookkeeping follows.
    """

    CALL_STATE_INCOMING = 1  # enum call_state: IDLE, INCOMING, OUTGOING, ...
    _lib = None

    def __init__(self, runtime) -> None:
        import ctypes

        from baresip import _events
        from baresip._native import lib as bplib

        if _NativeReject._lib is None:
            import baresip._native as native

            lib = ctypes.CDLL(native.__file__)  # the already loaded module
            lib.uag_call_find.restype, lib.uag_call_find.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
            lib.call_state.restype, lib.call_state.argtypes = ctypes.c_int, [ctypes.c_void_p]
            lib.call_get_ua.restype, lib.call_get_ua.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
            lib.ua_hangupf.restype = None  # variadic: argument types given per call
            _NativeReject._lib = lib
        self._c = ctypes
        self._runtime = runtime
        self._ping = bplib.BP_CMD_PING
        self._events = _events
        self._jobs: collections.deque = collections.deque()  # (fn, future): fn() runs on the stack's thread
        self._next = _events.set_sink(self._sink)  # the binding's own sink (runtime._on_native_event)
        if self._next is None:
            _events.set_sink(None)
            raise RuntimeError("no event sink installed (runtime not started?)")

    def close(self) -> None:
        """Give the sink back to the binding (before the runtime closes)."""
        if self._next is not None:
            self._events.set_sink(self._next)
            self._next = None

    def _sink(self, ev, handle, payload) -> None:  # the stack's thread
        while self._jobs:
            fn, fut = self._jobs.popleft()
            try:
                fut.set_result(fn())
            except Exception as e:  # noqa: BLE001 (handed to the waiting coroutine)
                fut.set_exception(e)
        nxt = self._next
        if nxt is not None:
            nxt(ev, handle, payload)

    def _reject_now(self, call_id: str, status: int, extra: str) -> bool:  # the stack's thread
        lib, c = self._lib, self._c
        call = lib.uag_call_find(call_id.encode())
        if not call or lib.call_state(call) != self.CALL_STATE_INCOMING:
            return False
        lib.ua_hangupf(c.c_void_p(lib.call_get_ua(call)), c.c_void_p(call), c.c_uint16(status),
                       c.c_char_p(REASONS.get(status, "Rejected").encode()),
                       c.c_char_p(b"%s" if extra else None), c.c_char_p(extra.encode()))
        return True

    async def reject(self, sip_call_id: str, status: int, headers: dict[str, str]) -> bool:
        """True when the stack sent the response (call found, still ringing)."""
        if not 300 <= status <= 699:
            raise ValueError(f"not a rejection status: {status}")
        extra = ""
        for name, value in headers.items():
            if not _HEADER_NAME.match(name) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"bad header {name!r}")
            extra += f"{name}: {value}\r\n"
        if extra:  # libre writes the end of the headers itself only when given none
            extra += "Content-Length: 0\r\n\r\n"
        return await self.run(lambda: self._reject_now(sip_call_id, status, extra))

    async def run(self, fn):
        """``fn()`` run on the stack's thread (the only thread that may touch libre); its result."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.append((fn, fut))
        await self._runtime.cmd(self._ping, timeout=5)
        return fut.result(timeout=1)


class _OptionsResponder:
    """Answers OPTIONS with a fixed status (503 + Retry-After while the worker drains), which
    the stack cannot: it always answers 200 (baresip's ``ua_handle_options``).

    A request listener of our own goes into libre's listener list (``sip_listen``) right
    after libre's server-transaction layer (which absorbs retransmissions) and so before the
    user agents'; it answers OPTIONS itself (``sip_treplyf``) and passes every other request
    on. It reads the request's CSeq through ``sip_msg_xhdr`` and the public structs of libre
    4.x (``struct le``, ``struct pl``, ``struct sip_hdr``, ``struct sip_lsnr``); the header's
    name is checked before its value is trusted, so a build with another layout answers 200
    as before (warning logged) rather than misreading memory. Installed on first use only, and
    like every libre call it runs on the stack's thread (``_NativeReject.run``).
    """

    PTR = 8  # x86-64 / arm64
    LE_NEXT, LE_LIST, LE_DATA = PTR, 2 * PTR, 3 * PTR  # struct le {prev, next, list, data}
    LSNR_ARG, LSNR_REQ = 6 * PTR, 7 * PTR  # struct sip_lsnr {struct le; lsnrp; msgh; arg; bool req}
    HDR_NAME, HDR_VAL = 8 * PTR, 10 * PTR  # struct sip_hdr {struct le le, he; struct pl name, val; id}

    def __init__(self, native: _NativeReject) -> None:
        import ctypes

        self._c = ctypes
        self._native = native
        lib = native._lib
        lib.uag_sip.restype, lib.uag_sip.argtypes = ctypes.c_void_p, []
        self._msg_h = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)
        lib.sip_listen.restype = ctypes.c_int
        lib.sip_listen.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_bool, self._msg_h,
                                   ctypes.c_void_p]
        lib.sip_msg_xhdr.restype, lib.sip_msg_xhdr.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
        for name in ("list_unlink", "list_prepend", "list_insert_after", "mem_deref"):
            getattr(lib, name).restype = ctypes.c_void_p if name == "mem_deref" else None
        lib.list_unlink.argtypes = [ctypes.c_void_p]
        lib.list_prepend.argtypes = [ctypes.c_void_p] * 3
        lib.list_insert_after.argtypes = [ctypes.c_void_p] * 4
        lib.mem_deref.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self.status: int | None = None  # None: pass OPTIONS on to the stack (200)
        self._extra = b""
        self._lsnr = ctypes.c_void_p()  # libre writes NULL here when the listener is freed
        self._callback = self._msg_h(self._on_request)  # kept: libre holds the pointer
        self._sip: int | None = None
        self._layout_warned = False

    async def set(self, status: int | None, headers: dict[str, str]) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Content-Length: 0\r\n\r\n"
        self._extra = extra.encode()
        self.status = status
        if status is not None and not self._lsnr.value:
            await self._native.run(self._install)

    async def close(self) -> None:
        self.status = None
        if self._lsnr.value:
            await self._native.run(lambda: self._lib.mem_deref(self._lsnr.value))

    def _ptr(self, addr: int) -> int:
        return self._c.c_void_p.from_address(addr).value or 0

    def _pl(self, addr: int) -> bytes:
        p, n = self._ptr(addr), self._c.c_size_t.from_address(addr + self.PTR).value
        return self._c.string_at(p, n) if p and n < 4096 else b""

    def _install(self) -> None:  # the stack's thread
        lib = self._lib
        sip = lib.uag_sip()
        if not sip:
            raise RuntimeError("no SIP stack (uag_sip() is NULL)")
        err = lib.sip_listen(self._c.byref(self._lsnr), sip, True, self._callback, None)
        if err:
            raise OSError(err, f"sip_listen failed ({err})")
        self._sip = sip
        le = self._lsnr.value  # struct sip_lsnr starts with its list element
        lst = self._ptr(le + self.LE_LIST)
        anchor, cur = 0, self._ptr(lst)  # struct list starts with its head
        while cur:
            lsnr = self._ptr(cur + self.LE_DATA)
            if lsnr != le and self._ptr(lsnr + self.LSNR_ARG) == sip and \
                    self._c.c_bool.from_address(lsnr + self.LSNR_REQ).value:
                anchor = cur  # libre's server transactions: sip_listen(NULL, sip, true, request_handler, sip)
                break
            cur = self._ptr(cur + self.LE_NEXT)
        lib.list_unlink(le)
        if anchor:
            lib.list_insert_after(lst, anchor, le, le)
        else:
            lib.list_prepend(lst, le, le)

    def _on_request(self, msg, _arg) -> bool:  # the stack's thread, every request while installed
        status = self.status
        if status is None or not msg:
            return False
        try:
            hdr = self._lib.sip_msg_xhdr(msg, b"CSeq")
            if not hdr:
                return False
            if self._pl(hdr + self.HDR_NAME).lower() != b"cseq":
                if not self._layout_warned:
                    self._layout_warned = True
                    logger.warning("SIP: unexpected libre header layout: OPTIONS keep their 200 while draining")
                return False
            if self._pl(hdr + self.HDR_VAL).split()[-1:] != [b"OPTIONS"]:
                return False
            c = self._c
            self._lib.sip_treplyf(None, None, c.c_void_p(self._sip), c.c_void_p(msg), c.c_bool(False),
                                  c.c_uint16(status), c.c_char_p(REASONS.get(status, "Unavailable").encode()),
                                  c.c_char_p(b"%s"), c.c_char_p(self._extra))
            return True
        except Exception:  # never raise into C: let the stack answer
            logger.exception("SIP: answering an OPTIONS failed")
            return False


# --------------------------------------------------------------------------- baresip adapter

_TRANSFER_STATUS = re.compile(r"(\d{3})")


class BaresipCall(SipCall):
    def __init__(self, engine: BaresipEngine, call, meta: CallMeta) -> None:
        import baresip

        self._b = baresip
        self._engine = engine
        self._call = call
        self.meta = meta
        self._ended = asyncio.Event()
        self._end_reason = ""
        self._established = asyncio.Event()
        self._hung_up = False
        self._digit_cbs: list[DigitCallback] = []
        self._rx_started = False
        call.on(self._on_event)
        call.on_dtmf(self._on_dtmf)

    def __repr__(self) -> str:
        return f"<BaresipCall {self.meta.sip_call_id} caller={self.meta.caller!r}>"

    # events (on the asyncio loop)
    def _on_event(self, ev) -> None:
        E = self._b.Event
        if ev.event is E.CALL_ESTABLISHED:
            self._established.set()
        elif ev.event is E.CALL_CLOSED:
            self._end_reason = ev.text or "closed"
            self._ended.set()
            self._engine._forget(self)

    def _on_dtmf(self, d) -> None:
        for cb in list(self._digit_cbs):
            try:
                cb(d.digit)
            except Exception:
                logger.exception("digit callback failed")

    # actions
    async def answer(self) -> None:
        await self._call.answer()

    async def reject(self, status: int = 486, headers: dict[str, str] | None = None) -> None:
        # The binding only sends 486; any other status (or extra headers) goes through
        # libbaresip's own ua_hangupf() (_NativeReject), 486 as the fallback.
        if status != 486 or headers:
            native = self._engine._native
            if native is not None:
                try:
                    if await native.reject(self.meta.sip_call_id, status, headers or {}):
                        return
                except (self._b.BaresipError, TimeoutError, concurrent.futures.TimeoutError) as e:
                    logger.warning("SIP %s: native reject failed: %s", self.meta.sip_call_id, e)
                if self._ended.is_set():
                    return
                logger.warning("SIP %s: could not reject with %d; sending 486", self.meta.sip_call_id, status)
        try:
            await self._call.reject()
        except self._b.BaresipError as e:
            logger.debug("reject: %s", e)

    async def hangup(self) -> None:
        if self._hung_up or self._ended.is_set():
            return
        self._hung_up = True
        try:
            await self._call.hangup()
        except self._b.BaresipError as e:  # StaleHandleError: already gone
            logger.debug("hangup: %s", e)

    async def transfer(self, target: str, timeout: float = 30.0) -> TransferOutcome:
        try:
            await self._call.transfer(target, timeout=timeout)
            return TransferOutcome(True, 200, "transferred")
        except self._b.TransferFailed as e:
            return TransferOutcome(False, e.status, str(e))
        except (self._b.BaresipError, ValueError) as e:
            return TransferOutcome(False, None, str(e))

    async def attended_transfer(self, consult: SipCall, timeout: float = 30.0) -> TransferOutcome:
        assert isinstance(consult, BaresipCall)
        try:
            await self._call.attended_transfer(consult._call, timeout=timeout)
            return TransferOutcome(True, 200, "transferred")
        except self._b.TransferFailed as e:
            outcome = TransferOutcome(False, e.status, str(e))
        except (self._b.BaresipError, ValueError) as e:
            outcome = TransferOutcome(False, None, str(e))
        # the stack put this leg on hold before the REFER: take it back so the caller
        # hears the bot again and its RTP (digits, speech) flows
        await self._resume()
        return outcome

    async def _resume(self, tries: int = 20) -> None:
        for _ in range(tries):
            if self._ended.is_set():
                return
            try:
                await self._call.resume()
                return
            except self._b.StaleHandleError:
                return
            except self._b.BaresipError as e:  # a session refresh in flight: retry shortly
                logger.debug("resume: %s", e)
                await asyncio.sleep(0.1)

    async def wait_established(self, timeout: float = 30.0) -> bool:
        ended = asyncio.ensure_future(self._ended.wait())
        est = asyncio.ensure_future(self._established.wait())
        try:
            await asyncio.wait({ended, est}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            est.cancel()
        return self._established.is_set() and not self._ended.is_set()

    # media: every call is a cheap non-blocking C call; retry once across a re-INVITE
    def _media(self, fn, default):
        for _ in range(2):
            try:
                return fn()
            except self._b.AudioRestarted:
                continue
            except self._b.AudioNotActive:
                return default
        return default

    def read_audio(self, max_bytes: int = 3200) -> bytes:
        return self._media(lambda: self._call.audio.read(max_bytes), b"")

    def write_audio(self, pcm: bytes) -> int:
        return self._media(lambda: self._call.audio.write(pcm), 0)

    def tx_buffered(self) -> int:
        return self._media(lambda: self._call.audio.info().tx_buffered, 0)

    def media_ready(self) -> bool:
        return self._media(lambda: self._call.audio.info().tx_ready, False)

    def flush_tx(self) -> None:
        self._media(self._call.audio.flush_tx, None)

    def on_digit(self, callback: DigitCallback) -> None:
        self._digit_cbs.append(callback)

    @property
    def ended(self) -> asyncio.Event:
        return self._ended

    @property
    def end_reason(self) -> str:
        return self._end_reason

    @property
    def established(self) -> bool:
        return self._established.is_set() and not self._ended.is_set()


class BaresipEngine(SipEngine):
    """baresip-python (libre/baresip in a native thread) as the SIP/RTP engine."""

    EXPOSED_HEADERS = ("From", "To", "P-Asserted-Identity", "Remote-Party-ID", "Supported", "Authorization")

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._port = config.port
        self._runtime = None
        self._ua = None
        self._tracker: _SourceTracker | None = None
        self._calls: set[BaresipCall] = set()
        self._on_incoming: IncomingHandler | None = None
        self._native: _NativeReject | None = None
        self._options: _OptionsResponder | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def calls(self) -> set[BaresipCall]:
        return set(self._calls)

    def _forget(self, call: BaresipCall) -> None:
        self._calls.discard(call)

    async def start(self, on_incoming: IncomingHandler) -> None:
        import baresip

        cfg = self.config
        if not self._port:
            self._port = free_port(cfg.host)
        self._on_incoming = on_incoming
        loop = asyncio.get_running_loop()
        self._tracker = _SourceTracker(loop)
        sip_log = logging.getLogger("baresip.native.sip")
        sip_log.setLevel(logging.DEBUG)
        sip_log.propagate = False  # the trace feeds the tracker only
        sip_log.addHandler(self._tracker)
        wildcard = cfg.host in ("0.0.0.0", "::", "")
        listen = f"0.0.0.0:{self._port}" if wildcard else f"{cfg.host}:{self._port}"
        # UDP and TCP only: the stack would also bind TLS on port + 1 and WebSocket ports nobody
        # configured (a second port another process may hold: "Address already in use")
        extra = (f"sip_listen\t\t{listen}\nsip_transports\t\tudp,tcp\n"
                 f"rtp_ports\t\t{cfg.rtp_port_min}-{cfg.rtp_port_max}\n")
        self._runtime = baresip.Runtime(native_log_level=cfg.sip_log_level)
        await self._runtime.start(
            baresip.Config(
                net_interface=None if wildcard else cfg.host,
                max_concurrent_calls=cfg.max_calls,
                rtp_timeout=cfg.media_timeout,
                sip_trace=True,
                native_log_level=cfg.sip_log_level,
                expose_headers=self.EXPOSED_HEADERS,
                extra_config_text=extra,
            )
        )
        domain = f"{cfg.host}:{self._port}" if not wildcard else f"127.0.0.1:{self._port}"
        # one user agent per transport: the stack matches incoming requests to
        # an account of the same transport (a UDP-only account 404s TCP INVITEs)
        self._uas = []
        for transport in ("udp", "tcp"):
            ua = await baresip.UserAgent.create(
                self._runtime,
                baresip.Account(
                    user=cfg.user,
                    domain=domain,
                    password="",
                    reg_interval=0,
                    transport=transport,
                    audio_codecs=("pcmu", "pcma"),
                    dtmf_mode="rtpevent",
                    # answer whatever user part / DID the INVITE is addressed to
                    extra_params=("catchall=yes",),
                ),
            )
            ua.on_incoming(self._incoming)
            self._uas.append(ua)
        self._ua = self._uas[0]
        try:
            self._native = _NativeReject(self._runtime)
        except (ImportError, OSError, AttributeError, RuntimeError) as e:  # another binding build
            logger.warning("native SIP reject unavailable (%s): every rejection will be 486", e)
        logger.info("SIP engine (baresip-python %s) listening on %s udp+tcp", baresip.__version__, listen)

    def _incoming(self, call) -> None:
        h = call.headers or {}
        from_hdr = h.get("From") or call.peer or ""
        pai = h.get("P-Asserted-Identity") or h.get("Remote-Party-ID") or ""
        meta = CallMeta(
            sip_call_id=call.call_id or "",
            from_uri=from_hdr,
            to_uri=h.get("To", ""),
            caller=uri_user(pai) or uri_user(from_hdr) or uri_user(call.peer),
            called=uri_user(h.get("To", "")),
            headers=dict(h),
        )
        wrapped = BaresipCall(self, call, meta)
        self._calls.add(wrapped)
        if self._on_incoming:
            self._on_incoming(wrapped)

    async def set_options_status(self, status: int | None, headers: dict[str, str] | None = None) -> bool:
        """Answer OPTIONS with ``status`` (and ``headers``) instead of the stack's 200; None: 200 again.
        False when this build cannot (the stack keeps answering 200)."""
        if self._native is None:
            logger.warning("SIP: OPTIONS cannot be answered %s: no native access to the stack", status)
            return status is None
        try:
            if self._options is None:
                self._options = _OptionsResponder(self._native)
            await self._options.set(status, headers or {})
            return True
        except (AttributeError, OSError, RuntimeError, TimeoutError, concurrent.futures.TimeoutError) as e:
            logger.warning("SIP: OPTIONS cannot be answered %s (%s): the stack keeps answering 200", status, e)
            return status is None

    async def source_of(self, sip_call_id: str, timeout: float = 0.2) -> PeerAddress | None:
        return await self._tracker.lookup(sip_call_id, timeout) if self._tracker else None

    async def dial(self, uri: str) -> SipCall:
        # The binding builds the Call (and subscribes it to events) only when the dial
        # command's completion has reached the loop; events of the new call queued
        # just behind that completion (RINGING, ESTABLISHED from a peer that answers
        # at once) reach nobody, and the call would stay OUTGOING forever (seen with an
        # auto-answering baresip, under load). Catch them from before the dial and
        # replay them into the Call.
        early: list = []
        catch = early.append
        self._runtime.subscribe(catch)
        try:
            call = await self._ua.dial(uri)
        finally:
            self._runtime.unsubscribe(catch)
        wrapped = BaresipCall(self, call, CallMeta(sip_call_id=call.call_id or "", to_uri=uri))
        replay = getattr(call, "_on_stack_event", None)
        for ev in early:
            if ev.call == call.handle and replay is not None:
                logger.debug("dial %s: replaying early %s", uri, ev.event.name)
                replay(ev)
        self._calls.add(wrapped)
        return wrapped

    async def stop(self) -> None:
        if self._runtime is None:
            return
        for c in list(self._calls):
            await c.hangup()
        if self._calls:
            await asyncio.sleep(0.2)  # let BYEs leave
        if self._options is not None:
            try:
                await self._options.close()
            except Exception as e:  # the runtime closes anyway
                logger.warning("SIP: removing the OPTIONS listener failed: %s", e)
            self._options = None
        if self._native is not None:
            self._native.close()
            self._native = None
        try:
            await self._runtime.close()
        finally:
            self._runtime = None
            if self._tracker:
                logging.getLogger("baresip.native.sip").removeHandler(self._tracker)
                self._tracker = None
