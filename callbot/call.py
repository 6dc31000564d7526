"""One call, end to end: the place to read first.

    telephony transport (audio in 16 kHz, digits)
      -> Silero VAD -> Whisper STT (shared model, off the event loop)
      -> FlowProcessor (pure flow engine: what to say, how to listen, when to end)
      -> CachedTTS (pre-rendered prompts, synthesis for the rest)
      -> telephony transport (audio out 8 kHz)

``run_call`` owns the call's life: it records ``call_started``, runs the
pipeline until the flow ends the call or the caller leaves, hangs up or
transfers through the provider's ``CallControl``, and always records
``call_ended`` in ``finally``.

Cost per call matters (docs/performance.md): the Silero session is shared by all
calls (``speech/vad.py``), the VAD only detects short pauses (``PAUSE_SECS``; the
flow decides when a turn is over), caller audio stops at the recogniser, and pipecat's
turn-tracking observer is off (the flow records its own latency events). Past the
recogniser's capacity (``AsrAdmission``) a call is still answered at once, in keypad mode.

Faults never leave dead air: a recogniser or synthesis that raises or misses its deadline
(``faults.py``) moves the call to the keypad menu after a pre-rendered apology, and the
watchdog (``watchdog.py``) ends a call that runs too long or in which nothing happens, with a
pre-rendered goodbye; ``call_ended`` then says ``watchdog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from callbot import events as ev
from callbot.constants import PIPELINE_IN_RATE, PIPELINE_OUT_RATE
from callbot.flows.endpointing import PAUSE_SECS
from callbot.flows.text import fold
from callbot.flow_bridge import FlowProcessor
from callbot.flows.types import CallContext, Turn
from callbot.recorder import CallRecorder
from callbot.runtime import Runtime
from callbot.speech.stt import WhisperSTT
from callbot.speech.tts import CachedTTS
from callbot.speech.vad import SharedSileroVAD
from callbot.switchboard.handover import HANDED_OFF, hand_over, resume
from callbot.telephony.base import CallControl, CallInfo
from callbot.watchdog import ActivityProbe, CallWatchdog, Verdict, watch

log = logging.getLogger(__name__)
# how the SIP stack says the line was lost (no RTP for ``sip_media_timeout``), not hung up: end reason "timeout"
LINE_LOST = ("rtp stream error", "timeout", "timed out")
CANCEL_GRACE_S = 5.0  # a pipeline the watchdog cancelled gets this long to stop, then its task is cancelled
GOODBYE_GRACE_S = 2.0  # the watchdog's goodbye may take its length plus this
HANGUP_MAX_S = 20.0  # the watchdog's hang-up (Twilio waits up to 8 s for its playback mark, then REST)


async def run_pipeline(pipeline: Pipeline, transport: BaseTransport, watchdog: CallWatchdog | None = None,
                       progress: Callable[[], int] = lambda: 0) -> Verdict | None:
    """Run a call's pipeline until it ends or the peer leaves (``on_client_disconnected``).

    With a ``watchdog``: also until it says the call must end (``progress()``: the call's event
    count); the pipeline is then cancelled — its task too if it does not stop within
    ``CANCEL_GRACE_S``, a wedged stage must not keep the call — and the verdict returned.
    """
    worker = PipelineWorker(pipeline, params=PipelineParams(
        audio_in_sample_rate=PIPELINE_IN_RATE, audio_out_sample_rate=PIPELINE_OUT_RATE),
        enable_rtvi=False, enable_turn_tracking=False, idle_timeout_secs=None, check_dangling_tasks=False)

    @transport.event_handler("on_client_disconnected")
    async def _peer_left(*_args) -> None:
        await worker.cancel(reason="caller hung up")

    runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
    await runner.add_workers(worker)
    if watchdog is None or not watchdog.enabled:
        await runner.run()
        return None
    run = asyncio.ensure_future(runner.run())
    dog = asyncio.ensure_future(watch(watchdog, progress))
    try:
        await asyncio.wait({run, dog}, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()  # the pipeline's own error, if any
            return None
        verdict = dog.result()
        log.warning("watchdog: %s: ending the call", verdict.detail)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.cancel(reason=f"watchdog: {verdict.detail}"), CANCEL_GRACE_S)
        if not (await asyncio.wait({run}, timeout=CANCEL_GRACE_S))[0]:
            log.error("the pipeline did not stop %.0f s after the watchdog cancelled it: cancelling its task",
                      CANCEL_GRACE_S)
            run.cancel()
        return verdict
    finally:
        for task in (run, dog):
            task.cancel()
        await asyncio.wait({run, dog}, timeout=CANCEL_GRACE_S)
        for task in (run, dog):
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.debug("%s after the call: %r", task, task.exception())  # retrieved: read or raised above


async def run_call(rt: Runtime, transport: BaseTransport, info: CallInfo, control: CallControl) -> None:
    recorder = CallRecorder(rt.store, info.call_id)
    flow = rt.flows.current  # the call keeps this version even if flows are reloaded meanwhile
    recorder.emit(ev.CallStarted(channel=info.channel, caller=info.caller, called=info.called,
                                 provider_call_id=info.provider_call_id, flow=flow.name, flow_version=flow.version,
                                 worker=rt.settings.worker_id))
    rt.active_calls[info.call_id] = info
    started = time.monotonic()
    reason, detail = "caller_hangup", ""
    final: Turn | None = None
    admission, speech = None, False
    try:
        session = flow.new_session(CallContext(caller=info.caller, called=info.called, channel=info.channel,
                                               now=rt.clock()))
        admission = rt.asr.admission
        now = time.monotonic()
        refusal = admission.refusal(now)
        speech = admission.admit_call(now)
        if not speech:
            log.warning("call %s: %s: keypad mode", info.call_id, refusal)
            recorder.emit(ev.Overload(what="asr_capacity", detail=str(refusal)))
            recorder.emit(ev.KeypadFallback(reason="asr_capacity", detail=str(refusal)))
        vad = SharedSileroVAD(sample_rate=PIPELINE_IN_RATE,
                              params=VADParams(stop_secs=min(PAUSE_SECS, rt.settings.end_of_turn_secs)))
        vad.enabled = speech
        stt = WhisperSTT(rt.asr, vocabulary=session.vocabulary, vad=vad)
        stt.speech_enabled = speech
        flow_proc = FlowProcessor(session, recorder, vad=vad, default_end_of_turn_secs=rt.settings.end_of_turn_secs,
                                  on_turn_routed=stt.new_turn, keypad_only=not speech,
                                  load_step=lambda: admission.step(time.monotonic(), rt.asr.waiting))
        tts = CachedTTS(rt.voice, rt.prompts, timeout_secs=rt.settings.tts_timeout_secs,
                        fault_text=flow.spec.messages.tts_fault, fault_inject=rt.settings.fault_inject)
        dog = CallWatchdog(rt.settings.max_call_secs, rt.settings.stuck_call_secs)

        def leave_speech() -> None:
            """A fault: this call decodes no more speech (and frees its speech admission)."""
            nonlocal speech
            if speech:
                admission.degrade_call()
            speech = vad.enabled = stt.speech_enabled = False

        @stt.event_handler("on_asr_fault")
        async def _asr_fault(_stt, fault) -> None:
            leave_speech()
            await flow_proc.on_fault("asr", fault.kind, fault.message)

        @tts.event_handler("on_tts_fault")
        async def _tts_fault(_tts, fault) -> None:
            leave_speech()
            await flow_proc.on_fault("tts", fault.kind, fault.message)

        @stt.event_handler("on_asr_result")
        async def _asr_result(_stt, result) -> None:
            if not result.text:
                await flow_proc.on_nothing_recognised()

        @stt.event_handler("on_asr_busy")
        async def _asr_busy(_stt) -> None:
            nonlocal speech
            speech = False
            vad.enabled = False
            await flow_proc.on_asr_busy()

        pipeline = Pipeline([
            transport.input(),
            ActivityProbe(dog),
            VADProcessor(vad_analyzer=vad),
            stt,
            flow_proc,
            tts,
            transport.output(),
        ])
        verdict = await run_pipeline(pipeline, transport, dog, progress=lambda: len(recorder.history))
        _raise_if_cancelled()

        final = flow_proc.final_turn
        await _callbacks_from_tickets(rt, recorder)
        if verdict is not None and final is not None:  # the flow had ended it: finish as it said
            recorder.emit(ev.ErrorEvent(code=f"watchdog_{verdict.reason}", message=verdict.detail, stage="call"))
        if verdict is not None and final is None:
            reason, detail = "watchdog", verdict.detail
            await _forced_end(rt, control, flow, info, recorder, session.node)
        elif final is None:
            reason, detail = _caller_end(control)
        elif final.transfer is not None:
            reason, detail = await hand_over(rt.switchboard, control, info, recorder, flow, final)
        else:
            reason, detail = "bot_hangup", final.hangup.reason if final.hangup else ""
            await control.hangup(detail)
    except asyncio.CancelledError as e:  # the worker stops (drain timeout, second SIGTERM: callbot/drain.py)
        if _caller_left(control):  # the caller had hung up already: the stop only cut the teardown short
            reason, detail = _caller_end(control)
        else:
            reason, detail = "error", _cancelled_detail(rt, e)
            recorder.emit(ev.ErrorEvent(code="worker_shutdown", message=detail, stage="call"))
        raise
    except Exception as e:
        reason, detail = "error", f"{type(e).__name__}: {e}"
        log.exception("call %s failed", info.call_id)
        recorder.emit(ev.ErrorEvent(code="call_failed", message=detail, stage="call"))
        try:
            await control.hangup("error")
        except Exception:
            log.exception("hang-up after error failed for %s", info.call_id)
    finally:
        if admission is not None:
            admission.release_call(speech)
        rt.active_calls.pop(info.call_id, None)
        if detail != HANDED_OFF:
            recorder.emit(ev.CallEnded(reason=reason, detail=detail, duration_s=time.monotonic() - started))


async def _forced_end(rt: Runtime, control: CallControl, flow, info: CallInfo, recorder: CallRecorder,
                      node: str) -> None:
    """The watchdog ended the call: its pre-rendered goodbye when the line still takes audio, then the
    hang-up, each bounded (the line may be what is stuck); ``call_ended`` follows in any case."""
    text = flow.spec.messages.forced_end
    pcm = rt.prompts.get(text) if text else None
    try:
        if pcm:
            recorder.emit(ev.BotSaid(text=text, node=node, cached=True))
            await asyncio.wait_for(control.play(pcm, rt.prompts.out_rate),
                                   len(pcm) / 2 / rt.prompts.out_rate + GOODBYE_GRACE_S)
        await asyncio.wait_for(control.hangup("watchdog"), HANGUP_MAX_S)
    except Exception as e:  # TimeoutError, a line already gone: the call is over either way
        log.warning("call %s: the watchdog's goodbye or hang-up did not complete: %s: %s", info.call_id,
                    type(e).__name__, e)


def record_rejected(rt: Runtime, info: CallInfo, status: int, why: str) -> None:
    """A call refused at admission still reached the bot: it is offered, not answered, and ends ``rejected``."""
    recorder = CallRecorder(rt.store, info.call_id)
    recorder.emit(ev.CallStarted(channel=info.channel, caller=info.caller, called=info.called,
                                 provider_call_id=info.provider_call_id, flow=rt.flows.current.name,
                                 flow_version=rt.flows.current.version, worker=rt.settings.worker_id))
    if status in (486, 503):
        recorder.emit(ev.Overload(what="sip_busy", detail=why))
    recorder.emit(ev.CallEnded(reason="rejected", detail=f"{status} {why}"))


async def resume_call(rt: Runtime, transport: BaseTransport, info: CallInfo, control: CallControl) -> None:
    """A call the provider failed to connect to an agent is back on a new stream (Twilio): same call id,
    same place in the queue; the flow does not start again."""
    recorder = CallRecorder(rt.store, info.call_id)
    rt.active_calls[info.call_id] = info
    started = time.monotonic()
    reason, detail = "caller_hangup", ""
    try:
        if rt.switchboard is None:
            raise RuntimeError("a call came back for the queue but the switchboard is off")
        reason, detail = await resume(rt.switchboard, control, info, recorder)
        _raise_if_cancelled()
    except asyncio.CancelledError as e:
        reason, detail = "error", _cancelled_detail(rt, e)
        recorder.emit(ev.ErrorEvent(code="worker_shutdown", message=detail, stage="queue"))
        raise
    except Exception as e:
        reason, detail = "error", f"{type(e).__name__}: {e}"
        log.exception("resumed call %s failed", info.call_id)
        recorder.emit(ev.ErrorEvent(code="resume_failed", message=detail, stage="queue"))
        await control.hangup("error")
    finally:
        rt.active_calls.pop(info.call_id, None)
        if detail != HANDED_OFF:
            recorder.emit(ev.CallEnded(reason=reason, detail=detail, duration_s=time.monotonic() - started))


def _caller_end(control: CallControl) -> tuple[str, str]:
    """How the line ended from the caller's side: ``timeout`` when it was lost (no RTP), else a hang-up."""
    lost = str(getattr(control, "end_reason", "") or "").lower()
    return ("timeout" if any(m in lost for m in LINE_LOST) else "caller_hangup"), lost


def _caller_left(control: CallControl) -> bool:
    try:
        return control.caller_gone.is_set()
    except Exception:  # a control without a line (tests): not known to have left
        return False


def _raise_if_cancelled() -> None:
    """pipecat ends a pipeline whose task is cancelled quietly (it returns): the cancellation goes on here,
    so the call ends as cut by the worker, not as hung up by the caller."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


def _cancelled_detail(rt: Runtime, e: asyncio.CancelledError) -> str:
    """The call was ended from outside: why, from the drain (``rt.stopping``) or the cancel message."""
    why = str(e.args[0]) if e.args and e.args[0] else ""
    if why.startswith("worker_shutdown"):
        return why
    return f"worker_shutdown: {rt.stopping or why or 'cancelled'}"


async def _callbacks_from_tickets(rt: Runtime, recorder: CallRecorder) -> None:
    """A flow's ``rappel`` ticket (out of hours, "rappelez-moi") is also a callback request on the console."""
    if rt.switchboard is None:
        return
    for e in list(recorder.history):
        if isinstance(e, ev.TicketCreated) and e.kind == "rappel" and e.fields.get("telephone"):
            service = str(e.fields.get("service") or "agent")
            if service.startswith("{") or service not in rt.flows.current.spec.services:
                service = "agent"
            slot = _slot(str(e.fields.get("creneau", "")))
            try:
                cb = await rt.switchboard.callbacks.add(service=service, number=str(e.fields["telephone"]),
                                                        call_id=recorder.call_id, reason="flow", slot=slot,
                                                        summary=str(e.fields.get("motif", "")))
            except Exception as err:  # the ticket itself is stored: say so, do not lose the call
                log.error("call %s: callback for ticket %s not queued: %s", recorder.call_id, e.ticket_id, err)
                continue
            recorder.emit(ev.CallbackRequested(callback_id=cb.id, service=service, number=cb.number,
                                               slot=slot, reason="flow"))


def _slot(said: str) -> str:
    """The caller's preferred time, in their words -> matin, apres_midi or indifferent."""
    text = fold(said)
    if "apres" in text or "soir" in text or "quatorze" in text or "seize" in text:
        return "apres_midi"
    return "matin" if "matin" in text or "avant midi" in text else "indifferent"
