"""Loader errors: each kind names file:line, says what is wrong and how to fix it."""

from __future__ import annotations

import textwrap

import pytest

from callbot.errors import FlowError
from callbot.flows.loader import FlowLoadError, load_flow, parse_yaml

BASE = """\
name: t
settings: {start: debut, main_menu: menu, agent: agent}
globals: {parler_agent: agent}
intents:
  parler_agent: {examples: [un agent]}
  horaires: {examples: [vos horaires], goto: horaires}
nodes:
  debut:
    type: ask
    say: Bonjour.
  horaires:
    type: say
    say: Ouvert.
    next: debut
  menu:
    type: menu
    options:
      "1": {label: les horaires, goto: horaires}
      "2": {label: un agent, goto: agent}
  agent:
    type: transfer
    target: agent
    say: Je vous passe un agent.
"""


def load(tmp_path, text: str):
    path = tmp_path / "f.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_flow(path)


def error(tmp_path, text: str) -> FlowLoadError:
    with pytest.raises(FlowLoadError) as info:
        load(tmp_path, text)
    assert isinstance(info.value, FlowError)
    return info.value


def line_of(text: str, needle: str) -> int:
    """Line of an exact node header ("  horaires:") or else of the first line containing ``needle``."""
    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        if line.rstrip() == needle:
            return i
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_base_flow_loads(tmp_path):
    flow = load(tmp_path, BASE)
    assert flow.name == "t" and len(flow.version) == 12
    assert flow.path == tmp_path / "f.yaml"


def test_unknown_target_node(tmp_path):
    text = BASE.replace("next: debut", "next: debutt")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'next: debutt')}: unknown target node 'debutt'" in str(err)
    assert "did you mean 'debut'" in str(err)


def test_unreachable_node(tmp_path):
    text = BASE + "  orphelin:\n    type: hangup\n    say: Au revoir.\n"
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'orphelin:')}: unreachable node 'orphelin'" in str(err)
    assert "delete it" in str(err)


def test_duplicate_example_across_intents(tmp_path):
    text = BASE.replace("examples: [vos horaires]", "examples: [vos horaires, Un agent]")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'Un agent]')}: example 'Un agent' is also given for intent 'parler_agent'" in str(err)
    assert f"(line {line_of(text, '[un agent]')})" in str(err)


def test_missing_prompt(tmp_path):
    text = BASE.replace("    say: Ouvert.\n", "")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, '  horaires:')}: missing prompt: say node 'horaires'" in str(err)


def test_bad_slot_type(tmp_path):
    text = BASE.replace("  debut:\n    type: ask\n    say: Bonjour.\n",
                        "  debut:\n    type: collect\n    slot: tel\n    slot_type: telephone\n"
                        "    say: Votre numéro ?\n    next: horaires\n")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'slot_type: telephone')}: bad slot type 'telephone'" in str(err)
    assert "phone" in str(err)


@pytest.mark.parametrize("key,message", [
    ('"1a"', "key '1a' is not keypad digits"),
    ('"#"', "key '#' is not keypad digits"),
    ('"12"', "key '12' starts with key '1'"),
])
def test_invalid_keypad_mapping(tmp_path, key, message):
    text = BASE.replace('"2": {label: un agent', f'{key}: {{label: un agent')
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, key + ':')}: invalid keypad mapping: {message}" in str(err)


def test_keypad_keys_stay_strings(tmp_path):
    text = BASE.replace('"2": {label: un agent', '012: {label: un agent')
    flow = load(tmp_path, text)
    assert "012" in flow.nodes["menu"].options
    assert flow.nodes["menu"].options["1"].label == "les horaires"


def test_yaml_keeps_french_words_as_strings():
    data, lines = parse_yaml("a: non\nb: on\nc: 012\nd: 1.50\n", "x.yaml")
    assert data == {"a": "non", "b": "on", "c": "012", "d": "1.50"}
    assert lines[("c",)] == 3


def test_unknown_intent_in_route(tmp_path):
    text = BASE.replace("    say: Bonjour.\n", "    say: Bonjour.\n    routes: {horaire: horaires}\n")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'routes:')}: unknown intent 'horaire'" in str(err)


def test_unknown_field_and_bad_node_type(tmp_path):
    text = BASE.replace("    say: Bonjour.\n", "    say: Bonjour.\n    sey: oups\n").replace(
        "type: transfer", "type: transfert")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'sey: oups')}: unknown field 'sey'" in str(err)
    assert f"f.yaml:{line_of(text, 'type: transfert')}: bad node type 'transfert'" in str(err) or \
        f"f.yaml:{line_of(text, '  agent:')}: bad node type 'transfert'" in str(err)


def test_missing_required_field(tmp_path):
    text = BASE.replace("    next: debut\n", "")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, '  horaires:')}: 'next' is missing" in str(err)


def test_duplicate_yaml_key(tmp_path):
    text = BASE.replace("    say: Ouvert.\n", "    say: Ouvert.\n    say: Encore.\n")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'say: Encore.')}: duplicate key 'say'" in str(err)


def test_yaml_syntax_error(tmp_path):
    err = error(tmp_path, BASE + "  cassé: [\n")
    assert "f.yaml:" in str(err) and "invalid YAML" in str(err)


def test_unknown_template_value(tmp_path):
    text = BASE.replace("say: Ouvert.", "say: Ouvert {jour}.")
    err = error(tmp_path, text)
    assert f"f.yaml:{line_of(text, 'Ouvert {jour}')}: unknown template value '{{jour}}'" in str(err)


def test_bad_opening_hours_and_condition(tmp_path):
    text = BASE.replace("nodes:\n", "hours:\n  mairie:\n    lundi: [\"8h-12h\"]\n    lundy: []\nnodes:\n").replace(
        "next: debut", "next: cond") + (
        "  cond:\n    type: condition\n    branches:\n      - if: {open: mairi}\n        goto: debut\n"
        "    else: debut\n")
    err = error(tmp_path, text)
    s = str(err)
    assert f"f.yaml:{line_of(text, '8h-12h')}: bad time range '8h-12h'" in s
    assert f"f.yaml:{line_of(text, 'lundy')}: 'lundy' is not a day" in s
    assert "unknown opening-hours table 'mairi'" in s


def test_every_problem_reported_at_once(tmp_path):
    text = BASE.replace("next: debut", "next: nulle_part").replace("goto: horaires}", "goto: ailleurs}")
    err = error(tmp_path, text)
    assert len(err.problems) >= 3


def test_missing_file(tmp_path):
    with pytest.raises(FlowLoadError) as info:
        load_flow(tmp_path / "absent.yaml")
    assert "absent.yaml:1: cannot read" in str(info.value)
