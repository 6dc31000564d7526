"""Load-time checks of a flow's meaning (the schema only checks its shape).

Each check returns ``file:line: what is wrong; how to fix`` strings so a town
clerk editing the YAML can fix every problem in one pass.
"""

from __future__ import annotations

import difflib
import re
from collections import deque

from callbot.flows.conditions import DAYS, parse_range
from callbot.flows.schema import (AskNode, CollectNode, Condition, ConditionNode, FlowSpec, GotoNode,
                                  HangupNode, MenuNode, SayNode, SurveyNode, TicketNode, TransferNode)
from callbot.flows.text import fold

TEMPLATE = re.compile(r"\{([^{}]*)\}")
KEY = re.compile(r"^[0-9*]{1,4}$")
SPECIAL_TARGETS = ("repeat", "back")
RUNTIME_VARS = {"value", "caller", "urgence_numero", "urgence_service"}
MAX_SILENT_RUN = 39  # the engine walks at most MAX_HOPS (40) nodes per turn: 39 silent ones and a listening one


def as_list(prompts: str | list[str]) -> list[str]:
    return [prompts] if isinstance(prompts, str) else list(prompts)


def targets(node) -> list[tuple[str, str]]:
    """(field path inside the node, target node id) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(node, (SayNode, CollectNode, TicketNode)):
        out.append(("next", node.next))
    if isinstance(node, SurveyNode) and node.next:
        out.append(("next", node.next))
    if isinstance(node, GotoNode):
        out.append(("goto", node.goto))
    if isinstance(node, AskNode):
        out += [(("routes", k), v) for k, v in node.routes.items()]
        out += [(f, t) for f, t in (("yes", node.yes), ("no", node.no)) if t]
    if isinstance(node, MenuNode):
        out += [(("options", k, "goto"), o.goto) for k, o in node.options.items()]
    if isinstance(node, ConditionNode):
        out += [(("branches", i, "goto"), b.goto) for i, b in enumerate(node.branches)]
        out.append(("else", node.else_))
    return out


def check_spec(spec: FlowSpec, lines: dict, where: str) -> list[str]:
    problems: list[str] = []

    def at(*path) -> str:
        best = 1
        for i in range(len(path), 0, -1):
            if tuple(path[:i]) in lines:
                best = lines[tuple(path[:i])]
                break
        return f"{where}:{best}"

    nodes, intents = spec.nodes, spec.intents

    def need_node(target: str, *path) -> None:
        if target not in nodes:
            problems.append(f"{at(*path)}: unknown target node '{target}'{suggest(target, nodes)}; "
                            "point it to a node defined under nodes:")

    def need_intent(intent: str, *path) -> None:
        if intent not in intents:
            problems.append(f"{at(*path)}: unknown intent '{intent}'{suggest(intent, intents)}; "
                            "declare it under intents:")

    for field in ("start", "main_menu", "agent"):
        need_node(getattr(spec.settings, field), "settings", field)
    for intent, target in spec.globals.items():
        need_intent(intent, "globals", intent)
        if target not in SPECIAL_TARGETS:
            need_node(target, "globals", intent)
    emergency = spec.emergency
    if emergency is not None:
        need_intent(emergency.intent, "emergency", "intent")
    for number, svc in (emergency.services if emergency else {}).items():
        if not re.fullmatch(r"[0-9]{2,4}", number):
            problems.append(f"{at('emergency', 'services', number)}: emergency number '{number}' is not "
                            "2 to 4 digits; use 15, 17, 18, 112, 114 or 115")
    if emergency is not None and emergency.intent in intents and emergency.intent not in spec.globals:
        problems.append(f"{at('emergency')}: the emergency intent '{emergency.intent}' has no entry "
                        "in globals:; add it so emergencies are heard in every node")

    # intents: a goto each, examples, no example shared by two intents
    seen: dict[str, tuple[str, int]] = {}
    for name, intent in intents.items():
        if intent.goto:
            need_node(intent.goto, "intents", name, "goto")
        if not intent.examples and not intent.keywords:
            problems.append(f"{at('intents', name)}: intent '{name}' has no examples or keywords; "
                            "add a few sentences callers say")
        for i, ex in enumerate(intent.examples + intent.keywords):
            key = fold(ex)
            field = ("examples", i) if i < len(intent.examples) else ("keywords", i - len(intent.examples))
            if key in seen and seen[key][0] != name:
                other, line = seen[key]
                problems.append(f"{at('intents', name, *field)}: example '{ex}' is also given for intent "
                                f"'{other}' (line {line}); keep it in one intent only")
            else:
                seen.setdefault(key, (name, lines.get(("intents", name) + field, 0)))

    slots = {n.slot for n in nodes.values() if isinstance(n, CollectNode)}
    slots |= {k for n in nodes.values() if isinstance(n, SayNode) for k in n.set}
    static_vars = {f"town.{k}" for k in spec.town} | {f"hours.{k}" for k in spec.hours}
    known_vars = RUNTIME_VARS | slots | static_vars
    for name in ("disclosure", "recording_notice"):  # said before anything is known about the call
        for var in TEMPLATE.findall(getattr(spec.settings, name) or ""):
            if var not in static_vars:
                problems.append(f"{at('settings', name)}: settings.{name} may only use {{town.*}} and {{hours.*}} "
                                f"values (it is said before anything is known about the call); '{{{var}}}' is "
                                f"not one{suggest(var, static_vars)}")

    for nid, node in nodes.items():
        for field, target in targets(node):
            path = field if isinstance(field, tuple) else (field,)
            need_node(target, "nodes", nid, *path)
        if isinstance(node, AskNode):
            for intent in node.routes:
                need_intent(intent, "nodes", nid, "routes", intent)
        if isinstance(node, MenuNode):
            problems += _check_menu(node, nid, at, need_intent)
        if isinstance(node, ConditionNode):
            for i, branch in enumerate(node.branches):
                problems += _check_condition(branch.if_, spec, at("nodes", nid, "branches", i), slots)
        if isinstance(node, TransferNode) and node.target != "agent" and node.target not in spec.services:
            problems.append(f"{at('nodes', nid, 'target')}: unknown transfer target '{node.target}'"
                            f"{suggest(node.target, spec.services)}; use 'agent' or a name under services:")
        if not isinstance(node, (GotoNode, ConditionNode)):
            if isinstance(node.globals, list):
                for g in node.globals:
                    if g not in spec.globals:
                        problems.append(f"{at('nodes', nid, 'globals')}: '{g}' is not a global intent; "
                                        f"use some of: {', '.join(spec.globals)}")
            needs_say = isinstance(node, (SayNode, AskNode, CollectNode, SurveyNode, TransferNode, HangupNode))
            if needs_say and not as_list(node.say):
                problems.append(f"{at('nodes', nid)}: missing prompt: {node.type} node '{nid}' says nothing; "
                                "add say: \"...\"")
            texts = [("say", t) for t in as_list(node.say)] + [("reprompt", t) for t in as_list(node.reprompt)]
            texts += [("brief", t) for t in as_list(node.brief)]
            if isinstance(node, CollectNode):
                texts += [("invalid", t) for t in as_list(node.invalid)]
                texts += [("confirm_say", t) for t in as_list(node.confirm_say)]
            if isinstance(node, TicketNode):
                texts += [(("fields", k), t) for k, t in node.fields.items()] + [("kind", node.kind)]
            if isinstance(node, SurveyNode):
                texts += [("thanks", t) for t in as_list(node.thanks)]
            for field, text in texts:
                for var in TEMPLATE.findall(text):
                    if var not in known_vars:
                        path = field if isinstance(field, tuple) else (field,)
                        problems.append(f"{at('nodes', nid, *path)}: unknown template value '{{{var}}}'"
                                        f"{suggest(var, known_vars)}; use a slot name or town.<key>")

    for table, days in spec.hours.items():
        for day, ranges in days.items():
            if day not in DAYS:
                problems.append(f"{at('hours', table, day)}: '{day}' is not a day; use lundi … dimanche")
            for i, r in enumerate(ranges):
                if parse_range(r) is None:
                    problems.append(f"{at('hours', table, day, i)}: bad time range '{r}'; write 08:30-12:00")
    for i, d in enumerate(spec.closed_dates):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
            problems.append(f"{at('closed_dates', i)}: bad date '{d}'; write YYYY-MM-DD")

    if not problems:
        problems += _unreachable(spec, at)
        problems += _silent_loops(spec, at)
    return problems


def _silent_loops(spec: FlowSpec, at) -> list[str]:
    """A cycle of say/goto/condition/ticket nodes would spin forever without hearing the caller, and
    the engine gives up on a run longer than ``MAX_SILENT_RUN`` (a walk, not recursion: a flow may
    chain thousands of nodes)."""
    silent = {n for n, node in spec.nodes.items() if isinstance(node, (SayNode, GotoNode, ConditionNode, TicketNode))}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    longest: dict[str, int] = {}  # silent nodes in a row from here (cycles aside)
    found: list[str] = []

    def silent_targets(nid: str) -> list[str]:
        return [t for _, t in targets(spec.nodes[nid]) if t in silent]

    for root in sorted(silent):
        if root in state:
            continue
        state[root] = 1
        path, todo = [root], [iter(silent_targets(root))]
        while todo:
            nid = path[-1]
            for t in todo[-1]:
                if state.get(t) == 1:
                    cycle = path[path.index(t):] + [t]
                    shown = cycle if len(cycle) <= 8 else cycle[:4] + [f"… ({len(cycle) - 6} more)"] + cycle[-2:]
                    found.append(f"{at('nodes', t)}: nodes {' -> '.join(shown)} loop without ever listening; "
                                 "route one of them to an ask, menu or collect node")
                elif t not in state:
                    state[t] = 1
                    path.append(t)
                    todo.append(iter(silent_targets(t)))
                    break
            else:
                state[nid] = 2
                longest[nid] = 1 + max((longest.get(t, 0) for t in silent_targets(nid)), default=0)
                path.pop()
                todo.pop()
    if not found and longest:
        head = max(sorted(longest), key=longest.__getitem__)
        if longest[head] > MAX_SILENT_RUN:
            found.append(f"{at('nodes', head)}: {longest[head]} say/goto/condition/ticket nodes in a row from "
                         f"'{head}' without listening, more than {MAX_SILENT_RUN}; put an ask, menu or collect "
                         "node among them")
    return found


def _check_menu(node: MenuNode, nid: str, at, need_intent) -> list[str]:
    problems = []
    keys = list(node.options)
    if not keys:
        problems.append(f"{at('nodes', nid, 'options')}: invalid keypad mapping: the menu has no options; "
                        "add options: {1: {label: ..., goto: ...}}")
    for key, option in node.options.items():
        if not KEY.fullmatch(key):
            problems.append(f"{at('nodes', nid, 'options', key)}: invalid keypad mapping: key '{key}' is not "
                            "keypad digits; use 0-9 or * (# ends the input)")
        for other in keys:
            if other != key and other.startswith(key):
                problems.append(f"{at('nodes', nid, 'options', other)}: invalid keypad mapping: key '{other}' "
                                f"starts with key '{key}', so it can never be typed; use distinct first digits")
        if option.intent:
            need_intent(option.intent, "nodes", nid, "options", key, "intent")
    return problems


def _check_condition(cond: Condition, spec: FlowSpec, where: str, slots: set[str]) -> list[str]:
    problems = []
    for table in (cond.open, cond.closed):
        if table is not None and table not in spec.hours:
            problems.append(f"{where}: unknown opening-hours table '{table}'; define it under hours:")
    for day in cond.weekday or []:
        if day not in DAYS:
            problems.append(f"{where}: '{day}' is not a day; use lundi … dimanche")
    if cond.time is not None and parse_range(cond.time) is None:
        problems.append(f"{where}: bad time range '{cond.time}'; write 12:00-14:00")
    if cond.slot is not None and cond.slot not in slots:
        problems.append(f"{where}: unknown slot '{cond.slot}'{suggest(cond.slot, slots)}; "
                        "use a slot filled by a collect node")
    if (cond.equals is not None or cond.one_of is not None) and cond.slot is None:
        problems.append(f"{where}: equals/one_of need slot:; add slot: <name>")
    for sub in (cond.all or []) + (cond.any or []) + ([cond.not_] if cond.not_ else []):
        problems += _check_condition(sub, spec, where, slots)
    return problems


def _unreachable(spec: FlowSpec, at) -> list[str]:
    roots = [spec.settings.start, spec.settings.main_menu, spec.settings.agent]
    roots += [t for t in spec.globals.values() if t not in SPECIAL_TARGETS]
    roots += [i.goto for i in spec.intents.values() if i.goto]
    seen, queue = set(), deque(roots)
    while queue:
        nid = queue.popleft()
        if nid in seen or nid not in spec.nodes:
            continue
        seen.add(nid)
        queue.extend(t for _, t in targets(spec.nodes[nid]))
    return [f"{at('nodes', nid)}: unreachable node '{nid}': nothing leads to it; point a goto/next/route "
            "to it or delete it" for nid in spec.nodes if nid not in seen]


def suggest(name: str, choices) -> str:
    """The hint " (did you mean 'x'?)" for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
