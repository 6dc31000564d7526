"""The emergency layer and the recogniser on sentences written for these tests (in no example, no set).

Plus the regression guard on the held-out set ``tests/data/callers.tsv`` (never tuned on): its
accuracy, emergency recall and false-alarm rate must not fall below what this version reached.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.events import Emergency
from callbot.understanding.evaluate import read_tsv
from callbot.flows.loader import load_flow
from callbot.understanding.emergency import fuzzy_danger
from callbot.understanding.evaluate import Report, first_turn
from callbot.understanding.text import for_model

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "flows" / "mairie.yaml"


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW).warm()


@pytest.mark.parametrize("text", [
    "la cuisine de mon voisin est pleine de flammes",
    "mon bébé a bu du produit pour la vaisselle",
    "un homme s'est effondré dans la boulangerie il ne bouge plus",
    "il y a un type avec une batte qui tape sur tout le monde devant le bar",
    "ma grand-mère ne répond plus et il y a une odeur bizarre chez elle depuis trois jours",
    "le camion a percuté un scooter et le jeune est par terre en sang",
    "ma fille dit qu'elle veut en finir elle est sur le balcon",
    "au secours",
    "oui alors c'était pour les horaires de la piscine mais là y a de la fumée noire qui sort du gymnase",
    "il y a un ensendie dans la grange",  # Whisper's slip of "incendie"
    "mon père s'est évanoui dans le jardin",
    "y a un gars avec une machette devant la supérette",
    "les chiens du voisin se sont jetés sur mon petit garçon",
    "le barrage a cédé en amont, il faut prévenir tout le monde",
    "elle est tombée hier soir et elle est toujours par terre",  # past words, but still happening
    "à la crèche ils ne la trouvent plus, la nounou non plus, personne ne la trouve plus",
    # kinds added for the seventh writer's set (2026-12-06), in sentences of their own
    "la crue n'arrête pas de monter, on s'est réfugiés à l'étage avec mamie et on ne peut plus sortir",
    "la passerelle du stade vient de céder, il y a des spectateurs coincés dessous",  # a structure collapsing
    "ma sœur a donné toutes ses affaires, j'ai peur qu'elle fasse une bêtise ce soir",  # veiled self-harm
    "le petit a mangé une tarte aux noisettes et sa gorge se serre, il siffle en respirant",  # allergy
    "le père a embarqué notre fils sans prévenir, il m'a crié que je le reverrai jamais",  # a child taken
    "mon beau-frère a trop bu et il veut prendre le volant avec les enfants",
    "mon oncle a la bouche qui part de travers et il n'arrive plus à parler",  # stroke
    "mon colocataire a fait une overdose, il est tout gris",
    "un baigneur est en train de couler au bout de la jetée",
    # kinds added for the mid-call set (2026-12-06), in sentences of their own
    "deux types sont en train de défoncer la porte de l'appartement d'en face",  # a door forced now
    "l'échafaudage vient de lâcher et il y a des ouvriers dessous",
    "le mur de la cour s'effondre et les gosses jouaient juste à côté",  # a structure giving way now
    "mon fils a pris une décharge en touchant le câble tombé, il est tout raide",  # an electric shock
    "la rivière déborde, l'eau monte dans la maison et ma grand-mère est coincée à l'étage",
    "un chien errant attaque un enfant à l'arrêt de bus",
    "un camion vient de faucher une cycliste au rond-point",
    "pendant la commémoration au monument un porte-drapeau s'est effondré, il ne respire plus",  # at an event
])
def test_emergencies_in_words_no_example_has(flow, text):
    assert first_turn(flow, text).kind == "emergency", text


@pytest.mark.parametrize("text", [
    "je voudrais une attestation de l'incendie de l'an dernier pour mon assurance",
    "le feu rouge du carrefour est cassé",
    "mon père est décédé la semaine dernière il me faut l'acte de décès",
    "les pompiers ont laissé des traces de pneus sur la pelouse l'autre jour",
    "un arbre est tombé sur la route",
    "il y a une fuite d'eau sur le trottoir",
    "passer à la mairie pour l'armée",
    "les jeunes font exploser des pétards tous les soirs sur le parking",
    "notre sous-sol a pris l'eau pendant l'orage, personne n'a rien, on voudrait des sacs de sable",
    "après son AVC ma mère a besoin d'une aide à domicile",
    "ma fille aimerait s'engager chez les pompiers volontaires, à qui je m'adresse",
    # kinds added for the seventh writer's set (2026-12-06), in sentences of their own
    "mon grand-oncle est mort dans l'explosion de la mine en 1948, je voudrais une copie de son acte",  # a past death
    "la fumée de l'usine l'automne dernier a noirci nos façades, qui s'occupe du nettoyage",  # a past season
    "mon fils fait souvent des malaises quand il a de la fièvre, la nounou doit-elle avoir un protocole",  # a habit
    "la fuite de gaz est réparée depuis lundi, quand est-ce que la rue rouvre à la circulation",  # repaired
    "le documentaire sur l'incendie de la cathédrale passe quand au cinéma municipal",  # a show about a disaster
    "le chaton de la voisine est coincé en haut du cerisier, qui peut venir le descendre",  # an animal up a tree
    "le trottoir est tellement glissant que ma mère aurait pu se tuer ce matin",  # a counterfactual
    "au secours je suis paumée dans vos démarches pour la carte grise",  # lost in a procedure
    "ma voisine a fait une chute hier, elle va mieux, mais elle aurait besoin du portage de repas",  # she is well
    "mon voisin brûle ses feuilles tous les dimanches et la fumée envahit mon jardin",  # a habit; "et la" is no pause
    "je suis ambulancière et je voudrais une carte de stationnement pour le centre-ville",  # a job, not "ambulance"
    "ma fiancée a eu un grave accident de ski, il faut reporter la cérémonie",  # a request about a past event
    "l'enlèvement des encombrants c'est quel jour dans mon quartier",
    # mid-call answers (2026-12-06): objects, landmarks, dates, quotations
    "une gazinière au gaz de ville et un frigo à enlever",
    "une carcasse de mobylette et un vieux matelas complètement cramé",
    "le trou est devant la caserne des pompiers, juste à l'entrée",
    "le feu pour piétons du boulevard reste au vert même la nuit",
    "le banc est cassé depuis l'accident du mois dernier et personne ne l'a réparé",
    "sur le mur du stade quelqu'un a tagué au secours en rouge",
])
def test_alarming_words_in_ordinary_requests_are_not_alarms(flow, text):
    assert first_turn(flow, text).kind != "emergency", text


def _at_the_address_prompt(flow):
    from callbot.flows.types import CallContext
    from callbot.understanding.evaluate import EVAL_NOW

    session = flow.new_session(CallContext(channel="eval", caller="+33600000000", now=EVAL_NOW))
    session.start()
    session.hear("je voudrais signaler un trou dans le trottoir")
    assert session.s.node == "signal_lieu"
    return session


@pytest.mark.parametrize("address", [
    "c'est au 7 rue des Pompiers", "impasse de l'Incendie", "au 2 chemin du Feu", "rue du Gaz",
    "juste à côté du centre de secours", "lotissement des Brûlés", "14 allée de la Noyade",
])
def test_a_street_named_after_a_danger_is_an_address(flow, address):
    """While dictating an address, a place name is where the caller is, not what is happening."""
    session = _at_the_address_prompt(flow)
    turn = session.hear(address)
    assert not any(isinstance(e, Emergency) for e in turn.events), address


@pytest.mark.parametrize("said", [
    "rue du Gaz, et ça sent le gaz très fort dans la cage d'escalier",
    "au 3 rue des Pompiers, attendez il y a le feu chez le voisin",
    "il y a de la fumée qui sort du 12 rue de l'Incendie",
])
def test_a_danger_beside_such_an_address_is_still_an_emergency(flow, said):
    session = _at_the_address_prompt(flow)
    turn = session.hear(said)
    assert any(isinstance(e, Emergency) for e in turn.events), said


def test_fuzzy_danger_words():
    assert fuzzy_danger("il y a un un sandie rue pasteur") == "sandie"
    assert fuzzy_danger("il est inconsient") == "inconsient"
    assert fuzzy_danger("une incidence sur la facture") is None


def test_text_for_the_encoders():
    assert for_model("Euh, ma CNI, mon fils a 16 ans") == "ma carte nationale d'identité, mon fils a seize ans"


def test_clarifying_question_names_both_services(flow):
    session = flow.new_session()
    session.start()
    turn = session.hear("il me faut un acte")
    said = " ".join(p.text for p in turn.say)
    assert turn.node == "accueil"
    assert "naissance" in said and ("décès" in said or "mariage" in said)


def report(flow, name: str) -> Report:
    out = Report()
    for text, gold in read_tsv(ROOT / "tests" / "data" / name):
        out.add(text, gold, first_turn(flow, text))
    return out


def test_held_out_callers_do_not_regress(flow):
    """Reached on the held-out set: 0.905, emergencies 46/47, 11/383 false alarms (2026-12-04, first
    version); 0.902, 45/47, 11/383 with the fifth batch of examples (2026-12-05); 0.907, 45/47, 11/383
    with the sixth writer's danger words and the emergency layer as the one way in (2026-12-05);
    0.909, 46/47, 11/383 (2026-12-06). The second held-out set, callers2.tsv (written 2026-12-06):
    0.907, 35/36, 3/364 both when first measured and at the end of that session."""
    r = report(flow, "callers.tsv")
    caught, pos, alarms, neg = r.emergency_counts()
    assert r.accuracy() >= 0.885, r.lines(0)[-1]
    assert caught >= pos - 2
    assert alarms / neg <= 0.04
    r = report(flow, "callers2.tsv")
    caught, pos, alarms, neg = r.emergency_counts()
    assert r.accuracy() >= 0.885, r.lines(0)[-1]
    assert caught >= pos - 2
    assert alarms / neg <= 0.02


def test_emergency_tuning_set_stays_caught(flow):
    """tune_emergency.tsv (100 emergencies, 100 alarming non-emergencies): 100/100, 2 false alarms;
    tune_emergency2.tsv (120 / 120, a fifth writer): 120/120, 5 false alarms; tune_emergency3.tsv
    (120 / 120, a sixth writer: 112/120 and 10 false alarms when first measured): 120/120, 0."""
    caught, pos, alarms, neg = report(flow, "tune_emergency.tsv").emergency_counts()
    assert caught >= pos - 1 and alarms <= 6
    caught, pos, alarms, neg = report(flow, "tune_emergency2.tsv").emergency_counts()
    assert caught >= pos - 1 and alarms <= 10
    caught, pos, alarms, neg = report(flow, "tune_emergency3.tsv").emergency_counts()
    assert caught >= pos - 1 and alarms <= 4
    caught, pos, alarms, neg = report(flow, "tune_emergency4.tsv").emergency_counts()  # 115/120, 17 at first
    assert caught >= pos - 1 and alarms <= 4


def test_mid_call_emergencies_stay_caught(flow):
    """tune_midcall.tsv (a ninth writer: answers at six questions of a call): 86/90 and 19/210 false
    alarms when first measured, 90/90 and 5/210 after; the emergencies are replayed here."""
    from callbot.understanding import midcall

    rows = [r for r in midcall.read_midcall(ROOT / "tests" / "data" / "tune_midcall.tsv") if r.urgent]
    missed = [r.text for r in rows if not midcall.mid_call_turn(flow, r.context, r.text)[0]]
    assert len(rows) == 90 and len(missed) <= 1, missed


def test_emergency_transfers_to_the_towns_line_when_it_has_a_number(tmp_path):
    text = FLOW.read_text(encoding="utf-8").replace(
        "  urgence: {label: la permanence d'urgence de la commune}",
        '  urgence: {label: la permanence d\'urgence de la commune, number: "+33240000099"}')
    path = tmp_path / "mairie.yaml"
    path.write_text(text, encoding="utf-8")
    session = load_flow(path).new_session()
    session.start()
    turn = session.hear("vite il y a de la fumée partout dans la cage d'escalier")
    said = " ".join(p.text for p in turn.say)
    assert turn.transfer is not None and turn.transfer.number == "+33240000099"
    assert "dix-huit" in said and "cent quatorze" in said and [e for e in turn.events if e.type == "emergency"]


def test_eval_intents_spoken_wiring(tmp_path, capsys):
    from callbot.cli import main

    tsv = tmp_path / "two.tsv"
    tsv.write_text("utterance\tintent\nquels sont vos horaires\thoraires\n", encoding="utf-8")
    assert main(["eval-intents", "--spoken", str(tsv)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("spoken accuracy: ") and any(line.startswith("caller voice: mb-fr1") for line in out)


def test_heard_examples_are_made_and_loaded(tmp_path):
    """The generator (Whisper's transcripts of examples) writes a file the recogniser trains on."""
    import subprocess
    import sys

    flow_path = tmp_path / "mairie.yaml"
    flow_path.write_text(FLOW.read_text(encoding="utf-8"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "callbot_testing.bench.heard", "--flow", str(flow_path), "--every", "600",
                           "--voice", "mb-fr4", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    heard = flow_path.with_suffix(".heard.tsv")
    assert heard.exists() and "examples x 1 voice(s)" in proc.stdout and " 0 decoded now" not in proc.stdout
    from callbot.understanding import heard_examples

    flow = load_flow(flow_path)
    rows = heard_examples(flow_path, flow.spec.intents)
    assert all(intent in flow.spec.intents for _, intent in rows)
    assert len(rows) == len(heard.read_text(encoding="utf-8").splitlines()) - 2


def test_mid_call_evaluation_reaches_every_context(flow, tmp_path):
    """``eval-intents`` on context<TAB>utterance<TAB>label rows: each context's question is reached."""
    from callbot.understanding import midcall

    rows = tmp_path / "mid.tsv"
    rows.write_text("context\tutterance\tlabel\n" + "".join(
        f"{ctx}\tattendez mon mari vient de s'effondrer il ne respire plus\turgence\n{ctx}\tc'est au 9 rue des Pompiers\tordinaire\n"
        for ctx in midcall.CONTEXTS), encoding="utf-8")
    assert midcall.is_midcall_file(rows)
    lines = midcall.report(flow, midcall.read_midcall(rows))
    n = len(midcall.CONTEXTS)
    assert f"mid-call emergency recall: {n}/{n} (1.000); false alarms: 0/{n} (0.0%)" in lines
    assert lines[-1] == f"emergency accuracy: 1.000 ({2 * n}/{2 * n})"
    bad = tmp_path / "bad.tsv"
    bad.write_text("context\tutterance\tlabel\nau guichet\tbonjour\tordinaire\n", encoding="utf-8")
    with pytest.raises(midcall.ContextError, match=r"bad.tsv:2: unknown context 'au guichet'"):
        midcall.read_midcall(bad)
