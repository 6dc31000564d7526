"""Emergency detection on every caller turn, independent of the intent recogniser.

Recall first: a missed fire costs a life, a false alarm costs one repeated
question (the caller hears the emergency numbers and is asked whether to go on).
Two detectors, either one suffices:

* **danger words** (``DANGER``, lists by kind in ``danger_words.py``): fire, smoke,
  gas, not breathing, drowning, a knife, a collapsing balcony, a throat closing,
  "au secours"... matched clause by clause, so a danger said in the middle of
  another request ("je voulais les horaires mais ça sent le gaz") is caught. Words
  that are also ordinary ("feu", "tombé", "accident", "inondé") are ``WEAK``: they
  need the classifier's agreement. A benign context in the same clause ("feu
  d'artifice", "détecteur de fumée", "l'an dernier", "mort dans l'incendie",
  "réparée") turns a strong word weak; so does a request about a past event
  (``REQUEST``: "un décès à déclarer", "reporter la cérémonie") anywhere in the
  same stretch of speech, unless the caller says it is happening now.
* **a classifier** over the sentence's vectors (the recogniser's encoders),
  trained at load time on the flow's ``urgence`` examples against every other
  example. (Scoring each clause apart was measured: more false alarms, no more
  emergencies caught.) When the recogniser is sure of an ordinary intent, the
  classifier alone needs ``ALONE_SURE``.
* the intent recogniser's own ``urgence`` probability, as a third vote.

Whisper's slips of long danger words ("un sandie" for "un incendie") are matched
through the lexical scorer's French phonetic spelling.

Thresholds were set on ``tests/data/tune.tsv`` (every emergency caught, false
alarms under 2 %) and judged on ``tests/data/callers.tsv``; see
``docs/understanding.md``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from callbot.flows.intents import phonetic
from callbot.flows.text import fold
from callbot.understanding import logreg
from callbot.understanding.danger_words import (BENIGN, CONNECTORS, DANGER, ESTATE_KINDS, FUZZY, LANDMARKS,
                                                 NOT_FUZZY, NOW, PAST, PLACE_ALARMS, PLACE_KINDS, PLACE_OF,
                                                 PLACE_TITLES, REQUEST, SAFE, WEAK)
from callbot.understanding.encoders import Encoder
from callbot.understanding.text import for_model

ALONE = 0.90  # classifier probability that is an emergency by itself (sentences of 3 words or more)
WITH_WORD = 0.60  # ... when a danger word is present
WITH_BENIGN = 0.95  # ... when an ordinary context is present ("détecteur de fumée", "l'an dernier")
INTENT = 0.40  # the intent recogniser's own probability of ``urgence`` (another, independent vote)
MIN_WORDS = 3
SURE_OTHER = 0.9  # the recogniser is this sure of an ordinary intent: weak words need ALONE ...
ALONE_SURE = 0.97  # ... and the classifier alone needs this ("un poteau cogné par une voiture" is lighting)
MIN_POSITIVES, MIN_NEGATIVES = 20, 100  # fewer examples: danger words only (a tiny classifier fires on names)


def _compile(parts: list[str]) -> re.Pattern:
    return re.compile(r"(?:^| )(?:" + "|".join(parts) + r")")


_DANGER, _WEAK, _BENIGN = _compile(DANGER), _compile(WEAK), _compile(BENIGN + REQUEST)
_REQUEST = _compile(REQUEST)
_PAST, _NOW, _SAFE = _compile(PAST), _compile(NOW), _compile(SAFE)
_FUZZY = tuple(phonetic(w) for w in FUZZY)
_NOT_JOINED = frozenset({"et", "est", "ou", "a", "au"})  # "noir et" is no "noyade"


def _near(a: str, b: str) -> bool:
    """Edit distance <= 1 (one sound added, dropped or changed)."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    if len(a) > len(b):
        a, b = b, a
    return any(b[:i] + b[i + 1:] == a for i in range(len(b)))


@lru_cache(maxsize=4096)  # the same clauses are asked about again within a turn
def fuzzy_danger(folded: str) -> str | None:
    words = folded.split()
    grams = words + [a + b for a, b in zip(words, words[1:])  # "un sandie" -> "unsandie"
                     if b not in _NOT_JOINED]
    for w in grams:
        if len(w) < 6 or w in NOT_FUZZY:
            continue
        code = phonetic(w)
        if len(code) >= 4 and any(_near(code, f) for f in _FUZZY):
            return w
    return None


_CONNECTORS = re.compile(r" (?:" + "|".join(CONNECTORS) + r") ")
_OF = "|".join(PLACE_OF)
# group 1: "rue du ", "résidence les "; group 2: the name, with a title and one "de X" ("docteur Samu", "mort aux loups")
_PLACE = re.compile(rf"(?<= )((?:(?:{'|'.join(PLACE_KINDS)}) (?:{_OF})|(?:{'|'.join(ESTATE_KINDS)}) (?:{_OF}|les)) )"
                    rf"((?:{PLACE_TITLES} )?\w+(?: (?:{_OF}) \w+)?)(?= )")
_LANDMARK = re.compile(r"(?<= )(?:" + "|".join(LANDMARKS) + r")(?= )")
_PLACE_ALARM = re.compile(r"\b(?:" + "|".join(PLACE_ALARMS) + r")\b")
NEUTRAL_NAME = "lilas"


def neutral_places(text: str) -> str:
    """``text`` folded, with the names of streets and places that hold a danger word replaced by a
    neutral one ("12 rue de l'incendie" -> "12 rue de l lilas"), or ``text`` itself when it has none.
    A danger said beside the address stays: "le feu rue du Moulin", "la rue du Gaz, ça sent le gaz"."""
    folded = " " + fold(text) + " "
    out = _PLACE.sub(lambda m: m.group(1) + NEUTRAL_NAME if _PLACE_ALARM.search(m.group(2)) else m.group(0), folded)
    out = _LANDMARK.sub(NEUTRAL_NAME, out)
    return out.strip() if out != folded else text


def _benign(folded: str, danger) -> bool:
    """An ordinary context that concerns the danger words: in the same clause as one of them (a
    "facture" in "c'est pour la facture, mais l'eau monte chez ma voisine" does not count). With no
    danger word at all, in the last thing said ("c'est pour la cérémonie, mais là ..." is news)."""
    stretches = clauses(folded)  # ``folded`` has no punctuation left: split at the connectors only
    alarming = [bool(_DANGER.search(c) or _WEAK.search(c) or fuzzy_danger(c)) for c in stretches]
    if not danger and any(_SAFE.search(c) and not any(alarming[i + 1:]) for i, c in enumerate(stretches)):
        return True  # "tout le monde va bien", not followed by a new danger
    if not _ordinary(folded, folded):
        return False
    if any(alarming):
        return any(_ordinary(c, folded) for c, a in zip(stretches, alarming) if a)
    return bool(danger or _WEAK.search(folded)) or _ordinary(stretches[-1], folded)


def _ordinary(clause: str, folded: str) -> bool:
    """An ordinary context in ``clause``; a past or habitual one only if nothing in the whole turn says
    it is happening now."""
    return bool(_BENIGN.search(clause) or (_PAST.search(clause) and not _NOW.search(folded)))


def segments(text: str) -> list[list[str]]:
    """Stretches of speech (split at the words callers use to change subject), each as its folded
    clauses (split at punctuation)."""
    out: list[list[str]] = [[]]
    for part in re.split(r"[,.;:!?]", text):
        for i, c in enumerate(_CONNECTORS.split(" " + fold(part) + " ")):
            if i:
                out.append([])
            if c.strip():
                out[-1].append(" " + c.strip() + " ")
    return [s for s in out if s] or [[" " + fold(text) + " "]]


def clauses(text: str) -> list[str]:
    """Folded clauses, split at punctuation and at the words callers use to change subject."""
    return [c for s in segments(text) for c in s]


@dataclass(frozen=True)
class EmergencyHit:
    """Why a turn was judged an emergency (``reason``: words, classifier, or both)."""

    score: float
    reason: str
    words: str = ""


class EmergencyDetector:
    """Built once per flow version; read-only afterwards (shared by every call)."""

    def __init__(self, positives: Sequence[str], negatives: Sequence[str], *, encoders: Sequence[Encoder] = (),
                 alone: float = ALONE, with_word: float = WITH_WORD) -> None:
        self.alone, self.with_word = alone, with_word
        self._pos, self._neg = list(positives), list(negatives)
        self._encoders = tuple(encoders)
        self._model: logreg.LogReg | None = None
        self._mean: np.ndarray | None = None
        self._lock = threading.Lock()

    def ensure_trained(self) -> None:
        if self._model is not None or not self._encoders:
            return
        if len(self._pos) < MIN_POSITIVES or len(self._neg) < MIN_NEGATIVES:
            self._encoders = ()
            return
        with self._lock:
            if self._model is not None:
                return
            x = self._vectors(self._pos + self._neg)
            self._mean = x.mean(axis=0)
            y = np.array([1] * len(self._pos) + [0] * len(self._neg))
            self._model = logreg.fit(x - self._mean, y, 2, l2=1e-4, epochs=300)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        prepared = [for_model(t) for t in texts]
        return np.concatenate([e.embed(prepared) for e in self._encoders], axis=1)

    def probability(self, text: str) -> float:
        """Classifier probability that the sentence reports an emergency."""
        self.ensure_trained()
        if self._model is None:
            return 0.0
        return float(self._model.proba(self._vectors([text]) - self._mean)[0, 1])

    def prepare(self, text: str) -> None:
        """Embed the sentence ahead (from a worker thread): ``detect`` then costs no model time."""
        self.ensure_trained()
        if self._encoders:
            self._vectors([text])

    def detect(self, text: str, intent_probability: float = 0.0, other_intent: float = 0.0) -> EmergencyHit | None:
        """An emergency, or None. ``intent_probability``: the recogniser's ``urgence`` probability;
        ``other_intent``: its confidence in its best *other* intent ("un arbre est tombé sur la
        route" is a road problem: a weak word then needs the classifier's full agreement)."""
        folded = " " + fold(text) + " "
        now = _NOW.search(folded)
        for stretch in segments(text):  # "c'est pour la facture, mais ça sent le gaz": judged apart
            request = not now and _REQUEST.search(" ".join(stretch))  # "un décès à déclarer, mort dans l'incendie"
            for clause in stretch:
                strong = _DANGER.search(clause)
                word = strong.group().strip() if strong else (fuzzy_danger(clause) or "")
                if word and not request and not _ordinary(clause, folded):
                    return EmergencyHit(1.0, "words", word)
        strong = _DANGER.search(folded) or fuzzy_danger(folded)
        benign = _benign(folded, strong)
        if strong and not benign and not isinstance(strong, str):  # a danger said across a pause or a comma
            return EmergencyHit(1.0, "words", strong.group().strip())
        p = self.probability(text)
        sure = other_intent >= SURE_OTHER  # the recogniser is sure of an ordinary intent
        if benign:
            return EmergencyHit(p, "classifier") if p >= max(WITH_BENIGN, ALONE_SURE if sure else 0) else None
        if p >= max(self.alone, ALONE_SURE if sure else 0) and len(folded.split()) >= MIN_WORDS:
            return EmergencyHit(p, "classifier")
        weak = _WEAK.search(folded)
        if weak and p >= (self.alone if sure else self.with_word):
            return EmergencyHit(p, "words+classifier", weak.group().strip())
        if intent_probability >= INTENT:
            return EmergencyHit(intent_probability, "intent")
        return None
