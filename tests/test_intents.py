"""Intent recogniser and lexical helpers: dev.tsv through the engine, ordinary requests, slips, coverage."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from callbot.flows.intents import features, phonetic, stem, tokens
from callbot.flows.loader import load_flow
from callbot.understanding import Recogniser
from callbot.understanding.evaluate import first_turn

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "mairie"
FLOW = REPO / "flows" / "mairie.yaml"


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW)


def rows(name: str) -> list[tuple[str, str]]:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    with open(path, encoding="utf-8") as f:
        data = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 2]
    return [(u, i) for u, i in data if (u, i) != ("utterance", "intent")]


def test_every_listed_intent_is_in_the_flow(flow):
    ids = [i for i, _ in rows("intents.tsv") if i != "id"]
    assert len(ids) == 35
    assert not [i for i in ids if i not in flow.intents]


def test_dev_accuracy_and_no_missed_emergency(flow):
    data = rows("dev.tsv")
    correct, missed_urgence = 0, []
    for text, gold in data:
        pred = first_turn(flow, text).judged()  # no match = "cannot be understood" = hors_sujet
        correct += pred == gold
        if gold == "urgence" and pred != "urgence":
            missed_urgence.append(text)
    assert not missed_urgence
    assert correct / len(data) >= 0.95, f"accuracy {correct}/{len(data)}"


@pytest.mark.parametrize("text,intent", [
    ("le feu d'artifice c'est à quelle heure", "evenements"),
    ("les pompes funèbres m'ont dit d'appeler pour l'acte de décès", "etat_civil_deces"),
    ("un feu tricolore est en panne au carrefour", "voirie"),
])
def test_emergency_words_in_ordinary_requests(flow, text, intent):
    assert first_turn(flow, text).label == intent


def test_whisper_digits_and_slips(flow):
    assert first_turn(flow, "mon fils a eu 16 ans hier").label == "recensement_citoyen"
    assert first_turn(flow, "un réverbère est tombé en panne").label == "eclairage"
    assert first_turn(flow, "ma CNI est périmée").label == "identite"


def test_gibberish_is_not_routed_to_a_service(flow):
    for text in ("euh ben voilà quoi", "oui oui", "hmm"):
        assert first_turn(flow, text).judged() == "hors_sujet", text


def test_restricted_candidates():
    rec = Recogniser({"a": (["prendre un rendez-vous"], []), "b": (["les horaires d'ouverture"], [])}, 0.6)
    assert rec.recognise("un rendez vous").intent == "a"
    assert rec.recognise("un rendez vous", allowed=frozenset({"b"})).intent == "b"  # the only one left
    assert rec.recognise("un rendez vous", allowed=frozenset()).intent is None


def test_text_helpers():
    assert tokens("Euh, bonjour ! 16 ans") == ["seize", "ans"]
    assert stem("lampadaires") == stem("lampadaire")
    assert phonetic("salle") == phonetic("sale") and phonetic("éteint".replace("é", "e")) == phonetic("etain")
    assert features("") == {}
