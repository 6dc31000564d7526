"""What one test call measured: :class:`CallReport` and its :class:`Turn` entries.

All times are seconds since the call was placed (the webhook POST), rounded to ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from callbot_testing import audio as A


@dataclass
class Turn:
    """One caller action and the bot's reaction to it."""

    kind: str  # "say" | "press"
    label: str
    start: float  # start of caller speech (leading silence excluded) / first digit
    end: float  # end of caller *speech* (trailing silence excluded) / last digit sent
    bot_onset: float | None = None  # first bot speech starting at or after ``end``

    @property
    def delay(self) -> float | None:
        """Caller-side voice-to-voice (or DTMF-to-voice) delay."""
        return None if self.bot_onset is None else round(self.bot_onset - self.end, 3)


@dataclass
class CallReport:
    call_sid: str
    account_sid: str
    stream_sid: str = ""
    webhook_url: str = ""
    webhook_status: int | None = None
    webhook_s: float | None = None  # webhook round trip
    signed: bool = False  # X-Twilio-Signature sent
    twiml: str = ""
    stream_url: str = ""  # as given by the TwiML
    connected_url: str = ""  # what we actually connected to
    custom_parameters: dict[str, str] = field(default_factory=dict)
    answered_at: float | None = None  # websocket up, ``start`` sent: t=0 of the stream
    first_media_at: float | None = None  # first bot media message (even silent)
    greeting_at: float | None = None  # first bot speech heard
    turns: list[Turn] = field(default_factory=list)
    dtmf_sent: list[tuple[float, str]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    marks: list[list[Any]] = field(default_factory=list)  # [received at, echoed at | None, name]
    media_received: int = 0
    bot_speech: list[tuple[float, float]] = field(default_factory=list)
    ended_at: float | None = None
    ended_by: str = ""  # caller | server-ws | server-rest | transfer | timeout | rejected | error
    rest_hangup_at: float | None = None  # REST Status=completed seen by the fake REST server
    transferred_to: str | None = None  # <Dial> from <Connect action> or a REST Twiml update
    after_twiml: str = ""  # what <Connect action> answered once the server closed the stream
    audio_cut_s: float = 0.0  # bot audio still queued (never heard) when the call ended
    recorded_s: float = 0.0
    record_path: str | None = None
    late_frames: int = 0  # caller frames sent > 40 ms late (overloaded event loop)
    steps_skipped: int = 0  # steps not run because the call ended first
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    # what the caller heard, 8 kHz int16, sample 0 = ``answered_at`` (not in to_dict)
    bot_audio: np.ndarray | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------- derived
    @property
    def greeting_latency(self) -> float | None:
        """Stream start -> first bot speech heard."""
        if self.greeting_at is None or self.answered_at is None:
            return None
        return round(self.greeting_at - self.answered_at, 3)

    @property
    def voice_to_voice(self) -> list[float | None]:
        return [t.delay for t in self.turns if t.kind == "say"]

    @property
    def dtmf_to_voice(self) -> list[float | None]:
        return [t.delay for t in self.turns if t.kind == "press"]

    @property
    def marks_received(self) -> int:
        return len(self.marks)

    @property
    def marks_echoed(self) -> int:
        return sum(m[1] is not None for m in self.marks)

    @property
    def clear_count(self) -> int:
        return len(self.clears)

    @property
    def server_hung_up(self) -> bool:
        return self.ended_by in ("server-ws", "server-rest", "transfer") or self.rest_hangup_at is not None

    @property
    def completed(self) -> bool:
        """Answered, ended by either side, no error or timeout."""
        return (
            self.answered_at is not None
            and self.ended_by in ("caller", "server-ws", "server-rest", "transfer")
            and not self.errors
        )

    def __str__(self) -> str:
        return self.timeline()

    def bot_audio_between(self, start: float, end: float) -> np.ndarray:
        """What the caller heard between two call times (e.g. a ``bot_speech`` segment), int16 8 kHz."""
        if self.bot_audio is None or self.answered_at is None:
            return np.zeros(0, dtype=np.int16)
        a, b = (max(0, int(round((t - self.answered_at) * 8000))) for t in (start, end))
        return self.bot_audio[a:b]

    def bot_reply(self, turn: Turn) -> np.ndarray:
        """The bot speech segment that answered ``turn`` (for ASR checks); empty when none."""
        for s, e in self.bot_speech:
            if turn.bot_onset is not None and s <= turn.bot_onset + 0.02 and turn.bot_onset < e:
                return self.bot_audio_between(s, e)
        return np.zeros(0, dtype=np.int16)

    def to_dict(self) -> dict[str, Any]:
        audio, self.bot_audio = self.bot_audio, None
        try:
            d = asdict(self)
        finally:
            self.bot_audio = audio
        d.pop("bot_audio")
        for i, t in enumerate(self.turns):
            d["turns"][i]["delay"] = t.delay
        d.update(
            greeting_latency=self.greeting_latency,
            voice_to_voice=self.voice_to_voice,
            dtmf_to_voice=self.dtmf_to_voice,
            clear_count=self.clear_count,
            marks_received=self.marks_received,
            marks_echoed=self.marks_echoed,
            server_hung_up=self.server_hung_up,
            completed=self.completed,
        )
        return d

    # ------------------------------------------------------------ timeline
    def timeline(self) -> str:
        """Human-readable timeline of the call (returned, not printed: ``print(report.timeline())``)."""
        ev: list[tuple[float, int, str]] = []
        if self.webhook_status is not None:
            ev.append((0.0, 0, f"webhook POST {self.webhook_url} -> {self.webhook_status} in {_ms(self.webhook_s)}"))
        if self.answered_at is not None:
            ev.append((self.answered_at, 1, f"stream started {self.stream_sid} ({self.connected_url})"))
        if self.first_media_at is not None:
            ev.append((self.first_media_at, 2, "first bot media message"))
        for s, e in self.bot_speech:
            tag = "  (greeting)" if self.greeting_at is not None and s <= self.greeting_at < e else ""
            ev.append((s, 3, f"BOT   speaks {s:.2f}-{e:.2f} ({e - s:.2f} s){tag}"))
        for t in self.turns:
            verb = "says " if t.kind == "say" else "presses"
            reply = f"bot after {_ms(t.delay)}" if t.delay is not None else "no bot reply"
            ev.append((t.start, 2, f"CALLER {verb} {t.label} {t.start:.2f}-{t.end:.2f} -> {reply}"))
        for c in self.clears:
            ev.append((c, 4, "bot sent clear (barge-in)"))
        for got, echoed, name in self.marks:
            played = f"echoed at {echoed:.2f} (once played)" if echoed is not None else "never echoed"
            ev.append((got, 4, f"bot mark {name!r}, {played}"))
        if self.rest_hangup_at is not None:
            ev.append((self.rest_hangup_at, 5, "REST hang-up (Status=completed)"))
        if self.transferred_to:
            ev.append((self.ended_at or 0.0, 7, f"transferred to {self.transferred_to}"))
        if self.ended_at is not None:
            cut = f", {self.audio_cut_s:.2f} s of bot audio never played" if self.audio_cut_s >= 0.1 else ""
            ev.append((self.ended_at, 6, f"call ended by {self.ended_by}{cut}"))
        lines = [f"call {self.call_sid}"]
        lines += [f"  {t:7.3f}  {text}" for t, _, text in sorted(ev)]
        summary = [
            f"greeting latency {_ms(self.greeting_latency)}",
            "voice-to-voice " + (", ".join(_ms(d) for d in self.voice_to_voice) or "-"),
        ]
        if self.dtmf_to_voice:
            summary.append("dtmf-to-voice " + ", ".join(_ms(d) for d in self.dtmf_to_voice))
        summary.append(f"clears {self.clear_count}, marks {self.marks_received}/{self.marks_echoed} echoed")
        lines.append("  " + "; ".join(summary))
        if self.record_path:
            lines.append(f"  recording {self.record_path} ({self.recorded_s:.2f} s)")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  protocol error: {p}" for p in self.protocol_errors[:10]]
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines.append("  completed" if self.completed else "  NOT completed")
        return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _stats(values: list[float | None]) -> str:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return "-"
    pick = lambda q: vals[min(len(vals) - 1, int(q * len(vals)))]  # noqa: E731
    return f"p50 {_ms(pick(0.5))}, p95 {_ms(pick(0.95))}, max {_ms(vals[-1])} (n={len(vals)})"


def summarize(reports: list[CallReport]) -> str:
    """Latency summary over many calls (load benchmarks)."""
    lines = [
        f"calls {len(reports)}, completed {sum(r.completed for r in reports)}",
        f"  greeting latency  {_stats([r.greeting_latency for r in reports])}",
        f"  voice-to-voice    {_stats([d for r in reports for d in r.voice_to_voice])}",
        f"  dtmf-to-voice     {_stats([d for r in reports for d in r.dtmf_to_voice])}",
        f"  webhook           {_stats([r.webhook_s for r in reports])}",
    ]
    late = sum(r.late_frames for r in reports)
    if late:
        lines.append(f"  {late} caller frames sent late: the caller machine is overloaded, latencies are inflated")
    errors = [e for r in reports for e in r.errors]
    lines += [f"  ERROR ({errors.count(e)}x): {e}" for e in dict.fromkeys(errors)]
    return "\n".join(lines)


def analyse(report: CallReport, heard: A.HeardAudio, offset: float, record_path: str | Path | None) -> None:
    """Fill the report from what the caller heard; ``offset``: call time of the stream start."""
    if report.answered_at is None:
        return
    call_t = lambda t: round(t + offset, 3)  # noqa: E731
    report.bot_speech = [(call_t(heard.onset_after(s) or s), call_t(e)) for s, e in A.segments(heard.active())]
    onset = heard.onset_after(0.0)
    report.greeting_at = call_t(onset) if onset is not None else None
    for turn in report.turns:
        if not turn.end:  # the call ended while the caller was still talking
            turn.label += " (cut off)"
            continue
        onset = heard.onset_after(turn.end - offset)
        turn.bot_onset = call_t(onset) if onset is not None else None
    pcm = heard.pcm()
    ended = report.ended_at - offset if report.ended_at is not None else len(pcm) / A.RATE
    n = max(len(pcm), int(round(ended * A.RATE)))  # pad: the line stayed open, silent
    report.bot_audio = np.concatenate([pcm, np.zeros(n - len(pcm), dtype=np.int16)])
    report.recorded_s = round(n / A.RATE, 3)
    if record_path:
        A.write_wav(record_path, report.bot_audio)
        report.record_path = str(record_path)
