"""Intent recogniser: caller text -> ranked intents with a calibrated confidence.

Two views of the sentence, joined:
* **meaning**: the sentence's vectors from two small multilingual encoders
  (``encoders.py``), centred on the examples' mean, fed to a logistic regression
  trained at load time on the flow's own examples (and keywords). It generalises
  to wordings no example has ("ma fille aura seize ans, il y a un papier à faire").
* **form**: the lexical scorer of ``flows/intents.py`` (stems, bigrams, French
  phonetic n-grams), which catches Whisper's slips ("acte de naissant") and rare
  words the encoders blur.

The two are summed in logit space (``LEXICAL_WEIGHT``, measured on the tuning
set) and turned into probabilities over the intents allowed at that point of the
conversation. The top probability is the confidence the engine compares with
``settings.intent_threshold``; ``Match.ambiguous`` asks "X, or Y?" when two
intents share most of it. A clerk fixes a miss by adding an example to the YAML:
the classifier is retrained at the next load (seconds; vectors are cached).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from callbot.flows.intents import LexicalScorer, Match
from callbot.understanding import logreg
from callbot.understanding.encoders import Encoder
from callbot.understanding.text import for_model

log = logging.getLogger(__name__)

LEXICAL_WEIGHT = 3.0  # logits added per unit of lexical score (0..~1.4); tuned on tests/data/tune.tsv
# nearest example: logits added per unit of cosine above NEAREST_FROM (an example said almost word for
# word is strong evidence the regression smooths away). tune.tsv 0.954 -> 0.963, tune_emergency 0.825 -> 0.850;
# a steeper slope (25 from 0.65) gained 1 more point but settled vague requests ("je voudrais un acte").
NEAREST_WEIGHT, NEAREST_FROM = 10.0, 0.7
KEYWORD_WEIGHT = 0.5  # a keyword is a (weaker) training example too
HEARD_WEIGHT = 0.5  # so is Whisper's transcript of an example (``<flow>.heard.tsv``)
L2 = 1e-5
EPOCHS = 300
# Below this many examples a classifier over sentence vectors is not trusted: with a handful of
# intents and no "anything else" class, its softmax hands a name or a date to some intent.
MIN_EXAMPLES = 100


class Features:
    """Sentence -> [e5 | use] row, centred on the training examples' mean."""

    def __init__(self, encoders: Sequence[Encoder]) -> None:
        self.encoders = tuple(encoders)
        self.mean: np.ndarray | None = None

    def raw(self, texts: list[str]) -> np.ndarray:
        prepared = [for_model(t) for t in texts]
        return np.concatenate([e.embed(prepared) for e in self.encoders], axis=1)

    def __call__(self, texts: list[str]) -> np.ndarray:
        x = self.raw(texts)
        return x - self.mean if self.mean is not None else x


class Recogniser:
    """Built once per flow version; read-only afterwards (safe to share across calls and threads)."""

    def __init__(self, intents: dict[str, tuple[list[str], list[str]]], threshold: float = 0.5,
                 encoders: Sequence[Encoder] = (), heard: Sequence[tuple[str, str]] = ()) -> None:
        self.threshold = threshold
        self.intents = tuple(intents)
        self._index = {n: i for i, n in enumerate(self.intents)}
        self.lexical = LexicalScorer(intents)
        enough = sum(len(ex) for ex, _ in intents.values()) >= MIN_EXAMPLES
        self.features = Features(encoders) if encoders and enough else None
        self._model: logreg.LogReg | None = None
        self._examples = np.zeros((0, 0), dtype=np.float32)  # unit vectors of the examples, for the nearest one
        self._example_labels = np.zeros(0, dtype=int)
        self._lock = threading.Lock()
        self._data = intents
        self._heard = [(t, n) for t, n in heard if n in self._index]  # what Whisper made of examples
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # the engine scores a sentence several times
        self._recent_lock = threading.Lock()

    # --- training ---------------------------------------------------------------------------------
    def ensure_trained(self) -> None:
        """Embed the examples and fit the classifier (once; later calls return at once)."""
        if self.features is None or self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            t0 = time.perf_counter()
            texts, labels, weights = [], [], []
            for name, (examples, keywords) in self._data.items():
                for ex in examples:
                    texts.append(ex), labels.append(self._index[name]), weights.append(1.0)
                for kw in keywords:
                    texts.append(kw), labels.append(self._index[name]), weights.append(KEYWORD_WEIGHT)
            for text, name in self._heard:
                texts.append(text), labels.append(self._index[name]), weights.append(HEARD_WEIGHT)
            if not texts:
                self.features = None
                return
            x = self.features.raw(texts)
            is_example = np.array(weights) == 1.0
            unit = x[is_example] / np.linalg.norm(x[is_example], axis=1, keepdims=True)
            self._examples, self._example_labels = unit.astype(np.float32), np.array(labels)[is_example]
            self.features.mean = x.mean(axis=0)
            x = x - self.features.mean
            self._model = logreg.fit(x, np.array(labels), len(self.intents), weight=np.array(weights, np.float32),
                                     l2=L2, epochs=EPOCHS)
            log.info("intent classifier: %d intents, %d examples, trained in %.1f s", len(self.intents),
                     len(texts), time.perf_counter() - t0)

    def prepare(self, text: str) -> None:
        """Compute (and memoise) the sentence's vectors: call from a worker thread before ``recognise``."""
        self.logits(text)

    # --- scoring ----------------------------------------------------------------------------------
    def logits(self, text: str) -> np.ndarray:
        """Fused scores over all intents: classifier logits + lexical score x weight."""
        z = self._recent.get(text)
        if z is None:
            z = self._logits(text)
            with self._recent_lock:
                self._recent[text] = z
                while len(self._recent) > 256:
                    self._recent.popitem(last=False)
        return z

    def _logits(self, text: str) -> np.ndarray:
        lex = self.lexical.scores(text)
        z = np.zeros(len(self.intents), dtype=np.float32)
        if self.features is not None:
            self.ensure_trained()
            if self._model is not None:
                raw = self.features.raw([text])[0]
                z = self._model.logits((raw - self.features.mean)[None, :])[0]
                sims = self._examples @ (raw / max(float(np.linalg.norm(raw)), 1e-9))
                nearest = np.full(len(self.intents), -1.0, dtype=np.float32)
                np.maximum.at(nearest, self._example_labels, sims)
                z = z + NEAREST_WEIGHT * np.maximum(nearest - NEAREST_FROM, 0.0)
        for name, s in lex.items():
            z[self._index[name]] += LEXICAL_WEIGHT * s
        return z

    def scores(self, text: str, allowed: frozenset[str] | None = None) -> dict[str, float]:
        """Probabilities over ``allowed`` (default: every intent)."""
        z = self.logits(text)
        names = [n for n in self.intents if allowed is None or n in allowed]
        if not names:
            return {}
        idx = np.array([self._index[n] for n in names])
        p = logreg.softmax(z[idx].astype(np.float64))
        return dict(zip(names, p.tolist()))

    def recognise(self, text: str, allowed: frozenset[str] | None = None) -> Match:
        scores = self.scores(text, allowed)
        ranking = tuple((n, round(s, 4)) for n, s in sorted(scores.items(), key=lambda kv: -kv[1])[:3])
        if not ranking:
            return Match(None, 0.0, ())
        top, score = ranking[0]
        if score < self.threshold:
            return Match(None, round(score, 3), ranking)
        return Match(top, round(score, 3), ranking)
