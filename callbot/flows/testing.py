"""Conversation tests: YAML scripts of what a caller does and what must happen.

One file holds ``conversations:``; each has optional ``flow`` (path relative
to the repo), ``now`` (ISO local time, pins opening hours / holidays),
``caller``, an optional ``greeting`` expectation and ``steps``. A step is one of
``say: text``, ``press: "12"``, ``silence: true`` with an optional ``expect``:

    node, visited, intent, say_contains, say_not_contains, slots, transfer,
    ticket {kind, fields}, hangup (reason or true), emergency (number),
    no_input {kind, count}, survey (score), listen {barge_in, max_digits, ...}, ends

Used by pytest (``tests/test_flow_conversations.py``) and ``callbot flows test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from callbot.errors import FlowError
from callbot.events import Emergency, IntentMatched, NodeEntered, NoInput, SurveyAnswered, TicketCreated
from callbot.flows.loader import load_flow, parse_yaml
from callbot.flows.text import fold
from callbot.flows.types import CallContext, Turn
from callbot.paths import PROJECT_ROOT, default_flow

DEFAULT_FLOW = default_flow()  # conversation tests (tests/flows, source tree only) may name another flow


@dataclass
class Result:
    file: str
    name: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


_flows: dict[Path, object] = {}


def _flow(path: Path):
    path = path.resolve()
    if path not in _flows:
        _flows[path] = load_flow(path)
    return _flows[path]


def run_file(path: str | Path, flow_path: str | Path | None = None) -> list[Result]:
    path = Path(path)
    data, lines = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    convs = data.get("conversations") if isinstance(data, dict) else None
    if not isinstance(convs, list):
        raise FlowError(f"{path}:1: expected 'conversations:' with a list of conversations")
    results = []
    for i, conv in enumerate(convs):
        where = lambda *p: f"{path}:{lines.get(('conversations', i) + p, lines.get(('conversations', i), 1))}"  # noqa: E731
        name = conv.get("name", f"conversation {i + 1}")
        results.append(Result(str(path), name, _run(conv, i, where, flow_path)))
    return results


def _run(conv: dict, i: int, where, flow_path) -> list[str]:
    fp = Path(flow_path) if flow_path else (PROJECT_ROOT / conv["flow"] if conv.get("flow") else DEFAULT_FLOW)
    flow = _flow(fp)
    now = datetime.fromisoformat(conv["now"]) if conv.get("now") else datetime(2025, 3, 12, 10, 0)
    session = flow.new_session(CallContext(caller=conv.get("caller", ""), channel="test", now=now))
    problems: list[str] = []
    turn = session.start()
    if conv.get("greeting"):
        problems += _check(turn, session, conv["greeting"], where("greeting"))
    for j, step in enumerate(conv.get("steps") or []):
        at = where("steps", j)
        if turn.ends_call:
            problems.append(f"{at}: the call already ended at node '{turn.node}'; remove the extra steps")
            break
        if "say" in step:
            turn = session.hear(step["say"] or "")
        elif "press" in step:
            turn = session.press(str(step["press"]))
        elif "silence" in step:
            turn = session.silence()
        else:
            problems.append(f"{at}: a step needs say:, press: or silence:")
            continue
        if step.get("expect"):
            problems += _check(turn, session, step["expect"], at)
    return problems


def _truthy(v) -> bool:
    return str(v).lower() in ("true", "yes", "oui", "1")


def _check(turn: Turn, session, exp: dict, at: str) -> list[str]:
    bad: list[str] = []
    said = " ".join(p.text for p in turn.say)
    ev = turn.events

    def want(cond: bool, what: str) -> None:
        if not cond:
            bad.append(f"{at}: expected {what}; got node '{turn.node}', said: {said[:160]!r}")

    if "node" in exp:
        want(turn.node == exp["node"], f"node '{exp['node']}'")
    if "visited" in exp:
        seen = [e.node for e in ev if isinstance(e, NodeEntered)]
        for n in [exp["visited"]] if isinstance(exp["visited"], str) else exp["visited"]:
            want(n in seen, f"to pass through node '{n}' (passed {seen})")
    if "intent" in exp:
        got = [e.intent for e in ev if isinstance(e, IntentMatched)]
        target = None if exp["intent"] in (None, "none") else exp["intent"]
        want(bool(got) and got[-1] == target, f"intent {target!r} (got {got})")
    for sub in _as_list(exp.get("say_contains")):
        want(fold(sub) in fold(said), f"the prompt to contain {sub!r}")
    for sub in _as_list(exp.get("say_not_contains")):
        want(fold(sub) not in fold(said), f"the prompt not to contain {sub!r}")
    for slot, value in (exp.get("slots") or {}).items():
        got = session.slots.get(slot)
        want(got is not None and fold(str(got)) == fold(str(value)), f"slot {slot}={value!r} (got {got!r})")
    if "transfer" in exp:
        want(turn.transfer is not None and turn.transfer.target == exp["transfer"],
             f"transfer to {exp['transfer']!r} (got {turn.transfer})")
    if "ticket" in exp:
        tickets = [e for e in ev if isinstance(e, TicketCreated)]
        spec = exp["ticket"]
        ok = bool(tickets) and tickets[-1].kind == spec.get("kind", tickets[-1].kind) and all(
            fold(str(tickets[-1].fields.get(k))) == fold(str(v)) for k, v in (spec.get("fields") or {}).items())
        want(ok, f"ticket {spec} (got {[(t.kind, t.fields) for t in tickets]})")
    if "hangup" in exp:
        h = exp["hangup"]
        want(turn.hangup is not None and (_truthy(h) or turn.hangup.reason == h), f"hang-up {h!r} (got {turn.hangup})")
    if "emergency" in exp:
        nums = [e.number for e in ev if isinstance(e, Emergency)]
        want(str(exp["emergency"]) in nums, f"emergency number {exp['emergency']} (got {nums})")
    if "no_input" in exp:
        ni = [e for e in ev if isinstance(e, NoInput)]
        spec = exp["no_input"] if isinstance(exp["no_input"], dict) else {"count": exp["no_input"]}
        ok = bool(ni) and all(str(getattr(ni[-1], k)) == str(v) for k, v in spec.items())
        want(ok, f"no-input {spec} (got {[(e.kind, e.count) for e in ni]})")
    if "survey" in exp:
        sc = [e.score for e in ev if isinstance(e, SurveyAnswered)]
        want(sc and str(sc[-1]) == str(exp["survey"]), f"survey score {exp['survey']} (got {sc})")
    if "listen" in exp:
        for k, v in exp["listen"].items():
            got = getattr(turn.listen, k, None) if turn.listen else None
            want(got is not None and str(got).lower() == str(v).lower(), f"listen.{k}={v} (got {got})")
    if "ends" in exp:
        want(turn.ends_call == _truthy(exp["ends"]), f"ends_call={exp['ends']}")
    return bad


def _as_list(v) -> list:
    return [] if v is None else [v] if isinstance(v, str) else list(v)


def find_tests(paths: list[str] | None = None) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return sorted((PROJECT_ROOT / "tests" / "flows").glob("*.yaml"))
