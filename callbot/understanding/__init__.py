"""Understanding what a caller says: intents, and emergencies apart from them.

``recogniser.py`` ranks the flow's intents (sentence encoders + logistic
regression + the lexical scorer of ``flows/intents.py``); ``emergency.py`` looks
for a danger to life or property on every turn, whatever the intents say.
Both are trained from the flow file at load time and shared by every call.
"""

from __future__ import annotations

from callbot.understanding.emergency import EmergencyDetector
from callbot.understanding.recogniser import Recogniser


def _encoders():
    from callbot.understanding.encoders import shared_encoders

    return shared_encoders()


def heard_examples(flow_path, intents) -> list[tuple[str, str]]:
    """``<flow>.heard.tsv``: Whisper's transcripts of the examples (``python -m callbot_testing.bench.heard``)."""
    from pathlib import Path

    if flow_path is None:
        return []
    path = Path(flow_path).with_suffix(".heard.tsv")
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        text, intent = line.split("\t")[:2]
        if intent in intents and text != "heard":
            rows.append((text, intent))
    return rows


def build_recogniser(spec, flow_path=None) -> Recogniser:
    return Recogniser({n: (list(i.examples), list(i.keywords)) for n, i in spec.intents.items()},
                      threshold=spec.settings.intent_threshold, encoders=_encoders(),
                      heard=heard_examples(flow_path, spec.intents))


def build_emergency_detector(spec) -> EmergencyDetector:
    em = spec.emergency
    name = em.intent if em else "urgence"
    intent = spec.intents.get(name)
    positives = list(intent.examples) if intent else []
    negatives = [ex for n, i in spec.intents.items() if n != name for ex in i.examples]
    return EmergencyDetector(positives, negatives, encoders=_encoders())


__all__ = ["EmergencyDetector", "Recogniser", "build_emergency_detector", "build_recogniser"]
