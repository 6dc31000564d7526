"""Intent recogniser: accuracy on the labelled caller set, emergencies, speed, coverage."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from callbot.flows.intents import Recogniser, features, phonetic, stem, tokens
from callbot.flows.loader import load_flow

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
        m = flow.recogniser.recognise(text)
        pred = m.intent or "hors_sujet"  # no match = "cannot be understood" = hors_sujet
        correct += pred == gold
        if gold == "urgence" and pred != "urgence":
            missed_urgence.append(text)
    assert not missed_urgence
    assert correct / len(data) >= 0.95, f"accuracy {correct}/{len(data)}"


def test_recognition_is_fast(flow):
    text = ("oui bonjour alors voilà c'est au sujet de ma mère qui a quatre-vingt-dix ans et qui vit seule "
            "depuis des années, elle ne peut plus faire ses courses ni se faire à manger, qui peut l'aider")
    flow.recogniser.recognise(text)
    t0 = time.perf_counter()
    for _ in range(20):
        flow.recogniser.recognise(text)
    assert (time.perf_counter() - t0) / 20 < 0.02


@pytest.mark.parametrize("text", [
    "il y a le feu dans le garage", "ma voisine est tombée dans l'escalier elle saigne beaucoup",
    "ça sent le gaz dans la cuisine", "la rivière déborde et l'eau monte dans la maison",
    "venez vite mon mari ne respire plus", "un accident avec un blessé sur la route",
])
def test_emergencies_in_other_words(flow, text):
    assert flow.recogniser.recognise(text).intent == "urgence"


@pytest.mark.parametrize("text,intent", [
    ("le feu d'artifice c'est à quelle heure", "evenements"),
    ("les pompes funèbres m'ont dit d'appeler pour l'acte de décès", "etat_civil_deces"),
    ("un feu tricolore est en panne au carrefour", "voirie"),
])
def test_emergency_words_in_ordinary_requests(flow, text, intent):
    assert flow.recogniser.recognise(text).intent == intent


def test_whisper_digits_and_slips(flow):
    assert flow.recogniser.recognise("mon fils a eu 16 ans hier").intent == "recensement_citoyen"
    assert flow.recogniser.recognise("un réverbère est tombé en panne").intent == "eclairage"


def test_gibberish_is_not_guessed(flow):
    for text in ("euh ben voilà quoi", "oui oui", "hmm"):
        assert flow.recogniser.recognise(text).intent is None


def test_restricted_candidates():
    rec = Recogniser({"a": (["prendre un rendez-vous"], []), "b": (["les horaires d'ouverture"], [])}, 0.2)
    assert rec.recognise("un rendez vous").intent == "a"
    assert rec.recognise("un rendez vous", allowed=frozenset({"b"})).intent is None


def test_text_helpers():
    assert tokens("Euh, bonjour ! 16 ans") == ["seize", "ans"]
    assert stem("lampadaires") == stem("lampadaire")
    assert phonetic("salle") == phonetic("sale") and phonetic("éteint".replace("é", "e")) == phonetic("etain")
    assert features("") == {}
