"""Flow-author commands, called the way the lead's ``callbot`` parser calls them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from callbot.flows.cli import add_subcommands
from callbot.flows.schema import json_schema

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "mairie" / "dev.tsv"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="callbot")
    sub = parser.add_subparsers(dest="command")
    add_subcommands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_ok(capsys):
    assert run(["flows", "check", str(REPO / "flows" / "mairie.yaml")]) == 0
    assert "ok (" in capsys.readouterr().out


def test_check_reports_file_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsettings: {start: a, main_menu: a, agent: a}\nintents: {}\nnodes:\n"
                   "  a: {type: say, say: Bonjour, next: b}\n", encoding="utf-8")
    assert run(["flows", "check", str(bad)]) == 1
    assert f"{bad}:5: unknown target node 'b'" in capsys.readouterr().out


def test_conversation_tests_command(capsys):
    assert run(["flows", "test"]) == 0
    assert " 0 failed" in capsys.readouterr().out


def test_eval_intents_last_line(tmp_path, capsys):
    tsv = tmp_path / "x.tsv"
    tsv.write_text("utterance\tintent\nquels sont vos horaires\thoraires\nc'est pour ma carte grise\thors_sujet\n"
                   "je voudrais un acte de naissance\telections\n", encoding="utf-8")
    assert run(["eval-intents", str(tsv)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "accuracy: 0.667 (2/3)"
    assert any("etat_civil_naissance" in line and "elections" in line for line in out)


@pytest.mark.skipif(not DEV.exists(), reason="shared dev set not available")
def test_eval_intents_on_dev(capsys):
    run(["eval-intents", str(DEV)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("accuracy: ") and float(last.split()[1]) >= 0.95


def test_schema_file_is_current(capsys):
    assert run(["flows", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json_schema()
    assert json.loads((REPO / "flows" / "schema.json").read_text(encoding="utf-8")) == printed, \
        "flows/schema.json is stale: run callbot flows schema --write flows/schema.json"


def test_chat_script():
    from callbot.flows.chat import run_chat

    lines = iter(["quels sont vos horaires", "/silence", "non", "/press 4"])
    out: list[str] = []
    args = argparse.Namespace(flow=REPO / "flows" / "mairie.yaml", digits=False, caller="+33600000000",
                              now="2025-03-12T10:00")
    assert run_chat(args, input_fn=lambda _: next(lines), print_fn=out.append) == 0
    text = "\n".join(out)
    assert "[intent horaires" in text and "[no_input #1]" in text and "[enquête : 4/5]" in text
    assert "raccroche" in text
