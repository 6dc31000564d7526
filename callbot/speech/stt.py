"""The per-call pipecat STT stage: speech segments in, one transcript per turn out.

``WhisperSTT`` borrows the process-wide ``SharedWhisper`` (``asr.py``); this module
decides *what* to decode and *when*:

- Segmentation is pipecat's: audio from the VAD start (plus ``PRE_ROLL_S`` of lead-in)
  to the VAD stop (a short pause, ``endpointing.PAUSE_SECS``), padded with 0.5 s of
  silence.
- Early decoding: the VAD needs ``PAUSE_SECS`` of quiet to close a segment, but the
  words are all there after ``EARLY_SECS``. When the recogniser is idle, the
  decode of the turn so far starts then, speculatively; if the pause turns into the VAD
  stop with no speech in between, that result is the segment's (the audio differs only
  by trailing silence), otherwise it is dropped. On an idle recogniser this takes
  ``PAUSE_SECS - EARLY_SECS`` off every turn; when anything else is decoding or waiting,
  nothing is speculated.
- Resumed turns: when the caller goes on after a pause, the next segment is decoded
  *with* the turn's earlier audio (``result.segments`` > 1: the flow replaces the
  partial transcript), so a sentence cut at a pause is still heard whole; a queued
  segment superseded by a newer one of the same turn is skipped, and so is a decode still
  waiting for a slot when the caller goes on (under load the partial's decode usually
  still waits then: its words will be decoded with the rest of the turn). Decoding only the new
  segment with the earlier text as prompt was measured and rejected: WER 0.18 -> 0.35
  on ``scripts/bench-asr`` sentences cut at their comma.
- Admission: with ``speech_enabled`` False (keypad mode) nothing is decoded; when the
  process's decode queue is full (``AsrAdmission.admit_decode``) the segment is not
  queued and ``on_asr_busy`` fires, so the flow moves the call to the keypad menu.
- Faults: a decode that raises or misses its deadline (``SharedWhisper.atranscribe``,
  ``callbot/faults.py``) fires ``on_asr_fault`` with the ``StageFault`` and stops decoding
  for this call: the flow apologises and goes on on the keypad menu, never in silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pipecat.frames.frames import ErrorFrame, Frame, InputAudioRawFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from callbot.constants import PIPELINE_IN_RATE
from callbot.errors import StageFault
from callbot.flows.endpointing import EARLY_SECS
from callbot.logsafe import safe
from callbot.speech.asr import AsrResult, SharedWhisper

log = logging.getLogger(__name__)

PRE_ROLL_S = 1.6  # audio kept before the VAD start (see WhisperSTT.setup)
MAX_TURN_AUDIO_S = 20.0  # beyond this, a resumed turn is decoded segment by segment again
# A queued partial is dropped when the caller goes on only if the turn so far is this short, so
# the rest of the turn (up to MAX_TURN_AUDIO_S - this) is still decoded with it.
SUPERSEDE_MAX_S = MAX_TURN_AUDIO_S / 2


def _log_result(res: AsrResult, tags: str) -> None:
    """One INFO line per decode, used or not: ``bench-load`` reads them (``ASR_LINE``)."""
    log.info("asr %.2fs audio: %.0f ms (+%.0f ms queued, beam %d)%s %s%s", res.audio_s, res.asr_ms, res.queue_ms,
             res.beam, tags, f"[{res.rejected}] " if res.rejected else "", safe(res.raw_text, log))


class _Segment(bytes):
    """PCM handed to ``run_stt`` through pipecat's segment queue, tagged with its turn."""

    turn: int = 0
    segments: int = 1
    seq: int = 0
    early: asyncio.Task[AsrResult] | None = None  # its decode, started before the VAD stop


class WhisperSTT(SegmentedSTTService):
    """Per-call pipecat STT that borrows the process-wide ``SharedWhisper``.

    One ``TranscriptionFrame`` (language fr) per decoded segment with ``frame.result``
    set to the ``AsrResult`` (``asr_ms``, ``queue_ms``, confidences, ``early``).
    Rejected or empty segments produce no frame, but ``on_asr_result`` fires for every
    segment so the flow can count "please repeat" cases. ``vocabulary()`` is called per
    decode and sent as the Whisper prompt. ``vad`` (the call's ``SharedSileroVAD``)
    tells how long the current pause has lasted; without it there is no early decode.
    ``new_turn()`` (called by the flow when it routes) starts afresh.
    """

    def __init__(
        self,
        shared: SharedWhisper,
        vocabulary: Callable[[], str | None] | None = None,
        vad: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("audio_passthrough", False)  # nothing downstream uses caller audio
        super().__init__(settings=STTSettings(model=str(shared.model_dir), language=shared.language), **kwargs)
        self._shared = shared
        self._vocabulary = vocabulary
        self._vad = vad
        self._language = Language(shared.language) if shared.language in Language._value2member_map_ else None
        self._register_event_handler("on_asr_result")
        self._register_event_handler("on_asr_busy")
        self._register_event_handler("on_asr_fault")
        self.speech_enabled = True
        self._turn = 0
        self._turn_audio = bytearray()
        self._turn_segments = 0
        self._seq = 0
        self._early: asyncio.Task[AsrResult] | None = None  # decode started at the start of a pause
        self.early_used = 0
        self.early_dropped = 0
        # (turn, decode) of the segment decode waiting for a slot, if any
        self._queued: tuple[int, asyncio.Task[AsrResult]] | None = None
        self.superseded = 0  # queued decodes dropped because the caller went on

    @property
    def wants_wav_segments(self) -> bool:
        return False  # raw PCM16: Whisper reads the buffer directly

    async def setup(self, setup) -> None:
        await super().setup(setup)
        # Audio kept while nobody speaks = the pre-roll before the VAD's start (which fires
        # ~0.5 s into speech). pipecat keeps 1 s, i.e. ~0.5 s of lead-in: Whisper base then
        # heard "Merci, au revoir" as "Merci pour le droit." (fine with >= 1 s of lead-in on one
        # CPU; on another the same clip failed at every lead-in: short goodbyes stay fragile).
        self._audio_buffer_size_1s = int(PRE_ROLL_S * self.sample_rate) * 2

    def can_generate_metrics(self) -> bool:
        return True

    def new_turn(self) -> None:
        """The flow routed the caller's turn: the next speech starts a new one."""
        self._turn += 1
        self._turn_audio.clear()
        self._turn_segments = 0

    # ------------------------------------------------------------ segments
    def _prompt(self) -> str | None:
        if self._vocabulary is None:
            return None
        try:
            return self._vocabulary()
        except Exception:  # a flow bug must not cost the transcript
            log.exception("vocabulary() failed; transcribing without prompt")
            return None

    def _turn_pcm(self, segment: bytes) -> bytes:
        return bytes(self._turn_audio) + segment + self._trailing_silence()

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        await super().process_audio_frame(frame, direction)
        if not self._user_speaking or self._vad is None:
            return
        quiet = self._vad.quiet_secs
        if quiet <= 0.0:
            if self._early is not None:  # the caller went on: that decode is for a shorter turn
                self._drop_early()
        elif (quiet >= EARLY_SECS and self._early is None and self.speech_enabled and self.is_usable
              and self._shared.idle() and self._fits_turn(len(self._audio_buffer))):
            pcm = self._turn_pcm(bytes(self._audio_buffer))
            self._early = asyncio.ensure_future(self._shared.atranscribe(pcm, self._prompt(), speculative=True))

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            self._release(early)

    def _release(self, early: asyncio.Task[AsrResult]) -> None:
        """An early decode that will not be used: it finishes in its slot; log it like the others."""
        self.early_dropped += 1

        def report(task: asyncio.Task[AsrResult]) -> None:
            if task.cancelled():
                return
            if task.exception() is not None:
                log.warning("an early decode that was not needed failed: %r", task.exception())
                return
            _log_result(task.result(), " [early, unused]")

        early.add_done_callback(report)

    def _left_queue(self, decode: asyncio.Task[AsrResult]) -> None:
        if self._queued is not None and self._queued[1] is decode:
            self._queued = None

    def _fits_turn(self, segment_bytes: int) -> bool:
        return len(self._turn_audio) + segment_bytes <= MAX_TURN_AUDIO_S * 2 * self.sample_rate

    async def cleanup(self) -> None:
        self._drop_early()
        await super().cleanup()

    async def _handle_user_started_speaking(self, frame) -> None:
        self._drop_early()
        queued, self._queued = self._queued, None
        if queued is not None and not queued[1].done() and self._superseded(queued[0], speaking=True):
            queued[1].cancel()  # the caller goes on: this turn will be decoded whole at its next pause
        await super()._handle_user_started_speaking(frame)

    def _superseded(self, turn: int, speaking: bool = False) -> bool:
        """The caller is talking again in this turn, which will be decoded whole at its next pause."""
        return ((speaking or self._user_speaking) and turn == self._turn
                and len(self._turn_audio) <= SUPERSEDE_MAX_S * 2 * self.sample_rate)

    async def _handle_user_stopped_speaking(self, frame) -> None:
        self._user_speaking = False
        segment = bytes(self._audio_buffer)
        self._audio_buffer.clear()
        early, self._early = self._early, None
        fits = self._fits_turn(len(segment))
        if early is not None and (not fits or not self.is_usable or not self.speech_enabled):
            self._release(early)  # started with audio this segment will not be decoded with
            early = None
        if not self.is_usable or not self.speech_enabled:
            return
        if early is None and not self._shared.admission.admit_decode(self._shared.waiting, time.monotonic()):
            self.speech_enabled = False
            self._shared.admission.degrade_call()
            log.warning("ASR queue full (%d waiting): call moves to the keypad menu", self._shared.waiting)
            await self._call_event_handler("on_asr_busy")
            return
        # pipecat's buffer restarts at the VAD stop and keeps the pre-roll while quiet, so
        # after a short pause it holds exactly the audio since the previous segment.
        if not fits:
            self._turn_audio.clear()
            self._turn_segments = 0
        pcm = _Segment(self._turn_pcm(segment))
        self._turn_audio += segment
        self._turn_segments += 1
        self._seq += 1
        pcm.turn, pcm.segments, pcm.seq, pcm.early = self._turn, self._turn_segments, self._seq, early
        self._record_stt_audio_usage(pcm)
        await self.emit_stt_usage_metrics()
        await self._segment_queue.put(pcm)

    async def _fault(self, fault: StageFault) -> None:
        """Whisper raised or missed its deadline: no more decoding for this call (the flow
        takes it to the keypad menu), and the call is told once."""
        if not self.speech_enabled:
            return
        self.speech_enabled = False
        self._drop_early()
        log.warning("call leaves speech recognition: %s", fault)
        await self._call_event_handler("on_asr_fault", fault)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        if self.sample_rate != PIPELINE_IN_RATE:
            yield ErrorFrame(f"WhisperSTT needs {PIPELINE_IN_RATE} Hz input, got {self.sample_rate} Hz")
            return
        turn, segments, seq = (getattr(audio, "turn", self._turn), getattr(audio, "segments", 1),
                               getattr(audio, "seq", self._seq))
        early: asyncio.Task[AsrResult] | None = getattr(audio, "early", None)
        if not self.speech_enabled:  # queued before the call left speech (busy, fault): nobody reads it now
            if early is not None:
                self._release(early)
            return
        if seq < self._seq and turn == self._turn and self._turn_segments > segments:
            if early is not None:
                self._release(early)
            return  # a newer decode of this same turn is queued: skip the stale one
        if early is None and self._superseded(turn):
            self.superseded += 1
            log.info("asr %.2fs audio: skipped, the caller went on", len(audio) / 2 / self.sample_rate)
            return
        await self.start_processing_metrics()
        try:
            if early is not None:
                res = await early
                res.early = True
                self.early_used += 1
            else:
                decode = asyncio.ensure_future(self._shared.atranscribe(
                    bytes(audio), self._prompt(), on_start=lambda: self._left_queue(decode)))
                self._queued = (turn, decode)
                try:
                    res = await decode
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling() or not decode.cancelled():
                        raise  # the call is ending, not a superseded decode
                    self.superseded += 1
                    log.info("asr %.2fs audio: skipped, the caller went on", len(audio) / 2 / self.sample_rate)
                    return
                finally:
                    self._left_queue(decode)
        except StageFault as fault:
            await self._fault(fault)
            return
        finally:
            await self.stop_processing_metrics()
        res.turn, res.segments = turn, segments
        _log_result(res, (f" [turn so far, {segments} segments]" if segments > 1 else "")
                    + (" [early]" if res.early else ""))
        await self._call_event_handler("on_asr_result", res)
        if res.text:
            yield TranscriptionFrame(res.text, self._user_id, time_now_iso8601(), self._language, result=res)
