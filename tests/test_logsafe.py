"""No transcript and no phone number in the logs unless debug logging is on."""

from __future__ import annotations

import logging

from callbot import events as ev
from callbot.logsafe import mask_number
from callbot.recorder import CallRecorder

SECRETS = ("0612345678", "612345678", "rue des Lilas", "Durand")


def emit_a_call() -> None:
    rec = CallRecorder(None, "c1")
    rec.emit(ev.CallStarted(channel="sip", caller="+33612345678", called="+33240000000"))
    rec.emit(ev.Transcript(text="j'habite 12 rue des Lilas, mon numéro est le 06 12 34 56 78", asr_ms=300))
    rec.emit(ev.IntentMatched(intent="eclairage", confidence=0.8, text="le lampadaire rue des Lilas"))
    rec.emit(ev.SlotFilled(slot="nom", value="Durand"))
    rec.emit(ev.TicketCreated(kind="eclairage", fields={"lieu": "12 rue des Lilas", "telephone": "0612345678"}))
    rec.emit(ev.CallbackRequested(callback_id="R1", service="agent", number="0612345678"))
    rec.emit(ev.CallEnded(reason="bot_hangup"))


def test_info_logs_carry_types_and_intents_but_no_personal_data(caplog):
    with caplog.at_level(logging.INFO, logger="callbot.call"):
        emit_a_call()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "eclairage" in text and "transcript" in text and "+336••••••78" in text
    for secret in SECRETS:
        assert secret not in text.replace(" ", ""), secret


def test_debug_logs_keep_everything_for_whoever_debugs(caplog):
    with caplog.at_level(logging.DEBUG, logger="callbot.call"):
        emit_a_call()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "rue des Lilas" in text and "+33612345678" in text


def test_mask_number():
    assert mask_number("+33612345678") == "+336••••••78"
    assert mask_number("06 12 34 56 78") == "06 1• •• •• 78"
    assert mask_number("caller") == "caller" and mask_number("1234") == "••••"
