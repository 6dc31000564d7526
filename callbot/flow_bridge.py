"""The bridge between the audio pipeline and the pure flow engine.

Sits after speech recognition and before speech synthesis. It turns pipecat
frames into the engine's four inputs (``hear``, ``press``, ``silence`` and the
initial ``start``) and the engine's ``Turn`` back into frames: prompts to
speak, barge-in policy, endpointing, the no-input timer, and the end of the
call. It routes **once per caller turn**: a transcript is held while the
caller is still speaking and joined with the next one.

Endpointing: the VAD reports short pauses (``endpointing.PAUSE_SECS``) so Whisper
starts decoding while the caller may still go on; this processor decides when the turn
is over (``endpointing.wait_secs``: the node's hint for unfinished-sounding text, much
less for a finished sentence) and routes then, unless the VAD is hearing speech it has
not confirmed yet (the caller going on after a comma). If the caller resumes, the turn
goes on and the recogniser re-decodes the whole turn (``speech.stt.WhisperSTT``), whose
transcript replaces the partial one.

Degraded (keypad) mode, when the process is beyond its speech-recognition capacity
(``admission.py``): the call is still answered at once, with pre-rendered prompts, on
the flow's keypad menu (``fallback.py``); caller speech is ignored. The same mode takes a
call whose recogniser or synthesis fails (``on_fault``): an apology, then the keypad menu,
never dead air.

Timing (server side) is measured here too: end of caller speech -> first bot
audio, for speech and keypad turns, recorded as ``TurnLatency`` events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pipecat.audio.vad.vad_analyzer import VADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from callbot import events as ev
from callbot.fallback import has_keypad_menu, keypad_turn
from callbot.flows.endpointing import wait_secs
from callbot.flows.types import FlowSession, Listen, Turn
from callbot.recorder import CallRecorder

log = logging.getLogger(__name__)

INTER_DIGIT_SECS = 3.0
RECHECK_SECS = 0.05  # while the VAD hears unconfirmed speech, look again this often


class FlowProcessor(FrameProcessor):
    def __init__(
        self,
        session: FlowSession,
        recorder: CallRecorder,
        *,
        vad: VADAnalyzer | None = None,
        default_end_of_turn_secs: float = 0.5,
        on_final_turn: Callable[[Turn], Awaitable[None] | None] | None = None,
        on_turn_routed: Callable[[], None] | None = None,
        keypad_only: bool = False,
        load_step: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(name="flow")
        self.session = session
        self.recorder = recorder
        self._vad = vad
        self._default_eot = default_end_of_turn_secs
        self._on_final_turn = on_final_turn
        self.final_turn: Turn | None = None
        self._listen: Listen = Listen()
        self._user_speaking = False
        self._speech_during_bot = False  # this speech segment started while the bot talked
        self._bot_speaking = False
        self._pending_text: list[str] = []
        self._pending_alts: tuple[str, ...] = ()  # Whisper's other hypotheses for the turn so far
        self._pending_asr_ms = 0.0
        self._digits = ""
        self._digit_task: asyncio.Task | None = None
        self._no_input_task: asyncio.Task | None = None
        self._turn_end_wall: float | None = None  # when the caller finished (speech end or key press)
        self._turn_trigger: str = "speech"
        self._turn_asr_ms: float | None = None
        self._turn_flow_ms: float | None = None
        self._turn_routed_wall: float | None = None
        self._started_mono = 0.0
        self._answered = False
        self._on_turn_routed = on_turn_routed  # tells the recogniser a new turn starts
        self._endpoint_task: asyncio.Task | None = None
        self.keypad_only = keypad_only
        self._fallback_unanswered = False  # the fallback menu was offered and the caller has not acted since
        self._load_step = load_step  # the machine's step on the degrading ladder (admission.AsrAdmission.step)
        self._degraded: set[str] = set()  # ladder steps this call has been served at (one event each)

    # ------------------------------------------------------------------ frames
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)

        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._started_mono = time.monotonic()
            self._follow_load()
            await self._apply(keypad_turn(self.session, first=True) if self.keypad_only else self.session.start())
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            if not self.keypad_only:
                await self._on_user_started()
            await self.push_frame(frame, direction)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            if not self.keypad_only:
                self._user_speaking = False
                self._turn_end_wall = frame.timestamp - frame.stop_secs
                self._turn_trigger = "speech"
            await self.push_frame(frame, direction)
        elif isinstance(frame, TranscriptionFrame):
            await self._on_transcript(frame)
        elif isinstance(frame, InterimTranscriptionFrame):
            pass  # routing waits for the final text of the turn
        elif isinstance(frame, InputDTMFFrame):
            await self._on_digit(frame.button.value)
        elif isinstance(frame, BotStartedSpeakingFrame):
            if direction == FrameDirection.UPSTREAM:
                self._on_bot_started()
            await self.push_frame(frame, direction)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            if direction == FrameDirection.UPSTREAM:
                self._bot_speaking = False
                if self.final_turn is None and self._listen is not None:
                    self._arm_no_input()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _on_user_started(self) -> None:
        self._user_speaking = True
        self._cancel_no_input()
        self._cancel_endpoint()
        self._speech_during_bot = self._bot_speaking
        if self._bot_speaking and self._listen.barge_in and self.final_turn is None:
            await self.broadcast_interruption()
            self._bot_speaking = False

    async def _on_transcript(self, frame: TranscriptionFrame) -> None:
        text = (frame.text or "").strip()
        asr_ms = _asr_ms(frame)
        self.recorder.emit(ev.Transcript(text=text, asr_ms=asr_ms, audio_s=_result_field(frame, "audio_s"),
                                         node=self.session.node))
        if self.final_turn is not None or self.keypad_only:
            return
        if self._speech_during_bot and not self._listen.barge_in:
            log.debug("ignored speech over a non-interruptible prompt: %r", text)
            return
        if getattr(frame.result, "shed", False):
            self._note_degraded("greedy", "less precise recognition: Whisper saturated")
        if text:
            alts = tuple(getattr(frame.result, "alternatives", ()) or ())
            if getattr(frame.result, "segments", 1) > 1:
                # a re-decode of the whole turn so far: it supersedes the partial transcripts
                self._pending_text = [text]
                self._pending_asr_ms = asr_ms or 0.0
            else:
                self._pending_text.append(text)
                self._pending_asr_ms += asr_ms or 0.0
            before = " ".join(self._pending_text[:-1])
            self._pending_alts = tuple(f"{before} {a}".strip() for a in alts)
        await self._maybe_end_turn()

    async def _maybe_end_turn(self) -> None:
        """Route now, or when the silence reaches what the policy asks for this text."""
        self._cancel_endpoint()
        if self._user_speaking or self.final_turn is not None:
            return  # the caller went on talking: the turn goes on
        if not self._pending_text:
            self._arm_no_input()
            return
        said = " ".join(self._pending_text)
        wait = wait_secs(said, self._listen.end_of_turn_secs, self._default_eot, self._listen.slot_type)
        silent = time.time() - self._turn_end_wall if self._turn_end_wall is not None else wait
        if silent >= wait and not self._caller_resuming():
            await self._end_speech_turn()
        else:
            self._endpoint_task = self.create_task(self._endpoint_after(max(wait - silent, RECHECK_SECS)),
                                                   "end-of-turn")

    async def _endpoint_after(self, secs: float) -> None:
        await asyncio.sleep(secs)
        self._endpoint_task = None
        if self._user_speaking or self.final_turn is not None:
            return
        if self._caller_resuming():  # bounded: the VAD confirms or drops a start within start_secs
            self._endpoint_task = self.create_task(self._endpoint_after(RECHECK_SECS), "end-of-turn")
            return
        await self._end_speech_turn()

    def _caller_resuming(self) -> bool:
        """The VAD hears speech it has not confirmed yet: the caller may be going on."""
        return bool(getattr(self._vad, "speech_starting", False))

    async def _end_speech_turn(self) -> None:
        if not self._pending_text:
            return
        said, alts = " ".join(self._pending_text), self._pending_alts
        self._turn_asr_ms = self._pending_asr_ms or None
        self._pending_text, self._pending_alts, self._pending_asr_ms = [], (), 0.0
        if self._on_turn_routed:
            self._on_turn_routed()
        prepare = getattr(self.session, "prepare", None)
        if prepare is not None:  # the sentence encoders' ~15 ms run off the event loop
            try:
                await asyncio.to_thread(prepare, said, alts)
            except Exception:  # the engine computes it again (and reports) if it must
                log.exception("preparing the recogniser's input failed")
        await self._route(lambda: self.session.hear(said, alts) if alts else self.session.hear(said))

    async def on_nothing_recognised(self) -> None:
        """A speech segment gave no usable text (noise, cough, unintelligible): keep listening.

        Not a no-match: line noise would make the bot say "pardon ?" over and over. If the
        caller then stays silent, the no-input timer reprompts as usual. Text already heard
        in this turn (before a pause) is routed as usual.
        """
        if self.final_turn is None and not self._user_speaking:
            await self._maybe_end_turn()

    async def on_asr_busy(self) -> None:
        """Speech recognition is over capacity: go on with this call on the keypad menu."""
        if self.keypad_only or self.final_turn is not None:
            return
        self.recorder.emit(ev.Overload(what="asr_busy", detail="speech recognition over capacity during the call"))
        await self._to_keypad("asr_busy", "speech recognition over capacity")

    async def on_fault(self, stage: str, kind: str, detail: str) -> None:
        """The recogniser or the synthesis raised or missed its deadline: never leave the caller in silence.

        ASR: the flow's ``asr_fault`` apology, then the keypad menu (or a person when the flow has
        none), all pre-rendered; the call stays on the keypad (speech is not decoded any more, so
        it cannot fail again). TTS: the TTS service has already played the ``tts_fault`` apology in
        place of the prompt; the caller gets the keypad menu, whose prompts are pre-rendered. A
        fault while the call is ending, or again before the caller has acted on the menu just
        offered, is recorded and changes nothing.
        """
        if (self.final_turn is not None or (stage == "asr" and self.keypad_only)
                or (stage == "tts" and self._fallback_unanswered)):
            self.recorder.emit(ev.Fault(stage=stage, kind=kind, detail=detail, action="none"))
            return
        action = "keypad" if has_keypad_menu(self.session) else "agent"
        self.recorder.emit(ev.Fault(stage=stage, kind=kind, detail=detail, action=action))
        # the TTS apology is already queued for playback: an interruption would cut it
        await self._to_keypad(f"{stage}_fault", detail, lead="asr_fault" if stage == "asr" else None,
                              interrupt=stage == "asr")

    async def _to_keypad(self, reason: str, detail: str, *, lead: str | None = None, interrupt: bool = True) -> None:
        self.keypad_only = True
        self._cancel_endpoint()
        self._pending_text, self._pending_alts, self._pending_asr_ms = [], (), 0.0
        self.recorder.emit(ev.KeypadFallback(reason=reason, detail=detail))
        if interrupt and self._bot_speaking:
            await self.broadcast_interruption()
            self._bot_speaking = False
        self._fallback_unanswered = True
        await self._apply(keypad_turn(self.session, lead=lead))

    async def _on_digit(self, digit: str) -> None:
        if self.final_turn is not None:
            return
        self._cancel_no_input()
        if self._bot_speaking and self._listen.barge_in:
            await self.broadcast_interruption()
            self._bot_speaking = False
        self._turn_end_wall = time.time()
        self._turn_trigger = "digits"
        self._cancel_digit_timer()
        if digit == "#" and self._digits:
            await self._flush_digits()
            return
        self._digits += digit
        if len(self._digits) >= max(1, self._listen.max_digits):
            await self._flush_digits()
        else:
            self._digit_task = self.create_task(self._digit_timeout(), "inter-digit")

    async def _digit_timeout(self) -> None:
        await asyncio.sleep(INTER_DIGIT_SECS)
        self._digit_task = None
        await self._flush_digits()

    async def _flush_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if digits:
            self.recorder.emit(ev.DigitsPressed(digits=digits, node=self.session.node))
            self._turn_asr_ms = None
            await self._route(lambda: self.session.press(digits))

    @property
    def _bot_speaking(self) -> bool:
        return self._bot_talking

    @_bot_speaking.setter
    def _bot_speaking(self, talking: bool) -> None:
        """The VAD confirms speech sooner while the bot is silent (a lone "oui"), later over it (barge-in)."""
        self._bot_talking = talking
        follow = getattr(self._vad, "follow_bot", None)
        if follow is not None:
            follow(talking)

    def _on_bot_started(self) -> None:
        self._bot_speaking = True
        now_wall = time.time()
        if not self._answered:
            self._answered = True
            self.recorder.emit(ev.CallAnswered(greeting_latency_ms=(time.monotonic() - self._started_mono) * 1000))
        elif self._turn_end_wall is not None:
            tts_ms = (now_wall - self._turn_routed_wall) * 1000 if self._turn_routed_wall else None
            self.recorder.emit(ev.TurnLatency(
                voice_to_voice_ms=(now_wall - self._turn_end_wall) * 1000,
                asr_ms=self._turn_asr_ms, flow_ms=self._turn_flow_ms, tts_ms=tts_ms, trigger=self._turn_trigger))
        self._turn_end_wall = None

    # ------------------------------------------------------------------ turns
    async def _route(self, step: Callable[[], Turn]) -> None:
        self._fallback_unanswered = False
        self._follow_load()
        t0 = time.perf_counter()
        try:
            turn = step()
        except Exception as e:  # the engine is pure; a bug there must not kill the call silently
            log.exception("flow engine error in node %s", self.session.node)
            self.recorder.emit(ev.ErrorEvent(code="flow_engine_error", message=str(e), stage="flow"))
            turn = self.session.silence()
        self._turn_flow_ms = (time.perf_counter() - t0) * 1000
        self._turn_routed_wall = time.time()  # from here to the first audio out: speech synthesis (tts_ms)
        await self._apply(turn)

    def _follow_load(self) -> None:
        """First step of the degrading ladder: while the machine is saturated, nodes say their ``brief`` prompts."""
        if self._load_step is None or not hasattr(self.session, "brief"):
            return
        self.session.brief = self._load_step() != "normal"
        if self.session.brief:
            self._note_degraded("brief", "shorter prompts: Whisper saturated")

    def _note_degraded(self, step: str, detail: str) -> None:
        if step not in self._degraded:
            self._degraded.add(step)
            self.recorder.emit(ev.Degraded(step=step, detail=detail))

    async def _apply(self, turn: Turn) -> None:
        self._cancel_no_input()
        self.recorder.emit_all(turn.events)
        for prompt in turn.say:
            self.recorder.emit(ev.BotSaid(text=prompt.text, node=turn.node, cached=prompt.static))
            await self.push_frame(TTSSpeakFrame(prompt.text))
        if turn.ends_call:
            self.final_turn = turn
            if self._on_final_turn:
                result = self._on_final_turn(turn)
                if asyncio.iscoroutine(result):
                    await result
            reason = "transfer" if turn.transfer else (turn.hangup.reason if turn.hangup else "end")
            await self.push_frame(EndWorkerFrame(reason=reason))
            return
        self._listen = turn.listen or Listen()
        if not turn.say:
            self._arm_no_input()

    # ------------------------------------------------------------------ timers
    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        if self._listen and self._listen.no_input_secs > 0 and not self._user_speaking:
            self._no_input_task = self.create_task(self._no_input_timeout(self._listen.no_input_secs), "no-input")

    async def _no_input_timeout(self, secs: float) -> None:
        await asyncio.sleep(secs)
        self._no_input_task = None
        if self.final_turn is None and not self._user_speaking and not self._bot_speaking:
            self._turn_end_wall = None
            await self._route(self.session.silence)

    def _cancel_no_input(self) -> None:
        if self._no_input_task:
            task, self._no_input_task = self._no_input_task, None
            if task is not asyncio.current_task():
                task.cancel()

    def _cancel_endpoint(self) -> None:
        if self._endpoint_task:
            task, self._endpoint_task = self._endpoint_task, None
            if task is not asyncio.current_task():
                task.cancel()

    def _cancel_digit_timer(self) -> None:
        if self._digit_task:
            task, self._digit_task = self._digit_task, None
            if task is not asyncio.current_task():
                task.cancel()

    async def cleanup(self) -> None:
        self._cancel_no_input()
        self._cancel_digit_timer()
        self._cancel_endpoint()
        await super().cleanup()


def _asr_ms(frame: TranscriptionFrame) -> float | None:
    """The recogniser's decode time, when the STT service attached it to the frame."""
    return _result_field(frame, "asr_ms")


def _result_field(frame: TranscriptionFrame, name: str) -> float | None:
    """A number the STT service attached to the frame or its result (decode time, audio length)."""
    value = getattr(frame, name, None)
    if value is None and isinstance(frame.result, dict):
        value = frame.result.get(name)
    elif value is None:
        value = getattr(frame.result, name, None)
    return float(value) if value is not None else None
