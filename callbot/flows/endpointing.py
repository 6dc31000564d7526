"""When is the caller's turn over? A pure policy, unit-tested with plain numbers.

The VAD only reports short pauses (``PAUSE_SECS``): each pause closes a speech segment,
which Whisper decodes at once (or since ``EARLY_SECS`` into the pause, when a decode slot
was free: ``speech/stt.py``), while the caller may still go on. The turn ends
when the silence since the end of speech reaches ``wait_secs(...)``:

- the node's hint (``Listen.end_of_turn_secs``, e.g. 0.8 s at the open greeting, 1.5-2 s
  while dictating an address or a phone number) is the patience for a turn that sounds
  unfinished, and is always honoured for dictation (hints above ``DICTATION_SECS``);
- a transcript that reads as a finished sentence ends the turn after ``FAST_SECS``
  (normally already elapsed when Whisper answers: the pause plus the decode);
- a transcript that ends on a word French speakers do not stop on ("je voudrais", "de
  la", "et", "euh", a trailing comma...) keeps the full hint;
- while a value is dictated, the hint is honoured until the value reads as complete
  (``done_secs``): ten digits of a phone number end the turn like a finished sentence, a
  number + street type + name waits ``ADDRESS_SECS``, any other finished sentence half the hint
  (``SENTENCE_SECS`` at least: "en quelques phrases" keeps most of its 2 s), free text only from
  four words; digits short of a phone number, or a bare "rue Victor Hugo", keep the whole hint. Before
  this, every dictated answer waited the full 1.5-2 s (measured: 1.55 s voice-to-voice for
  a whole address, the slowest turns of ``scripts/bench-load``).

Why not Smart Turn v3 (bundled with pipecat): on the project's French fixtures it scored
utterances cut in the middle as complete (p = 0.79-0.99, 12/12), so it could not tell
the cases apart, and it costs 40-70 ms of CPU per turn on this machine (docs/performance.md).
"""

from __future__ import annotations

import re
import unicodedata

from callbot.flows.slots import parse_phone
from callbot.flows.text import words_to_digits

PAUSE_SECS = 0.25  # VAD stop: closes a segment (its decode may have started already)
EARLY_SECS = 0.06  # quiet before a speculative decode starts on a free recogniser (2 VAD windows)
FAST_SECS = 0.35  # silence that ends a turn whose transcript reads as finished
DICTATION_SECS = 1.0  # hints above this are dictation: wait them out, unless the value reads complete
ADDRESS_SECS = 0.8  # "12 rue Victor Hugo": a landmark may still follow ("... devant la boulangerie")
SENTENCE_SECS = 0.9  # a finished sentence of free text waits at least this (half the hint above it)
_STREET = re.compile(r"\b(?:rue|avenue|av|boulevard|bd|place|chemin|impasse|allee|route|quai|square|cours"
                     r"|passage|lotissement|residence|rond point|sentier|hameau|lieu dit|cite|esplanade"
                     r"|promenade)\b")

# Words a French sentence does not end on (after accent folding, lower case).
_CONTINUATION = set("""
le la les l un une des du de d au aux a à et ou mais donc car que qu qui quoi dont ni
je j tu il elle on nous vous ils elles me m te t se s ce c ça ca cet cette ces
mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs
pour par sur sous dans avec sans chez vers entre depuis pendant avant apres contre
en y ne n pas plus tres trop bien aussi encore
est suis es sommes etes sont ai as avons avez ont voudrais voudrait veux voulais
vais va allez faut fait faire dire peux pouvez pourriez souhaite souhaiterais cherche
euh heu hum bah ben bon alors enfin bref comment
bonjour allo oui non numero rue avenue boulevard place chemin
accord ok okay entendu
""".split())  # "d'accord", "ok": an acknowledgement, then the request ("d'accord, merci, au revoir")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def sounds_unfinished(text: str) -> bool:
    """True when the transcript stops where a French sentence would not."""
    t = text.strip()
    if not t:
        return True
    if t.endswith((",", "...", "…", "-", ":", ";")):
        return True
    words = re.findall(r"[a-z0-9]+", _fold(t))
    if not words:
        return True
    if len(words) == 1 and words[0] in ("oui", "non"):
        return False  # a complete answer to a yes/no question
    return words[-1] in _CONTINUATION


def done_secs(slot_type: str | None, text: str, patience: float) -> float | None:
    """How long to wait after a dictated value that reads complete (None: not complete yet)."""
    folded = _fold(text)
    sentence = max(SENTENCE_SECS, patience / 2)
    long_enough = len(re.findall(r"[a-z0-9]+", folded)) >= 4
    if slot_type == "phone":
        if parse_phone(text) is not None:
            return FAST_SECS
        return None if re.search(r"\d", words_to_digits(folded)) else sentence  # digits: still dictating
    if slot_type == "address":
        folded = words_to_digits(folded)
        street = _STREET.search(folded)
        if street and folded[street.end():].split() and re.search(r"\d", folded[:street.start()]):
            return ADDRESS_SECS  # "12 rue Victor Hugo"
        if street or re.search(r"\d", folded):
            return sentence if long_enough else None  # "rue Victor Hugo": the number may follow
        return sentence  # a landmark, or an answer about something else ("oui, exactement")
    return sentence if slot_type == "text" and long_enough else None


def wait_secs(text: str, hint: float | None, default: float, slot_type: str | None = None) -> float:
    """Silence after the end of speech (s) before the turn is over, given what was heard."""
    patience = hint if hint is not None else default
    if sounds_unfinished(text):
        return patience
    if patience > DICTATION_SECS:
        done = done_secs(slot_type, text, patience)
        return patience if done is None else min(patience, done)
    return min(patience, FAST_SECS)
