"""Pure pieces of the latency work: end-of-turn policy, ASR admission, silence trimming."""

from __future__ import annotations

import numpy as np
import pytest

from callbot.admission import AsrAdmission
from callbot.flows.endpointing import ADDRESS_SECS, DICTATION_SECS, FAST_SECS, SENTENCE_SECS, sounds_unfinished, wait_secs
from callbot.speech.tts import KEEP_LEAD_S, KEEP_TAIL_S, trim_silence


@pytest.mark.parametrize("text", [
    "Bonjour, je voudrais connaître les horaires d'ouverture de la mairie.",
    "Non, merci.", "Oui.", "non", "Je voudrais un acte de naissance", "Il y a le feu dans l'immeuble d'à côté !",
])
def test_finished_sentences(text):
    assert not sounds_unfinished(text)


@pytest.mark.parametrize("text", [
    "", "Bonjour,", "Je voudrais", "je voudrais parler à", "Au douze rue", "C'est pour un acte de",
    "euh", "Bonjour", "Alors...", "le lampadaire et", "d'accord ?", "OK.",
])
def test_unfinished_sentences(text):
    assert sounds_unfinished(text)


def test_finished_text_ends_the_turn_early_at_open_questions():
    assert wait_secs("Je voudrais les horaires.", 0.8, 0.5) == FAST_SECS
    assert wait_secs("Je voudrais les horaires.", None, 0.5) == FAST_SECS


def test_unfinished_text_waits_for_the_node_hint_or_the_default():
    assert wait_secs("Je voudrais", 0.8, 0.5) == 0.8
    assert wait_secs("Je voudrais", None, 0.5) == 0.5


def test_dictation_hints_are_honoured_until_the_value_reads_complete():
    hint = DICTATION_SECS + 0.5
    assert wait_secs("Au douze rue Victor Hugo.", hint, 0.5) == hint  # no slot: the node's hint
    assert wait_secs("Au douze rue Victor Hugo.", hint, 0.5, "address") == ADDRESS_SECS
    assert wait_secs("rue Victor Hugo", hint, 0.5, "address") == hint  # the number may follow
    assert wait_secs("au douze rue de la", hint, 0.5, "address") == hint
    assert wait_secs("06 12 34 56 78", 1.8, 0.5, "phone") == FAST_SECS
    assert wait_secs("zéro six, douze, trente-quatre", 1.8, 0.5, "phone") == 1.8
    assert wait_secs("Le lampadaire devant chez moi clignote toute la nuit.", 1.5, 0.5, "text") == SENTENCE_SECS
    assert wait_secs("Le lampadaire devant chez moi clignote toute la nuit.", 2.4, 0.5, "text") == 1.2
    assert wait_secs("Le lampadaire devant", 1.5, 0.5, "text") == 1.5  # unfinished
    assert wait_secs("Le lampadaire.", 1.5, 0.5, "text") == 1.5  # too short to be the whole story
    assert wait_secs("C'est juste devant la boulangerie.", 1.5, 0.5, "address") == SENTENCE_SECS  # a landmark
    assert wait_secs("Oui, exactement.", 1.5, 0.5, "address") == SENTENCE_SECS  # no street, no number
    assert wait_secs("rue Victor Hugo", 1.5, 0.5, "address") == 1.5
    assert wait_secs("Je ne connais pas le numéro de téléphone.", 1.8, 0.5, "phone") == SENTENCE_SECS


def test_a_hint_shorter_than_the_fast_path_wins():
    assert wait_secs("Oui.", 0.2, 0.5) == 0.2


def test_admission_limits_speech_calls_and_counts_keypad_calls():
    a = AsrAdmission(max_calls=2)
    assert a.admit_call() and a.admit_call()
    assert not a.admit_call()
    assert (a.speech_calls, a.keypad_calls) == (2, 1)
    a.release_call(True)
    assert a.admit_call()  # a slot freed up
    a.release_call(False)
    assert a.keypad_calls == 0


def test_admission_without_limits_admits_everything():
    a = AsrAdmission()
    assert all(a.admit_call() for _ in range(100))
    assert a.admit_decode(waiting=1000)


def test_admission_refuses_decodes_past_the_queue_bound_and_degrades_the_call():
    a = AsrAdmission(max_calls=10, max_queue=3)
    assert a.admit_call()
    assert a.admit_decode(waiting=2)
    assert not a.admit_decode(waiting=3)
    assert a.refused_decodes == 1
    a.degrade_call()
    assert (a.speech_calls, a.keypad_calls) == (0, 1)
    a.release_call(False)
    assert a.snapshot()["keypad_calls"] == 0


def test_admission_follows_whisper_response_time():
    a = AsrAdmission(max_calls=10, max_response_s=1.2)
    assert a.admit_call(0.0) and a.admit_call(0.0)
    a.observe(0.5, now=1.0)
    assert a.response_s == 0.5  # the first decode sets the average
    for t in range(5):
        a.observe(3.0, now=2.0 + t)  # the CPU is saturated: replies come late
    assert a.response_s > 1.2
    assert not a.admit_call(7.0)
    assert "Whisper answers in" in a.refusal(7.0)
    for t in range(10):
        a.observe(0.6, now=8.0 + t)  # load went down
    assert a.admit_call(18.0)
    assert a.snapshot()["response_ms"] == round(a.response_s * 1000)


def test_calls_in_progress_leave_speech_when_whisper_is_drowning():
    a = AsrAdmission(max_response_s=2.5)
    assert a.admit_call(0.0)
    a.observe(6.0, now=1.0)
    assert a.admit_decode(waiting=0, now=2.0), "a lone speech call keeps speech, however slow"
    assert a.admit_call(0.0) is False  # a second caller is refused at the door (6 s > 2.5 s)...
    a.speech_calls = 2  # ...but say two were admitted before the slowdown
    assert not a.admit_decode(waiting=0, now=2.0)  # 6 s > 2 x 2.5 s: this segment is not queued
    for t in range(3):
        a.observe(2.0, now=3.0 + t)  # the backlog drains
    assert a.response_s < 5.0 and a.admit_decode(waiting=0, now=6.0)
    assert a.admit_decode(waiting=0, now=30.0)  # stale


def test_a_past_peak_does_not_lock_callers_out():
    a = AsrAdmission(max_response_s=1.0)
    a.observe(5.0, now=0.0)  # the last decode of a peak
    assert a.speech_calls == 0 and a.admit_call(1.0)  # nobody is using speech: always admitted
    assert not a.admit_call(2.0)  # one call runs and the average is recent and high
    assert a.admit_call(20.0)  # no decode for 20 s: the average is stale
    a.observe(0.4, now=21.0)
    assert a.response_s == pytest.approx(0.4)  # ... and restarts from the next decode


def test_trim_silence_keeps_a_little_around_the_speech():
    rate = 8000
    speech = (np.sin(np.arange(rate) / 3) * 8000).astype("<i2")
    pcm = np.concatenate([np.zeros(rate // 2, "<i2"), speech, np.zeros(rate, "<i2")]).tobytes()
    out = np.frombuffer(trim_silence(pcm, rate), "<i2")
    lead = np.flatnonzero(np.abs(out) > 200)[0]
    tail = len(out) - 1 - np.flatnonzero(np.abs(out) > 200)[-1]
    assert lead <= KEEP_LEAD_S * rate + 1
    assert tail <= KEEP_TAIL_S * rate + 1
    assert len(out) >= rate - 10  # the speech itself is untouched


def test_trim_silence_can_keep_one_side_and_leaves_silence_alone():
    rate = 8000
    pcm = np.concatenate([np.zeros(4000, "<i2"), np.full(800, 5000, "<i2"), np.zeros(4000, "<i2")]).tobytes()
    assert trim_silence(pcm, rate, lead=False, tail=False) == pcm
    assert len(trim_silence(pcm, rate, lead=False)) > 4000 * 2
    silent = bytes(1600)
    assert trim_silence(silent, rate) == silent


def test_the_machine_degrades_in_order():
    """normal -> brief prompts -> greedy decoding -> keypad menu, as Whisper's recent response time grows."""
    a = AsrAdmission(max_response_s=2.5, brief_response_s=0.8, greedy_response_s=1.2)
    assert a.admit_call(0.0)
    seen = []
    for t, response in enumerate((0.4, 0.9, 1.1, 1.6, 2.0, 3.0, 4.0, 5.0)):
        a.observe(response, now=float(t))
        seen.append(a.step(float(t)))
    assert seen == sorted(seen, key=("normal", "brief", "greedy", "keypad").index), seen
    assert seen[0] == "normal" and seen[-1] == "keypad" and {"brief", "greedy"} <= set(seen)
    assert a.step(100.0) == "normal"  # a stale average: back to normal


def test_queued_decodes_mean_greedy_and_zero_keeps_the_older_rule():
    a = AsrAdmission(brief_response_s=0.8, greedy_response_s=1.2)
    assert a.step(0.0, waiting=1) == "greedy"
    assert a.step(0.0, others_running=1) == "normal"  # a second decode alone is no saturation
    old = AsrAdmission()
    assert old.step(0.0, others_running=1) == "greedy" and old.step(0.0) == "normal"


def test_the_call_cap_alone_is_no_saturation():
    a = AsrAdmission(max_calls=2, max_response_s=2.5, brief_response_s=0.8, greedy_response_s=1.2)
    assert a.admit_call(0.0) and a.admit_call(0.0) and not a.admit_call(0.0)  # the third caller: keypad menu
    a.observe(0.4, now=0.0)
    assert a.step(0.5) == "normal"  # ... but the two speech calls are served in full
