"""Fuzzing the flow loader: a hostile YAML flow loads or is refused with problems that say where.

House rule: a malformed YAML flow is rejected with a message that says what and where. Each
generated flow (seeded, the seed is printed; ``FUZZ_SEED`` / ``FUZZ_FLOW_CASES`` override) must
either load, or raise ``FlowLoadError`` whose problems all read ``<file>:<line>: …`` with a line
inside the file. Any other exception, or a case slower than three seconds, is a crash. A flow that
loads must also start a call (``Session.start``).

Inputs: tree mutations (delete, retype, rename keys; swap node types; unknown targets; lists for
maps; huge numbers, ``012``-style strings, unicode) and text mutations (bad syntax, tabs, swapped,
duplicated and re-indented lines, flipped characters, non-UTF-8 bytes) of small flows, of a
trimmed ``flows/mairie.yaml`` and of the real file itself, plus crafted ones: alias bombs
("billion laughs", a block aliasing itself), deep nesting, long chains of nodes, empty files,
lists and scalars instead of a mapping, several documents.

Most cases go through ``load_flow_text`` + ``build_flow`` (no file, no cache); a few hundred
through ``load_flow`` on a real file. The recogniser is never trained (it is built on first use).
"""

from __future__ import annotations

import collections
import copy
import os
import random
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from callbot.flows.checks import MAX_SILENT_RUN
from callbot.flows.engine import MAX_HOPS
from callbot.flows.loader import FlowLoadError, build_flow, load_flow, load_flow_text, parse_yaml
from callbot.flows.schema import NODE_TYPES, SLOT_TYPES
from callbot.flows.types import CallContext
from callbot_testing.mutate import paths
from tests.test_flow_loader import BASE

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[1]
MAIRIE = REPO / "flows" / "mairie.yaml"
RENDEZ_VOUS = REPO / "tests" / "flows" / "fixtures" / "rendez_vous.yaml"
SEED = int(os.environ.get("FUZZ_SEED", "20260611"))
CASES = int(os.environ.get("FUZZ_FLOW_CASES", "10200"))
FILE_CASES = 200  # of them, also through load_flow on a real file
NOW = datetime(2025, 3, 12, 10, 0)  # a Wednesday morning: the town hall is open

SMALL = BASE  # the smallest valid flow of the loader tests

RICH = """\
name: riche
description: every node type once
town: {name: Testville, adresse: place de la Mairie}
services:
  urbanisme: {label: le service urbanisme, number: "+33240000002"}
hours:
  mairie:
    lundi: ["08:30-12:00", "13:30-17:00"]
    mercredi: ["08:30-12:00"]
closed_dates: ["2025-12-26"]
settings:
  start: accueil
  main_menu: menu
  agent: agent
  intent_threshold: 0.4
  max_failures: 3
  no_input_secs: 7
  asr_vocabulary: [urbanisme, lampadaire]
  disclosure: Bonjour, mairie de {town.name}.
messages:
  no_input: Je ne vous entends pas.
globals: {urgence: urgence, parler_agent: agent, repeter: repeat, retour: back}
emergency:
  intent: urgence
  default: "112"
  services:
    "18": {label: les pompiers, words: [feu, fumee]}
intents:
  urgence: {examples: [il y a le feu]}
  parler_agent: {label: un agent, examples: [je veux un agent]}
  repeter: {examples: [répétez]}
  retour: {examples: [retour]}
  horaires: {label: les horaires, examples: [vos horaires], keywords: [horaires], goto: horaires}
  signaler: {examples: [un lampadaire est cassé], goto: lieu}
nodes:
  accueil:
    type: ask
    say: ["Que puis-je faire pour vous ?", "Autre chose ?"]
    reprompt: Dites-moi ce que vous souhaitez.
    routes: {horaires: horaires}
    yes: accueil
    no: enquete
    end_of_turn_secs: 0.8
    globals: [urgence, parler_agent]
  menu:
    type: menu
    options:
      "1": {label: les horaires, goto: horaires, intent: horaires, words: [horaire]}
      "2": {label: un agent, goto: agent}
      "*": {label: répéter, goto: menu}
  horaires:
    type: say
    say: Ouvert {hours.mairie}, {town.adresse}.
    set: {sujet: horaires}
    next: accueil
  lieu:
    type: collect
    slot: lieu
    slot_type: address
    say: Où est-ce ?
    invalid: Je n'ai pas compris l'adresse.
    confirm: true
    confirm_say: Au {value}, c'est bien ça ?
    next: ticket
  ticket:
    type: ticket
    kind: eclairage
    fields: {lieu: "{lieu}", sujet: "{sujet}"}
    say: C'est noté.
    next: aiguillage
  aiguillage:
    type: condition
    branches:
      - if: {open: mairie, weekday: [lundi, mercredi]}
        goto: agent
      - if: {any: [{holiday: true}, {time: "18:00-23:59"}], not: {caller_hidden: true}}
        goto: enquete
      - if: {slot: lieu, one_of: [mairie, gare]}
        goto: service
    else: vers_enquete
  vers_enquete:
    type: goto
    goto: enquete
  service:
    type: transfer
    target: urbanisme
    mode: direct
    say: Je vous passe l'urbanisme.
  agent:
    type: transfer
    target: agent
    say: Je vous passe un agent.
  urgence:
    type: hangup
    say: Appelez le {urgence_numero}.
    reason: urgence
  enquete:
    type: survey
    say: Une note de un à cinq ?
    thanks: Merci.
    next: au_revoir
  au_revoir:
    type: hangup
    say: Au revoir.
"""


def trimmed_mairie(text: str) -> str:
    """``flows/mairie.yaml`` with one example per intent, no keywords, no comments: the same nodes and
    settings, ~4 times faster to parse (the intents' examples are most of the file)."""
    out, in_intents, count = [], False, 0
    for line in text.splitlines(keepends=True):
        if line.startswith("intents:"):
            in_intents = True
        elif line.startswith("nodes:"):
            in_intents = False
        if in_intents:
            if line.startswith("    examples:"):
                count = 0
            elif line.startswith("      - "):
                count += 1
                if count > 1:
                    continue
            elif line.startswith("    keywords:") or line.lstrip().startswith("#"):
                continue
        out.append(line)
    return "".join(out)


# ---------------------------------------------------------------- the mutator
GARBAGE = ["", " ", "~", "null", "012", "0012", "1e309", "-0", ".inf", "nan", "0x1F", "1_000", "9" * 400,
           "-99999999999999999999", "yes", "no", "on", "off", "non", "true", "False", "2025-13-45", "25:99-12:00",
           "é" * 50, "\u202eevil", "zero\u200bwidth", "🙂", "a: b", "- x", "{x}", "{town.nope}", "{", "}",
           "#comment", "'quoted'", '"', "\\", "&anchor", "*alias", "!!python/object:os.system", "%", "@", "`",
           "\u00a0", "x" * 3000]


def random_scalar(rnd: random.Random) -> Any:
    return rnd.choice([rnd.choice(GARBAGE), rnd.randint(-(10**30), 10**30), rnd.random() * 1e6, True, False, None])


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.random()
    if depth > 2 or pick < 0.6:
        return random_scalar(rnd)
    if pick < 0.8:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {str(random_scalar(rnd)): random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}


def get_at(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def mutate_tree(rnd: random.Random, data: Any) -> tuple[str, Any]:
    """(what was done, mutated copy) of a flow's plain data; several mutations at once now and then."""
    data = copy.deepcopy(data)
    done = []
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        all_paths = paths(data)
        if not all_paths:
            break
        path = rnd.choice(all_paths)
        parent, key = get_at(data, path[:-1]), path[-1]
        nodes = data.get("nodes") if isinstance(data, dict) else None
        node_ids = list(nodes) if isinstance(nodes, dict) else []
        kind = rnd.choice(["delete", "retype", "rename", "node_type", "target", "unknown_field", "list_for_map",
                           "map_for_list", "keypad", "number", "duplicate_node", "empty"])
        if kind == "delete":
            del parent[key]
        elif kind == "retype":
            parent[key] = random_value(rnd)
        elif kind == "rename" and isinstance(parent, dict):
            parent[str(random_scalar(rnd)) + rnd.choice(["", "_", "x"])] = parent.pop(key)
        elif kind == "node_type" and node_ids:
            node = nodes[rnd.choice(node_ids)]
            if isinstance(node, dict):
                node["type"] = rnd.choice(list(NODE_TYPES) * 3 + ["Say", "transfert", "", "menu ", "nodes"])
        elif kind == "target" and node_ids:
            node = nodes[rnd.choice(node_ids)]
            if isinstance(node, dict):
                field = rnd.choice(["next", "goto", "else", "target", "yes", "no", "slot_type", "slot"])
                node[field] = rnd.choice(node_ids + ["nulle_part", "", "repeat", "back", "agent", "Debut",
                                                     rnd.choice(SLOT_TYPES), rnd.choice(GARBAGE)])
        elif kind == "unknown_field" and isinstance(parent, dict):
            parent[rnd.choice(["sey", "type", "nodes", "goto", "if", "<<", "12", "é"])] = random_value(rnd)
        elif kind == "list_for_map":
            value = parent[key]
            parent[key] = list(value.items()) if isinstance(value, dict) else [value]
        elif kind == "map_for_list":
            value = parent[key]
            parent[key] = {str(i): v for i, v in enumerate(value)} if isinstance(value, list) else {"x": value}
        elif kind == "keypad" and node_ids:
            for node in nodes.values():
                if isinstance(node, dict) and isinstance(node.get("options"), dict) and node["options"]:
                    old = rnd.choice(list(node["options"]))
                    new = rnd.choice(["012", "0", "00", "1", "11", "#", "*", "1a", "", "12345", "٣", " 1", "-1"])
                    node["options"][new] = node["options"].pop(old)
                    break
        elif kind == "number":
            parent[key] = rnd.choice(["1e309", "-1", "0", "0.2", "5.01", "7" * 500, "nan", "inf", "1_0", "0b1",
                                      "3.", ".5", "+3", "0o7", 10**40, -(10**40), 1e-320])
        elif kind == "duplicate_node" and node_ids:
            nodes[rnd.choice(node_ids) + rnd.choice(["", "_2", " "])] = random_value(rnd)
        elif kind == "empty":
            parent[key] = rnd.choice([None, "", [], {}])
        done.append(kind)
    return "+".join(done) or "none", data


TEXT_KINDS = ("flip", "delete_line", "duplicate_line", "swap_lines", "indent", "tab", "truncate", "insert_syntax",
              "non_utf8", "quote", "anchor", "unicode")


def mutate_text(rnd: random.Random, text: str) -> tuple[str, str | bytes]:
    """(what was done, mutated text or bytes) of a flow file."""
    lines = text.splitlines(keepends=True) or ["\n"]
    i = rnd.randrange(len(lines))
    kind = rnd.choice(TEXT_KINDS)
    if kind == "flip":
        chars = list(text)
        for _ in range(rnd.randint(1, 6)):
            chars[rnd.randrange(len(chars))] = rnd.choice(":-[]{}#&*!|>'\"%@`,? \t\nx0é\u00a0")
        return kind, "".join(chars)
    if kind == "delete_line":
        del lines[i]
    elif kind == "duplicate_line":
        lines.insert(i, lines[i])
    elif kind == "swap_lines":
        j = rnd.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "indent":
        lines[i] = rnd.choice([" ", "  ", "    ", "   "]) + lines[i] if rnd.random() < 0.6 else lines[i].lstrip(" ")
    elif kind == "tab":
        lines[i] = "\t" + lines[i].lstrip(" ") if rnd.random() < 0.7 else lines[i].replace(": ", ":\t", 1)
    elif kind == "truncate":
        return kind, text[: rnd.randrange(len(text))]
    elif kind == "insert_syntax":
        lines.insert(i, rnd.choice(["  cassé: [\n", "}\n", "- \n", ": x\n", "? \n", "key: 'unterminated\n",
                                    "a: b: c\n", "---\n", "...\n", "%YAML 1.1\n", "!!binary\n", "|\n", ">-\n",
                                    "  <<: {type: hangup}\n", "&a\n", "*nope\n", "a: *undefined\n", "[a, b\n"]))
    elif kind == "non_utf8":
        raw = bytearray(text.encode("utf-8"))
        if rnd.random() < 0.3:
            return kind, text.encode("latin-1", "replace")
        if rnd.random() < 0.1:
            return kind, text.encode("utf-16")
        for _ in range(rnd.randint(1, 4)):
            raw.insert(rnd.randrange(len(raw) + 1), rnd.choice([0x80, 0xC3, 0xFF, 0xFE, 0xE9, 0xED, 0xF5, 0x00]))
        return kind, bytes(raw)
    elif kind == "quote":
        lines[i] = lines[i].replace(": ", ': "', 1)
    elif kind == "anchor":
        line = lines[i].rstrip("\n")
        if ": " in line:
            lines[i] = line.replace(": ", ": &a ", 1) + "\n"
            lines.insert(rnd.randrange(len(lines) + 1), rnd.choice(["x: *a\n", "  x: *a\n", "    next: *a\n"]))
    elif kind == "unicode":
        lines[i] = lines[i].rstrip("\n") + rnd.choice(["é", "\u202e", "\u200b", "🙂", "\ufeff", "\u2028", "\x85",
                                                       "\x07", "\ud800", "\U0010ffff"]) + "\n"
    return kind, "".join(lines)


def billion_laughs(levels: int, width: int, where: str) -> str:
    rows = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    rows += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]" for n in range(1, levels)]
    bomb = "\n".join(rows) + "\n"
    body = SMALL.replace("name: t\n", f"name: t\ndescription: *a{levels - 1}\n") if where == "field" else SMALL
    return bomb + body if where == "field" else bomb + f"x: *a{levels - 1}\n" + body


def crafted(rnd: random.Random, i: int) -> tuple[str, str | bytes]:
    """Hand-made hostile flows: bombs, deep nesting, long chains, odd files."""
    kind = ("bomb", "self_alias", "deep_flow", "deep_block", "deep_condition", "chain", "loop", "empty", "top",
            "documents", "tags", "bom", "many_nodes", "merge", "alias_key", "long_line")[i % 16]
    if kind == "bomb":
        return kind, billion_laughs(rnd.choice([5, 9, 12]), rnd.choice([10, 20]), rnd.choice(["field", "top"]))
    if kind == "self_alias":
        return kind, SMALL + rnd.choice(["  boucle: &b {type: goto, goto: *b}\n", "  boucle: &b [*b]\n",
                                         "x: &x {a: [*x]}\n"])
    if kind == "deep_flow":
        depth = rnd.choice([30, 45, 300, 5_000, 100_000])
        return kind, SMALL.replace("name: t\n", "name: t\ndescription: " + "[" * depth + "x" + "]" * depth + "\n")
    if kind == "deep_block":
        depth = rnd.choice([30, 45, 300])
        return kind, SMALL + "x:\n" + "".join(" " * (n + 1) + f"k{n}:\n" for n in range(depth)) + " " * depth + " v\n"
    if kind == "deep_condition":
        depth = rnd.choice([5, 15, 30, 60, 500])
        cond = "{holiday: true}"
        for _ in range(depth):
            cond = rnd.choice(["{not: %s}", "{any: [%s]}", "{all: [%s, {holiday: false}]}"]) % cond
        return kind, RICH.replace("{open: mairie, weekday: [lundi, mercredi]}", cond)
    if kind == "chain":  # a long line of say nodes: every one reachable, no loop, all silent
        n = rnd.choice([10, 38, 39, 40, 50, 300])  # 3 000: test_long_runs_of_silent_nodes
        chain = "".join(rnd.choice([f"  c{k}:\n    type: say\n    say: Étape {k}.\n    next: c{k + 1}\n",
                                    f"  c{k}:\n    type: goto\n    goto: c{k + 1}\n"]) for k in range(n))
        base = SMALL if rnd.random() < 0.5 else SMALL.replace("settings: {start: debut", "settings: {start: c0")
        end = f"  c{n}:\n    type: goto\n    goto: debut\n"
        return kind, base.replace("    next: debut\n", "    next: c0\n") + chain + end
    if kind == "loop":  # a cycle of silent nodes, long
        n = rnd.choice([3, 40, 300])
        loop = "".join(f"  l{k}:\n    type: goto\n    goto: l{(k + 1) % n}\n" for k in range(n))
        return kind, SMALL.replace("    next: debut\n", "    next: l0\n") + loop
    if kind == "empty":
        return kind, rnd.choice(["", " ", "\n\n", "# rien\n", "---\n", "...\n", "~\n", "null\n", "''\n", b"",
                                 b"\xef\xbb\xbf"])
    if kind == "top":
        return kind, rnd.choice(["- a\n- b\n", "[1, 2]\n", "42\n", "nodes\n", '"name: t"\n',
                                 "- " + SMALL.replace("\n", "\n  "),
                                 "{}\n", "name:\n", "nodes: []\n", "nodes: {}\nintents: {}\nname: x\nsettings: {}\n"])
    if kind == "documents":
        return kind, SMALL + "---\n" + SMALL
    if kind == "tags":
        return kind, SMALL.replace("say: Ouvert.", rnd.choice(["say: !!python/object/apply:os.system [ls]",
                                                               "say: !!binary aGVsbG8=", "say: !!int 12",
                                                               "say: !custom x", "say: !!set {a, b}",
                                                               "say: !!omap [{a: 1}]", "say: !!timestamp 2025-01-01"]))
    if kind == "bom":
        return kind, rnd.choice(["\ufeff" + SMALL, ("\ufeff" + SMALL).encode("utf-8"), SMALL.encode("utf-16"),
                                 SMALL.encode("utf-32"), "\ufeff\ufeff" + SMALL])
    if kind == "many_nodes":
        n = rnd.choice([50, 300])
        extra = "".join(f"  n{k}:\n    type: hangup\n    say: Fin {k}.\n" for k in range(n))
        return kind, SMALL + extra
    if kind == "merge":
        base = "  base: &base {type: say, say: Défaut., next: debut}\n"
        return kind, SMALL.replace("  horaires:\n    type: say\n", base + "  horaires:\n    <<: *base\n    type: say\n")
    if kind == "alias_key":
        return kind, "k: &k name\n" + SMALL.replace("name: t", "*k : t")
    return kind, SMALL.replace("say: Bonjour.", "say: " + "Bonjour " * rnd.choice([10, 5_000]) + ".")


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # writing the inputs is not under test: the fast one
# how many cases come from each source; "small" takes the rest. Parsing dominates the time (pure-Python
# PyYAML, ~50 µs a line): the real file costs ~0.3 s a case, the trimmed one ~50 ms, RICH ~7 ms, SMALL ~2 ms.
QUOTAS = {"mairie": 6, "mairie_lite": 60, "crafted": 480, "rendez_vous": 200, "rich": 1000}


def dump(rnd: random.Random, tree: Any) -> str:
    return yaml.dump(tree, Dumper=DUMPER, allow_unicode=rnd.random() < 0.8, sort_keys=False,
                     default_flow_style=rnd.choice([False, None]))


def cases(rnd: random.Random, n: int) -> list[tuple[str, str, str | bytes]]:
    """(source, mutation, input) for ``n`` cases, in a fixed order for a given seed."""
    mairie = MAIRIE.read_text(encoding="utf-8")
    lite = trimmed_mairie(mairie)
    texts = {"small": SMALL, "rich": RICH, "rendez_vous": RENDEZ_VOUS.read_text(encoding="utf-8"),
             "mairie_lite": lite, "mairie": mairie}
    trees = {name: parse_yaml(text, name)[0] for name, text in texts.items() if name != "mairie"}
    out: list[tuple[str, str, str | bytes]] = [("mairie", "none", mairie), ("mairie_lite", "none", lite)]
    sources = [name for name, count in QUOTAS.items() for _ in range(count)]
    sources += ["small"] * (n - len(out) - len(sources))
    rnd.shuffle(sources)
    made = 0
    for source in sources:
        if source == "crafted":
            out.append((source, *crafted(rnd, made)))
            made += 1
        elif source == "mairie" or rnd.random() < 0.5:  # text mutations (the real file is too big to re-dump)
            out.append((source, *mutate_text(rnd, texts[source])))
        else:
            what, tree = mutate_tree(rnd, trees[source])
            text = dump(rnd, tree)
            if rnd.random() < 0.2:  # and its text too
                what2, text = mutate_text(rnd, text)
                what += "+" + what2
            out.append((source, what, text))
    return out


# ---------------------------------------------------------------- the oracle
def problems_say_where(err: FlowLoadError, where: str, data: str | bytes) -> str | None:
    """None when every problem reads ``where:line: …`` with a line in the file, else what is wrong."""
    if not err.problems:
        return "FlowLoadError without problems"
    n_lines = (data.count(b"\n") if isinstance(data, bytes) else data.count("\n")) + 1
    for problem in err.problems:
        m = re.match(re.escape(where) + r":(\d+): \S", problem)
        if not m:
            return f"a problem that does not say where: {problem[:200]!r}"
        if not 1 <= int(m.group(1)) <= n_lines:
            return f"line {m.group(1)} outside the file ({n_lines} lines): {problem[:200]!r}"
        if len(problem) > 600:
            return f"an unreadable {len(problem)}-character problem: {problem[:200]!r}…"
    return None


def check_one(data: str | bytes, where: str, *, path: Path | None = None) -> str:
    """'loaded' or 'refused'; raises AssertionError (bad refusal) or anything else (a crash)."""
    try:
        if path is None:
            spec, lines = load_flow_text(data, where)
            flow = build_flow(spec, lines, where)
        else:
            flow = load_flow(path)
    except FlowLoadError as e:
        bad = problems_say_where(e, where, data)
        assert bad is None, bad
        return "refused"
    turn = flow.new_session(CallContext(channel="test", now=NOW)).start()  # a flow that loads takes a call
    assert turn.node in flow.nodes
    return "loaded"


def test_mutated_flows_load_or_say_where(tmp_path):
    rnd = random.Random(SEED)
    t0 = time.perf_counter()
    generated = cases(rnd, CASES)
    gen_s = time.perf_counter() - t0
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    crashes: list[str] = []
    slowest, slowest_case = 0.0, ""
    file_every = max(1, len(generated) // FILE_CASES)
    for i, (seed, what, data) in enumerate(generated):
        via_file = i % file_every == 0
        where = str(tmp_path / f"case{i}.yaml") if via_file else f"fuzz/{seed}-{i}.yaml"
        if via_file:
            Path(where).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        started = time.perf_counter()
        try:
            result = check_one(data, where, path=Path(where) if via_file else None)
        except Exception as e:  # noqa: BLE001 - anything but FlowLoadError is what the fuzzer looks for
            result = "crash"
            preview = data[:300] if len(data) < 3000 else data[:300] + (b"..." if isinstance(data, bytes) else "...")
            crashes.append(f"case {i} ({seed}, {what}): {type(e).__name__}: {str(e)[:300]}\n    input: {preview!r}")
        took = time.perf_counter() - started
        if took > slowest:
            slowest, slowest_case = took, f"case {i} ({seed}, {what})"
        outcomes[(seed if seed != "crafted" else f"crafted:{what}", result)] += 1
    elapsed = time.perf_counter() - t0
    total = collections.Counter(result for (_, result), n in outcomes.items() for _ in range(n))
    print(f"\nflow loader fuzz: seed {SEED}, {len(generated)} cases ({FILE_CASES} through load_flow on a file): "
          f"{total['loaded']} loaded, {total['refused']} refused, {len(crashes)} crashes; "
          f"{elapsed:.1f} s (generating {gen_s:.1f} s), slowest {slowest * 1000:.0f} ms ({slowest_case})")
    for (seed, result), n in sorted(outcomes.items()):
        print(f"  {seed:28} {result:8} {n}")
    assert not crashes, f"{len(crashes)} crashes (seed {SEED}):\n" + "\n".join(crashes[:15])
    assert slowest < 3.0, f"{slowest_case} took {slowest:.1f} s"  # the real file alone takes ~0.3 s
    assert len(generated) >= 10_000
    # the real flow and its trimmed copy load; each kind of hostile input was tried
    assert outcomes[("mairie", "loaded")] >= 1 and outcomes[("mairie_lite", "loaded")] >= 1
    assert all(outcomes[(f"crafted:{k}", "refused")] for k in ("bomb", "self_alias", "deep_flow", "documents"))


@pytest.mark.parametrize("text,where", [
    (billion_laughs(9, 10, "field"), "f.yaml:5: the flow holds more than 100000 values once its aliases"),
    ("name: t\nx: &x {a: [*x]}\n", "f.yaml:2: this block contains an alias (*name) to itself"),
    ("name: t\ndescription: " + "[" * 100_000 + "\n", "f.yaml:2: invalid YAML (nested more than 40 levels deep"),
    ("name: t\n\tdescription: x\n", "f.yaml:2: invalid YAML (found character '\\t'"),
    ("name: t\ndescription: a\x07b\n", "f.yaml:2: invalid character U+0007"),
    (b"name: t\ndescription: caf\xe9\n", "f.yaml:2: the file is not UTF-8 (byte 0xe9)"),
    ("name: t\nnodes: !!python/object/apply:os.system [ls]\n", "f.yaml:2: YAML tag '!!python/object/apply:os.system'"),
    ("", "f.yaml:1: the file is empty"),
    ("- a\n- b\n", "f.yaml:1: the file must be a mapping"),
])
def test_hostile_files_are_refused_fast_and_say_where(text, where):
    t0 = time.perf_counter()
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(text, "f.yaml")
    assert time.perf_counter() - t0 < 1.0
    assert any(p.startswith(where) for p in info.value.problems), info.value.problems


def _chain(n: int, first: str = "c0") -> str:
    """``n`` say nodes in a row from the start node, then the question ``debut``."""
    chain = "".join(f"  c{k}:\n    type: say\n    say: Étape {k}.\n    next: c{k + 1}\n" for k in range(n))
    return SMALL.replace("settings: {start: debut", f"settings: {{start: {first}") + chain.replace(
        f"next: c{n}\n", "next: debut\n")


def test_long_runs_of_silent_nodes():
    """The engine walks at most 40 nodes a turn: 39 say nodes in a row load and start a call, 40 are refused
    at load time (not mid-call); 3 000 in a row or in a loop are refused without a RecursionError."""
    assert MAX_SILENT_RUN == MAX_HOPS - 1  # the load-time check follows the engine
    spec, lines = load_flow_text(_chain(39), "chain.yaml")
    assert build_flow(spec, lines, "chain.yaml").new_session(CallContext(now=NOW)).start().node == "debut"
    for n in (40, 3_000):
        with pytest.raises(FlowLoadError) as info:
            load_flow_text(_chain(n), "chain.yaml")
        assert info.value.problems == [f"chain.yaml:24: {n} say/goto/condition/ticket nodes in a row from 'c0' "
                                       f"without listening, more than 39; put an ask, menu or collect node among them"]
    n = 3_000
    loop = "".join(f"  l{k}:\n    type: goto\n    goto: l{(k + 1) % n}\n" for k in range(n))
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(SMALL.replace("    next: debut\n", "    next: l0\n") + loop, "loop.yaml")
    assert info.value.problems == ["loop.yaml:24: nodes l0 -> l1 -> l2 -> l3 -> … (2995 more) -> l2999 -> l0 loop "
                                   "without ever listening; route one of them to an ask, menu or collect node"]
