"""Engine API the pipeline relies on: Flow facts, immutability, turns, listening hints, conditions."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from callbot.flows.checks import as_list
from callbot.flows.conditions import holiday_name, is_open, speak_hours
from callbot.flows.loader import FlowLoadError, load_flow
from callbot.flows.types import CallContext, Turn

REPO = Path(__file__).resolve().parent.parent
FLOW = REPO / "flows" / "mairie.yaml"
WED_10H = datetime(2025, 3, 12, 10, 0)


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW)


def session(flow, now=WED_10H, caller="+33612345678"):
    return flow.new_session(CallContext(caller=caller, channel="test", now=now))


def test_first_call_slice(flow):
    s = session(flow)
    greeting = s.start()
    assert isinstance(greeting, Turn) and greeting.node == "accueil" and greeting.listen is not None
    assert "assistant automatique" in greeting.say[0].text and greeting.say[0].static
    assert s.hear("quels sont vos horaires").node == "horaires"
    s2 = session(flow)
    s2.start()
    s2.hear("je veux le menu principal")
    turn = s2.press("1")
    assert turn.node == "horaires" and "huit heures trente" in turn.say[0].text


def test_flow_facts(flow):
    assert flow.name == "mairie" and len(flow.version) == 12 and flow.path == FLOW
    assert flow.town["name"] == "Saint-Aubin-les-Prés"
    prompts = flow.static_prompts()
    assert prompts and all("{" not in p for p in prompts)
    assert any("Saint-Aubin-les-Prés" in p for p in prompts)
    assert not any("urgence_numero" in p or "dix-huit, les pompiers" in p for p in prompts)
    assert all("http" not in p and "www" not in p and "*" not in p for p in prompts)


def test_flow_is_immutable(flow):
    with pytest.raises(Exception):
        flow.spec.settings.start = "menu"  # frozen pydantic model
    with pytest.raises(TypeError):
        flow.nodes["accueil"] = None  # read-only mapping


def test_reload_keeps_calls_on_their_version(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(FLOW.read_text(encoding="utf-8"), encoding="utf-8")
    old = load_flow(path)
    call = session(old)
    call.start()
    path.write_text(path.read_text(encoding="utf-8").replace("je suis l'assistant automatique",
                                                             "assistant automatique ici"), encoding="utf-8")
    new = load_flow(path)
    assert new.version != old.version
    assert "je suis l'assistant" not in session(new).start().say[0].text
    assert call.hear("vos horaires").node == "horaires" and call.flow is old


def test_events_are_unstamped_and_typed(flow):
    s = session(flow)
    turn = s.start()
    assert [e.type for e in turn.events] == ["node"]
    turn = s.hear("mon lampadaire est éteint")
    assert all(e.call_id == "" and e.ts == 0.0 for e in turn.events)
    assert [e.type for e in turn.events][:2] == ["intent", "node"]


def test_listen_hints(flow):
    s = session(flow, now=datetime(2025, 3, 16, 11, 0))
    s.start()
    s.hear("je voudrais parler à quelqu'un")
    turn = s.hear("oui")
    assert s.node == "rappel_numero"
    assert turn.listen.max_digits == 10 and turn.listen.end_of_turn_secs == 1.8 and turn.listen.no_input_secs == 10
    assert "zéro six" in s.vocabulary()
    confirm = s.press("0612345678")
    assert confirm.listen.max_digits == 1  # now waiting for 1 = oui / 2 = non


def test_calls_are_independent(flow):
    a, b = session(flow), session(flow)
    a.start(), b.start()
    a.hear("un lampadaire ne marche plus")
    assert a.node == "signal_lieu" and b.node == "accueil"


def test_after_the_end_nothing_happens(flow):
    s = session(flow)
    s.start()
    end = s.hear("au revoir")
    assert end.ends_call and end.listen is None and end.hangup.reason == "au_revoir"
    after = s.hear("allo ?")
    assert after.say == [] and after.listen is None and not after.events


def test_low_confidence_asks_a_clarifying_question_or_reprompts(flow):
    s = session(flow)
    s.start()
    turn = s.hear("c'est à propos de la chose là")
    assert turn.node == "accueil" and turn.listen is not None
    assert [e for e in turn.events if e.type == "intent"][0].intent is None


def test_opening_hours_and_holidays(flow):
    table = flow.spec.hours["mairie"]
    assert is_open(table, datetime(2025, 3, 12, 10, 0))
    assert not is_open(table, datetime(2025, 3, 12, 12, 30))  # lunch
    assert not is_open(table, datetime(2025, 3, 16, 10, 0))  # Sunday
    assert not is_open(table, datetime(2025, 5, 1, 10, 0))  # fête du Travail, a Thursday
    assert not is_open(table, datetime(2025, 3, 12, 10, 0), closed_dates=("2025-03-12",))
    assert holiday_name(datetime(2025, 4, 21).date()) and not holiday_name(datetime(2025, 4, 22).date())
    assert holiday_name(datetime(2025, 12, 26).date(), "57") and not holiday_name(datetime(2025, 12, 26).date())
    assert speak_hours({"samedi": ["09:00-12:00"]}) == "le samedi de neuf heures à midi"


def test_silent_loop_is_a_load_error(tmp_path):
    text = (REPO / "tests" / "flows" / "fixtures" / "rendez_vous.yaml").read_text(encoding="utf-8")
    text = text.replace("  vers_nom:\n    type: goto\n    goto: nom", "  vers_nom:\n    type: goto\n    goto: mobile")
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    assert "loop without ever listening" in str(info.value) and "loop.yaml:" in str(info.value)


def test_turn_contract_unchanged():
    names = {f.name for f in dataclasses.fields(Turn)}
    assert {"node", "say", "listen", "hangup", "transfer", "events"} <= names


def test_saturated_session_says_the_brief_wording(flow):
    long_, short = session(flow), session(flow)
    long_.start(), short.start()
    short.brief = True  # set by the call while the machine is saturated
    full, brief = long_.hear("quels sont vos horaires"), short.hear("quels sont vos horaires")
    assert full.node == brief.node == "horaires" and full.listen is not None and brief.listen is not None
    assert [p.text for p in brief.say] == [flow.render(as_list(flow.nodes["horaires"].brief)[0]).text]
    assert [p.text for p in full.say] == [flow.render(as_list(flow.nodes["horaires"].say)[0]).text]
    assert "Tilleuls" in full.say[0].text and "Tilleuls" not in brief.say[0].text  # the annexe is dropped
    assert all("huit heures trente" in t.say[0].text for t in (full, brief)) and brief.say[0].static
    assert len(brief.say[0].text) < len(full.say[0].text)
    assert short.hear("non").node == long_.hear("non").node  # same closing question, same dialogue


def _final_question(text: str) -> str:
    """The last sentence of a prompt when it is a question, else ''."""
    text = text.strip()
    if not text.endswith("?"):
        return ""
    cut = max(text.rfind(". ", 0, len(text) - 1), text.rfind("! ", 0, len(text) - 1))
    return text[cut + 2:] if cut >= 0 else text


def test_brief_wordings_are_shorter_and_keep_the_closing_question(flow):
    briefed = [nid for nid, node in flow.nodes.items() if as_list(getattr(node, "brief", []))]
    assert len(briefed) >= 20 and "horaires" in briefed
    assert not [nid for nid in briefed if nid.startswith("urgence")]  # emergency messages are never shortened
    for nid in briefed:
        node = flow.nodes[nid]
        says, briefs = as_list(node.say), as_list(node.brief)
        for i, say in enumerate(says or [""]):
            long_text = flow.render(say).text
            short_text = flow.render(briefs[i % len(briefs)]).text
            assert short_text and len(short_text) < len(long_text), nid
            question = _final_question(long_text)
            assert short_text.endswith(question), (nid, question)
            assert bool(_final_question(short_text)) == bool(question), nid



def _matched(turn):
    from callbot.events import Emergency, IntentMatched

    if any(isinstance(e, Emergency) for e in turn.events):
        return "urgence"
    return next((e.intent for e in turn.events if isinstance(e, IntentMatched)), None)


def test_whispers_other_hypotheses_are_heard_when_its_best_is_not_understood(flow):
    """n-best: Whisper's best hypothesis is not understood; the beam's next one is."""
    s = session(flow)
    s.start()
    turn = s.hear("euh ben pour le truc là", ["euh ben pour un acte de naissance"])
    assert _matched(turn) == "etat_civil_naissance"
    s = session(flow)
    s.start()
    assert _matched(s.hear("euh ben pour le truc là")) is None  # the best alone: asked again


def test_a_understood_best_hypothesis_is_kept_and_emergencies_come_first(flow):
    s = session(flow)
    s.start()
    assert _matched(s.hear("quels sont vos horaires", ["je voudrais un acte de naissance"])) == "horaires"
    s = session(flow)
    s.start()  # an emergency heard in any hypothesis Whisper offers, when its best is not understood
    assert _matched(s.hear("euh le truc là chez moi", ["euh le feu chez moi il y a de la fumée partout"])) == "urgence"
    s = session(flow)
    s.start()  # the best hypothesis's emergency is never traded for an ordinary alternative
    assert _matched(s.hear("ça sent le gaz dans l'immeuble", ["les horaires de la mairie"])) == "urgence"
