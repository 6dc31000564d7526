"""Test-caller library: drive real SIP peers (sipp, baresip) against the bot and
measure what comes back. Loopback only. Used by ``scripts/call-sip`` and tests.

- ``RtpSink``: a UDP socket sipp advertises as its media address; records the
  bot's RTP (sipp itself does not record) and decodes G.711.
- ``run_sipp``: one sipp run of a scenario in ``tests/sip/`` with ``-key`` values.
- ``BaresipPeer``: the Debian ``baresip`` binary as caller or auto-answer agent,
  driven over ``ctrl_tcp`` (netstrings), recording with ``sndfile``.
- ``wav_segments`` / ``timeline``: activity segments of a recording, and the
  answer -> first greeting audio / voice-to-voice per-turn figures.
"""

from __future__ import annotations

import asyncio
import audioop
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCENARIOS = Path(__file__).resolve().parents[1] / "tests" / "sip"
SIPP_SHARE = Path("/usr/share/sip-tester")
LOOPBACK = "127.0.0.1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_port() -> int:
    from callbot.telephony.sip.stack import free_port as fp

    return fp(LOOPBACK)


def free_sip_port() -> int:
    """A port free on UDP and TCP whose next port is free on TCP too.

    Debian's baresip 1.0 binds SIP/TLS on the SIP port + 1 and cannot be told not to: a port
    chosen without it failed the peer's start now and then ("Address already in use").
    """
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind((LOOPBACK, port + 1))
        except OSError:
            continue
        return port
    raise OSError("no free pair of ports")


# ----------------------------------------------------------------------------- audio helpers

def pcm_stats(pcm: bytes, rate: int = 8000) -> dict:
    """RMS (int16 units) and dominant frequency of 16-bit mono PCM."""
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(a) == 0:
        return {"secs": 0.0, "rms": 0.0, "peak_hz": 0.0}
    spec = np.abs(np.fft.rfft(a * np.hanning(len(a))))
    freqs = np.fft.rfftfreq(len(a), 1 / rate)
    spec[freqs < 60] = 0
    return {"secs": len(a) / rate, "rms": float(np.sqrt(np.mean(a * a))), "peak_hz": float(freqs[int(np.argmax(spec))])}


def segments(pcm: bytes, rate: int, *, thresh: float = 300.0, win_ms: int = 20,
             min_gap_ms: int = 300, min_len_ms: int = 60) -> list[tuple[float, float]]:
    """(start_s, end_s) of non-silent stretches (RMS per window above ``thresh``)."""
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    w = rate * win_ms // 1000
    n = len(a) // w
    if n == 0:
        return []
    rms = np.sqrt(np.mean(a[: n * w].reshape(n, w) ** 2, axis=1))
    active = rms > thresh
    segs: list[list[float]] = []
    for i, on in enumerate(active):
        if not on:
            continue
        t = i * win_ms / 1000
        if segs and t - segs[-1][1] <= min_gap_ms / 1000:
            segs[-1][1] = t + win_ms / 1000
        else:
            segs.append([t, t + win_ms / 1000])
    return [(round(s, 3), round(e, 3)) for s, e in segs if (e - s) * 1000 >= min_len_ms]


def read_wav(path: str | Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        pcm = w.readframes(w.getnframes())
        if w.getnchannels() == 2:
            pcm = audioop.tomono(pcm, w.getsampwidth(), 0.5, 0.5)
        return pcm, w.getframerate()


def write_wav(path: str | Path, pcm: bytes, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def french_wav(text: str, path: str | Path, *, lead_silence: float = 0.0, tail_silence: float = 0.0) -> Path:
    """Speak ``text`` with pico2wave (fr-FR), convert to 8 kHz mono S16LE (what baresip aufile wants)."""
    path = Path(path)
    raw = path.with_suffix(".pico.wav")
    subprocess.run(["pico2wave", "-l", "fr-FR", "-w", str(raw), text], check=True)
    cmd = ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(path)]
    if lead_silence or tail_silence:
        cmd += ["pad", str(lead_silence), str(tail_silence)]
    subprocess.run(cmd, check=True)
    raw.unlink(missing_ok=True)
    return path


def tone_wav(path: str | Path, freq: float = 1000.0, secs: float = 5.0, rate: int = 8000) -> Path:
    t = np.arange(int(rate * secs)) / rate
    write_wav(path, (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes(), rate)
    return Path(path)


def pcmu_pcap(src: str | Path, dst: str | Path) -> Path:
    """Rewrite a PCMA RTP pcap (e.g. Debian's g711a.pcap) as PCMU (PT 0), packet by packet."""
    data = bytearray(Path(src).read_bytes())
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8: off + 12])[0]
        pkt = off + 16
        l2 = {1: 14, 113: 16, 101: 0}.get(linktype)
        if l2 is not None:
            ip = pkt + l2
            if linktype == 1:
                etype = struct.unpack(">H", data[pkt + 12: pkt + 14])[0]
                if etype == 0x8100:
                    ip += 4
            if data[ip] >> 4 == 4 and data[ip + 9] == 17:
                udp = ip + (data[ip] & 0x0F) * 4
                rtp = udp + 8
                end = pkt + incl
                if end - rtp > 12 and data[rtp] >> 6 == 2 and data[rtp + 1] & 0x7F == 8:
                    cc = data[rtp] & 0x0F
                    pl = rtp + 12 + 4 * cc
                    payload = bytes(data[pl:end])
                    data[pl:end] = audioop.lin2ulaw(audioop.alaw2lin(payload, 2), 2)
                    data[rtp + 1] = data[rtp + 1] & 0x80  # PT 0, keep marker
                    data[udp + 6: udp + 8] = b"\x00\x00"  # no UDP checksum
        off = pkt + incl
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


# ----------------------------------------------------------------------------- RTP sink

@dataclass
class RtpStream:
    pts: set[int] = field(default_factory=set)
    packets: int = 0
    pcm: bytearray = field(default_factory=bytearray)
    first_at: float = 0.0
    first_voice_at: float = 0.0
    events: list[tuple[int, bool]] = field(default_factory=list)  # RFC 4733 (event, end)


class RtpSink(asyncio.DatagramProtocol):
    """An RTP peer for sipp-driven calls: sipp advertises this socket in its SDP.

    It records the bot's RTP per SSRC (sipp itself does not record) and, once the
    bot's first packet shows where its RTP comes from, can send audio (``play``)
    and RFC 4733 digits (``send_digit``) back from the same socket (symmetric
    RTP: baresip latches onto the source of the RTP it receives).
    """

    keep_line = True  # send silence between steps, like a phone; False = RTP stops (media-timeout tests)

    def __init__(self, voice_rms: float = 300.0) -> None:
        self.streams: dict[int, RtpStream] = defaultdict(RtpStream)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.voice_rms = voice_rms
        self.garbage = 0
        self.peer: tuple[str, int] | None = None
        self.peer_pt: int | None = None
        self._peer_seen = asyncio.Event()
        self._seq = 1000
        self._ts = 0
        self._ssrc = 0x5151A0A0
        self._send_lock = asyncio.Lock()

    @classmethod
    async def open(cls, host: str = LOOPBACK) -> RtpSink:
        loop = asyncio.get_running_loop()
        sink = cls()
        await loop.create_datagram_endpoint(lambda: sink, local_addr=(host, 0))
        return sink

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            self.garbage += 1
            return
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:  # RTCP
            return
        ssrc = struct.unpack(">I", data[8:12])[0]
        st = self.streams[ssrc]
        now = time.monotonic()
        if not st.packets:
            st.first_at = now
        st.packets += 1
        st.pts.add(pt)
        payload = data[12 + 4 * (data[0] & 0x0F):]
        if pt in (0, 8):
            if self.peer is None:
                self.peer, self.peer_pt = addr, pt
                self._peer_seen.set()
            pcm = audioop.ulaw2lin(payload, 2) if pt == 0 else audioop.alaw2lin(payload, 2)
            st.pcm += pcm
            if not st.first_voice_at and audioop.rms(pcm, 2) > self.voice_rms:
                st.first_voice_at = now
        elif pt >= 96 and len(payload) >= 4:
            st.events.append((payload[0], bool(payload[1] & 0x80)))

    async def wait_peer(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self._peer_seen.wait(), timeout)
        except TimeoutError:
            return False
        if getattr(self, "_line_task", None) is None:
            self._line_task = asyncio.create_task(self._line_silence())
        return True

    async def _line_silence(self) -> None:
        """Like a real phone: a continuous RTP stream, silence whenever nothing else is sent."""
        t_next = time.monotonic()
        while True:
            t_next += 0.02
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
            if self._send_lock.locked() or not self.keep_line:
                t_next = time.monotonic()
                continue
            silence = (b"\xff" if self.peer_pt == 0 else b"\xd5") * 160
            self._rtp(self.peer_pt, silence)
            self._ts += 160

    def _rtp(self, pt: int, payload: bytes, *, marker: bool = False, ts: int | None = None) -> None:
        hdr = struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq & 0xFFFF,
                          (self._ts if ts is None else ts) & 0xFFFFFFFF, self._ssrc)
        self._seq += 1
        if self.transport and self.peer:
            self.transport.sendto(hdr + payload, self.peer)

    async def play(self, pcm: bytes) -> None:
        """Send 8 kHz PCM as 20 ms G.711 packets (the bot's codec), paced in real time."""
        if not await self.wait_peer():
            return
        enc = audioop.lin2ulaw if self.peer_pt == 0 else audioop.lin2alaw
        async with self._send_lock:
            t_next = time.monotonic()
            for i in range(0, len(pcm) - 319, 320):
                self._rtp(self.peer_pt, enc(pcm[i:i + 320], 2), marker=(i == 0))
                self._ts += 160
                t_next += 0.02
                await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    async def send_digit(self, digit: str, *, duration_ms: int = 160, pt: int = 101) -> None:
        """One RFC 4733 telephone-event (start, updates every 20 ms, three end packets)."""
        if not await self.wait_peer():
            return
        code = "0123456789*#ABCD".index(digit.upper())
        async with self._send_lock:
            ts = self._ts
            steps = max(1, duration_ms // 20)
            for k in range(1, steps + 1):
                self._rtp(pt, struct.pack(">BBH", code, 10, k * 160), marker=(k == 1), ts=ts)
                await asyncio.sleep(0.02)
            for _ in range(3):
                self._rtp(pt, struct.pack(">BBH", code, 0x80 | 10, steps * 160), ts=ts)
            self._ts += steps * 160

    def close(self) -> None:
        task = getattr(self, "_line_task", None)
        if task is not None:
            task.cancel()
            self._line_task = None
        if self.transport:
            self.transport.close()

    def bot_stream(self) -> RtpStream | None:
        """The stream carrying the most audio (the bot's)."""
        best = max(self.streams.values(), key=lambda s: len(s.pcm), default=None)
        return best

    def summary(self) -> list[dict]:
        out = []
        for ssrc, st in self.streams.items():
            s = pcm_stats(bytes(st.pcm))
            out.append({"ssrc": ssrc, "packets": st.packets, "pts": sorted(st.pts), **s,
                        "segments": segments(bytes(st.pcm), 8000)})
        return out


def g711a_pcap_pcm(path: str | Path = SIPP_SHARE / "g711a.pcap") -> bytes:
    """Decode the PCMA RTP payloads of a pcap (Debian's sample speech, ~7 s) to 8 kHz PCM."""
    data = Path(path).read_bytes()
    endian = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    l2 = {1: 14, 113: 16, 101: 0}[linktype]
    off, out = 24, bytearray()
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8: off + 12])[0]
        pkt = data[off + 16: off + 16 + incl]
        ip = pkt[l2:]
        if ip and ip[0] >> 4 == 4 and ip[9] == 17:
            rtp = ip[(ip[0] & 0x0F) * 4 + 8:]
            if len(rtp) > 12 and rtp[0] >> 6 == 2 and rtp[1] & 0x7F == 8:
                out += audioop.alaw2lin(rtp[12 + 4 * (rtp[0] & 0x0F):], 2)
        off += 16 + incl
    return bytes(out)


# ----------------------------------------------------------------------------- sipp

@dataclass
class SippResult:
    returncode: int
    stdout: str
    messages: str
    errors: str
    stats: dict
    elapsed: float


async def run_sipp(scenario: str | Path, target: str, *, keys: dict | None = None, calls: int = 1,
                   limit: int | None = None, rate: float | None = None, transport: str = "u1",
                   local_port: int | None = None, timeout: float = 30.0, service: str = "mairie",
                   workdir: str | Path | None = None, extra: list[str] | None = None,
                   local_ip: str = LOOPBACK) -> SippResult:
    """Run sipp once (``-m calls``), loopback only; returns its outcome and message log.
    ``target`` empty: sipp waits for calls on ``local_port`` (UAS scenarios)."""
    scenario = Path(scenario)
    if not scenario.is_absolute():
        scenario = SCENARIOS / scenario
    wd = Path(workdir or os.environ.get("TMPDIR", "/tmp")) / f"sipp-{os.getpid()}-{time.monotonic_ns()}"
    wd.mkdir(parents=True, exist_ok=True)
    cmd = ["sipp", "-sf", str(scenario), *([target] if target else []), "-s", service, "-i", local_ip,
           "-mi", local_ip,
           "-p", str(local_port or free_port()), "-m", str(calls), "-t", transport, "-nostdin",
           "-timeout", str(int(timeout)), "-timeout_error", "-max_recv_loops", "1000",
           "-trace_msg", "-message_file", str(wd / "msgs.log"), "-trace_err", "-error_file", str(wd / "err.log"),
           "-trace_stat", "-stf", str(wd / "stat.csv")]
    if limit:
        cmd += ["-l", str(limit)]
    if rate:
        cmd += ["-r", str(rate)]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, str(v)]
    cmd += extra or []
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, cwd=wd)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    stats = {}
    stat_file = wd / "stat.csv"
    if stat_file.exists():
        lines = stat_file.read_text(errors="replace").strip().splitlines()
        if len(lines) >= 2:
            stats = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))

    def _read(name: str) -> str:
        p = wd / name
        return p.read_text(errors="replace") if p.exists() else ""

    res = SippResult(proc.returncode if proc.returncode is not None else -1,
                     out.decode(errors="replace"), _read("msgs.log"), _read("err.log"), stats,
                     time.monotonic() - t0)
    shutil.rmtree(wd, ignore_errors=True)
    return res


def sipp_keys(media_port: int, *, codec: str = "PCMA", pcap: str | Path | None = None,
              info_digit: str = "5", talk_ms: int = 2500) -> dict:
    pt = 8 if codec.upper() == "PCMA" else 0
    return {"sink_ip": LOOPBACK, "sink_port": media_port, "pt": pt, "codec": codec.upper(),
            "pcap": str(pcap or SIPP_SHARE / "g711a.pcap"),
            "dtmf_pcap": str(SIPP_SHARE / "dtmf_2833_1.pcap"), "info_digit": info_digit, "talk_ms": talk_ms}


# ----------------------------------------------------------------------------- baresip peer

BARESIP_CONFIG = """poll_method\t\tepoll
sip_listen\t\t{host}:{sip_port}
net_interface\t\t{host}
call_local_timeout\t120
call_max_calls\t\t8
audio_player\t\taubridge,nil
audio_source\t\t{source}
audio_alert\t\taubridge,nil
audio_level\t\tno
rtp_ports\t\t{rtp_min}-{rtp_max}
rtp_stats\t\tyes
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\tsndfile.so
module\t\t\tctrl_tcp.so
module_app\t\taccount.so
module_app\t\tcontact.so
module_app\t\tmenu.so
ctrl_tcp_listen\t\t{host}:{ctrl_port}
snd_path\t\t{dump}
"""


class BaresipPeer:
    """The Debian ``baresip`` binary as a test peer (caller, or auto-answer agent)."""

    def __init__(self, workdir: str | Path, *, user: str = "caller", auto_answer: bool = False,
                 source_wav: str | Path | None = None, codecs: str = "PCMU,PCMA",
                 account_params: str = "") -> None:
        self.dir = Path(workdir)
        self.account_params = account_params  # e.g. ";auth_user=u;auth_pass=p" (answers 401 challenges)
        self.user = user
        self.auto_answer = auto_answer
        self.source_wav = source_wav
        self.codecs = codecs
        self.sip_port = free_sip_port()
        self.ctrl_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[tuple[float, dict]] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task | None = None
        self._event_cond = asyncio.Condition()
        self._token = 0
        self.responses: dict[str, dict] = {}

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{LOOPBACK}:{self.sip_port}"

    @property
    def dump_dir(self) -> Path:
        return self.dir / "dump"

    async def start(self) -> BaresipPeer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dump_dir.mkdir(exist_ok=True)
        rtp = 40000 + (self.sip_port % 200) * 100
        source = f"aufile,{self.source_wav}" if self.source_wav else "aubridge,nil"
        (self.dir / "config").write_text(BARESIP_CONFIG.format(
            host=LOOPBACK, sip_port=self.sip_port, source=source, rtp_min=rtp, rtp_max=rtp + 99,
            ctrl_port=self.ctrl_port, dump=self.dump_dir))
        answer = ";answermode=auto" if self.auto_answer else ""
        (self.dir / "accounts").write_text(
            f"<sip:{self.user}@{LOOPBACK}>;regint=0{answer};audio_codecs={self.codecs}{self.account_params}\n")
        (self.dir / "contacts").write_text("")
        self.log = open(self.dir / "baresip.log", "wb")
        self.proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(self.dir), "-s", stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                self._reader, self._writer = await asyncio.open_connection(LOOPBACK, self.ctrl_port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"baresip control port never opened; see {self.dir / 'baresip.log'}")
        self._read_task = asyncio.create_task(self._read_loop())
        return self

    async def _read_loop(self) -> None:
        r = self._reader
        try:
            while True:
                length = int((await r.readuntil(b":"))[:-1])
                msg = json.loads((await r.readexactly(length + 1))[:-1])
                if msg.get("event"):
                    self.events.append((time.monotonic(), msg))
                elif msg.get("response"):
                    self.responses[str(msg.get("token"))] = msg
                async with self._event_cond:
                    self._event_cond.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            return

    async def command(self, command: str, params: str = "") -> None:
        self._token += 1
        body = json.dumps({"command": command, "params": params, "token": str(self._token)}).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()

    async def wait_event(self, kind: str, timeout: float = 10.0, after: float = 0.0) -> dict | None:
        deadline = time.monotonic() + timeout
        async with self._event_cond:
            while True:
                for t, ev in self.events:
                    if t >= after and ev.get("type") == kind:
                        return ev | {"_t": t}
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._event_cond.wait(), left)
                except TimeoutError:
                    return None

    def event_time(self, kind: str) -> float | None:
        for t, ev in self.events:
            if ev.get("type") == kind:
                return t
        return None

    async def dial(self, uri: str) -> float:
        t = time.monotonic()
        await self.command("dial", uri)
        return t

    async def digit(self, key: str) -> None:
        await self.command("sndcode", key)

    async def hangup(self) -> None:
        await self.command("hangup")

    def recordings(self) -> tuple[Path | None, Path | None]:
        """(-enc.wav sent, -dec.wav received) of the latest call."""
        enc = sorted(self.dump_dir.glob("*-enc.wav"))
        dec = sorted(self.dump_dir.glob("*-dec.wav"))
        return (enc[-1] if enc else None, dec[-1] if dec else None)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            try:
                await self.command("quit")
                await asyncio.wait_for(self.proc.wait(), 3)
            except (TimeoutError, ConnectionError, AttributeError):
                self.proc.kill()
                await self.proc.wait()
        if self._read_task:
            self._read_task.cancel()
        if self._writer:
            self._writer.close()
        if getattr(self, "log", None):
            self.log.close()


def timeline(sent: tuple[bytes, int], received: tuple[bytes, int], *, established_offset: float = 0.0) -> dict:
    """Turn two aligned recordings (caller's sent/received audio) into a timeline.

    ``first_audio_s``: first bot audio after the start of the recording (≈ answer).
    ``turns``: for each caller speech segment, the bot's next reply onset minus the
    caller's segment end (voice-to-voice, s).
    """
    s_segs = segments(*sent)
    r_segs = segments(*received)
    turns = []
    for _, end in s_segs:
        nxt = next((rs for rs, _ in r_segs if rs >= end), None)
        turns.append({"caller_end_s": end, "bot_start_s": nxt,
                      "voice_to_voice_s": round(nxt - end, 3) if nxt is not None else None})
    return {"first_audio_s": (r_segs[0][0] + established_offset) if r_segs else None,
            "caller_segments": s_segs, "bot_segments": r_segs, "turns": turns}


# ----------------------------------------------------------------------------- scripted call (scripts/call-sip)

def _scenario_with_info(info: list[tuple[float, str]], duration: float, *, proxy: bool = False) -> str:
    """uac.xml (uac_proxy.xml through a Record-Route proxy) with its INFO/BYE part replaced:
    INFO digits at given seconds after the answer, BYE at ``duration`` s (sipp pauses are
    fixed when the scenario is written)."""
    base = (SCENARIOS / ("uac_proxy.xml" if proxy else "uac.xml")).read_text()
    head = base[: base.index('  <pause milliseconds="3500"/>')]
    info_tpl = base[base.index("  <send retrans=\"500\">\n    <![CDATA[\n\n      INFO"): base.index('  <pause milliseconds="1500"/>')]
    bye = base[base.index('  <pause milliseconds="1500"/>'):].replace('  <pause milliseconds="1500"/>\n', "")
    body, t, cseq = "", 0.3, 2  # ~0.3 s already spent around the re-INVITE
    for at, digit in sorted(info):
        if at > t:
            body += f'  <pause milliseconds="{int((at - t) * 1000)}"/>\n'
            t = at
        body += info_tpl.replace("[info_digit]", digit).replace("CSeq: 2 INFO", f"CSeq: {cseq} INFO")
        cseq += 1
    if duration > t:
        body += f'  <pause milliseconds="{int((duration - t) * 1000)}"/>\n'
    return head + body + bye.replace("CSeq: 3 BYE", f"CSeq: {cseq} BYE")


def _first_sent_monotonic(messages: str, wall_offset: float) -> float | None:
    """Monotonic time of the first message sipp sent (its trace stamps wall-clock time)."""
    import datetime as _dt

    lines = messages.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("-----") and "message sent" in lines[i + 1]:
            stamp = line.strip("- ").strip()
            try:
                wall = _dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                return None
            return wall - wall_offset
    return None


@dataclass
class Step:
    kind: str  # say | wav | press | wait
    value: str = ""


async def scripted_call(target: str, steps: list[Step], *, codec: str = "PCMA", transport: str = "udp",
                        info: list[tuple[float, str]] | None = None, duration: float | None = None,
                        record: str | Path | None = None, workdir: str | Path | None = None,
                        proxy: bool = False, log=print) -> dict:
    """Call the bot: sipp does the signalling (and INFO digits), an ``RtpSink`` plays the
    steps and records the bot. Returns a timeline (seconds after the 200 OK's first RTP).
    ``proxy``: ``target`` is a Record-Route proxy (Kamailio) in front of the bot."""
    wd = Path(workdir or os.environ.get("TMPDIR", "/tmp")) / f"call-sip-{os.getpid()}-{time.monotonic_ns()}"
    wd.mkdir(parents=True, exist_ok=True)
    sink = await RtpSink.open()
    audio: list[tuple[Step, bytes]] = []
    for i, st in enumerate(steps):
        if st.kind == "say":
            audio.append((st, read_wav(french_wav(st.value, wd / f"say{i}.wav", tail_silence=0.0))[0]))
        elif st.kind == "wav":
            pcm, rate = read_wav(st.value)
            if rate != 8000:
                pcm, _ = audioop.ratecv(pcm, 2, 1, rate, 8000, None)
            audio.append((st, pcm))
        else:
            audio.append((st, b""))
    est = sum(len(p) / 16000 + 4.0 for _, p in audio) + 4.0
    duration = duration or est
    scen = wd / "scenario.xml"
    scen.write_text(_scenario_with_info(info or [], duration, proxy=proxy))
    events: list[dict] = []
    turns: list[dict] = []
    t_invite = time.monotonic()
    wall_offset = time.time() - time.monotonic()

    def bot_voice_since(t: float) -> float | None:
        st = sink.bot_stream()
        if st is None or not st.first_at:
            return None
        pcm = bytes(st.pcm)
        start = max(0, int((t - st.first_at) * 8000)) * 2
        for s, _ in segments(pcm[start:], 8000, min_len_ms=40):
            return t + s
        return None

    async def bot_replied_and_quiet(since: float | None, quiet: float = 1.2, limit: float = 15.0) -> None:
        """Wait for the bot to answer the previous caller turn (if any), then to be quiet."""
        t0 = time.monotonic()
        while since is not None and bot_voice_since(since) is None and time.monotonic() - t0 < limit:
            await asyncio.sleep(0.05)
        while time.monotonic() - t0 < limit:
            st = sink.bot_stream()
            if st and st.pcm:
                tail = bytes(st.pcm[-int(quiet * 8000) * 2:])
                if len(tail) >= int(quiet * 8000) * 2 and not segments(tail, 8000, min_len_ms=40):
                    return
            await asyncio.sleep(0.05)

    async def media() -> None:
        if not await sink.wait_peer(10):
            return
        t_ans = sink.bot_stream().first_at
        events.append({"t": 0.0, "what": "answer (first RTP from the bot)"})
        last_end = None
        for st, pcm in audio:
            if st.kind in ("say", "wav", "press"):
                await bot_replied_and_quiet(last_end)
            if st.kind in ("say", "wav"):
                t0 = time.monotonic()
                await sink.play(pcm)
                t_end = time.monotonic()
                events.append({"t": round(t0 - t_ans, 3), "what": f"caller says {st.value!r} ({len(pcm) / 16000:.1f} s)"})
                turns.append({"kind": st.kind, "value": st.value, "caller_end": t_end})
                last_end = t_end
            elif st.kind == "press":
                t0 = time.monotonic()
                await sink.send_digit(st.value)
                events.append({"t": round(t0 - t_ans, 3), "what": f"caller presses {st.value} (RFC 4733)"})
                last_end = time.monotonic()
                turns.append({"kind": "press", "value": st.value, "caller_end": last_end})
            elif st.kind == "wait":
                await asyncio.sleep(float(st.value))

    task = asyncio.create_task(media())
    res = await run_sipp(scen, target, keys=sipp_keys(sink.port, codec=codec),
                         transport={"udp": "u1", "tcp": "t1"}[transport], timeout=duration + 20)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sink.close()
    st = sink.bot_stream()
    out: dict = {"sipp_rc": res.returncode, "sipp_errors": res.errors[-800:] if res.returncode else "",
                 "codec": codec, "transport": transport, "events": events}
    if st is None:
        out["error"] = "no RTP from the bot"
        return out
    t_ans = st.first_at
    t_invite = _first_sent_monotonic(res.messages, wall_offset) or t_invite
    out["answer_s"] = round(t_ans - t_invite, 3)  # INVITE on the wire -> first RTP from the bot
    out["first_greeting_audio_s"] = round(st.first_voice_at - t_ans, 3) if st.first_voice_at else None
    out["invite_to_greeting_s"] = round(st.first_voice_at - t_invite, 3) if st.first_voice_at else None
    for tr in turns:
        onset = bot_voice_since(tr["caller_end"])
        tr["voice_to_voice_s"] = round(onset - tr["caller_end"], 3) if onset else None
        tr["caller_end"] = round(tr["caller_end"] - t_ans, 3)
    for at, digit in info or []:
        events.append({"t": at, "what": f"caller sends INFO {digit} (scheduled)"})
    out["turns"] = turns
    out["bot_segments"] = segments(bytes(st.pcm), 8000)
    out["bot_audio"] = pcm_stats(bytes(st.pcm))
    if record:
        write_wav(record, bytes(st.pcm))
        out["recording"] = str(record)
    out["events"] = sorted(events, key=lambda e: e["t"])
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging
    import sys

    ap = argparse.ArgumentParser(
        prog="call-sip",
        description="Place a test call to callbot over SIP (sipp signalling + an RTP peer) and print a timeline.")
    ap.add_argument("--target", default="127.0.0.1:5060", help="bot host:port (loopback)")
    ap.add_argument("--say", action="append", default=[], dest="steps", type=lambda v: Step("say", v),
                    help="French sentence (pico2wave fr-FR), said once the bot is quiet")
    ap.add_argument("--wav", action="append", dest="steps", type=lambda v: Step("wav", v), help="WAV file to play")
    ap.add_argument("--press", action="append", dest="steps", type=lambda v: Step("press", v),
                    help="keypad digit as RFC 4733 telephone-event")
    ap.add_argument("--wait", action="append", dest="steps", type=lambda v: Step("wait", v), help="seconds")
    ap.add_argument("--info", action="append", default=[], metavar="DIGIT@SECS",
                    help="SIP INFO digit sent SECS after the answer, e.g. 5@3")
    ap.add_argument("--codec", default="PCMA", choices=["PCMA", "PCMU"])
    ap.add_argument("--transport", default="udp", choices=["udp", "tcp"])
    ap.add_argument("--duration", type=float, help="hang up after this many seconds (default: from the steps)")
    ap.add_argument("--record", help="write the bot's audio (8 kHz WAV) here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    host = args.target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        ap.error("loopback targets only")
    info = []
    for spec in args.info:
        digit, _, at = spec.partition("@")
        info.append((float(at or 2.0), digit))
    logging.basicConfig(level=logging.WARNING)
    out = asyncio.run(scripted_call(args.target.replace("localhost", "127.0.0.1"), args.steps, codec=args.codec,
                                    transport=args.transport, info=info, duration=args.duration,
                                    record=args.record))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"answer (INVITE -> first RTP): {out.get('answer_s')} s   "
              f"INVITE -> greeting audio: {out.get('invite_to_greeting_s')} s   "
              f"answer -> greeting audio: {out.get('first_greeting_audio_s')} s")
        for e in out.get("events", []):
            print(f"  {e['t']:7.3f}  {e['what']}")
        for i, tr in enumerate(out.get("turns", []), 1):
            print(f"  turn {i}: {tr['kind']} {tr['value']!r}: voice-to-voice {tr['voice_to_voice_s']} s")
        print(f"  bot speech segments (s after answer): {out.get('bot_segments')}")
        if out.get("sipp_rc"):
            print(f"sipp failed ({out['sipp_rc']}): {out.get('sipp_errors')}", file=sys.stderr)
    return 0 if out.get("sipp_rc") == 0 and out.get("first_greeting_audio_s") is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
