"""Strict flow loading: YAML -> plain values with line numbers -> pydantic -> checks -> ``Flow``.

Why our own YAML walk: PyYAML's implicit typing turns keypad keys ``012`` into
``12`` and ``no``/``on`` into booleans, and drops line numbers. We compose the
node tree (SafeLoader, so no arbitrary objects), keep every scalar as a string
and remember the line of every key and list item, so every error reads
``file:line: what is wrong; how to fix``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from callbot.errors import FlowError
from callbot.flows import checks
from callbot.flows.engine import Flow
from callbot.flows.schema import NODE_TYPES, SLOT_TYPES, FlowSpec

Lines = dict[tuple, int]


class FlowLoadError(FlowError):
    """All problems found in one flow file; ``problems`` holds one ``file:line: …`` string each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        return self.message


def _plain(node: yaml.Node, path: tuple, lines: Lines, where: str, problems: list[str]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.value in ("", "~", "null"):
            return None
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, path + (i,), lines, where, problems) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(f"{where}:{line}: a mapping key must be a plain word; quote it")
                continue
            key = key_node.value
            if key in out:
                problems.append(f"{where}:{line}: duplicate key '{key}'; each key may appear once here "
                                f"(first at line {lines[path + (key,)]})")
                continue
            lines[path + (key,)] = line
            out[key] = _plain(value_node, path + (key,), lines, where, problems)
        return out
    raise AssertionError(node)


def parse_yaml(text: str, where: str) -> tuple[Any, Lines]:
    """YAML text -> (plain data with string scalars, path -> line)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise FlowLoadError([f"{where}:{line}: invalid YAML ({getattr(e, 'problem', e)}); "
                             "check indentation and quote text containing ': ' or '#'"]) from None
    if root is None:
        raise FlowLoadError([f"{where}:1: the file is empty; start from flows/mairie.yaml"])
    lines: Lines = {}
    problems: list[str] = []
    data = _plain(root, (), lines, where, problems)
    if problems:
        raise FlowLoadError(problems)
    return data, lines


def line_of(lines: Lines, path: tuple) -> int:
    """Line of the deepest known prefix of ``path`` (pydantic locations include union tags)."""
    best, known = 1, ()
    for part in path:
        for candidate in (known + (part,),):
            if candidate in lines:
                known = candidate
                best = lines[candidate]
    return best


def _explain(err: dict, data: Any) -> str:
    loc = err["loc"]
    kind = err["type"]
    field = ".".join(str(p) for p in loc)
    if kind == "missing":
        return f"'{loc[-1]}' is missing in {'.'.join(map(str, loc[:-1])) or 'the file'}; add it"
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'; remove it or check the spelling against flows/schema.json"
    if kind == "literal_error" and loc and loc[-1] == "slot_type":
        return (f"bad slot type {err.get('input')!r}; use one of: {', '.join(SLOT_TYPES)}")
    if kind == "union_tag_invalid":
        return (f"bad node type {err.get('ctx', {}).get('tag')!r}; use one of: say, ask, menu, collect, "
                "goto, condition, ticket, transfer, survey, hangup")
    if kind == "union_tag_not_found":
        return "node has no 'type'; add type: say | ask | menu | collect | goto | condition | ticket | ..."
    return f"{field}: {err['msg']} (got {err.get('input')!r}); fix the value"


def load_spec(text: str, where: str) -> tuple[FlowSpec, Lines]:
    data, lines = parse_yaml(text, where)
    if not isinstance(data, dict):
        raise FlowLoadError([f"{where}:1: the file must be a mapping (name:, settings:, intents:, nodes:)"])
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            if len(loc) > 2 and loc[0] == "nodes" and loc[2] in NODE_TYPES:  # drop the union tag
                loc = loc[:2] + loc[3:]
                err = {**err, "loc": loc}
            problems.append(f"{where}:{line_of(lines, loc)}: {_explain(err, data)}")
        raise FlowLoadError(sorted(set(problems), key=_line_key)) from None
    return spec, lines


def _line_key(problem: str) -> tuple:
    parts = problem.split(":", 2)
    try:
        return (int(parts[1]), problem)
    except (IndexError, ValueError):
        return (0, problem)


def load_flow(path: str | Path):
    """Read, validate and compile a flow file; raises ``FlowLoadError`` listing every problem."""
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FlowLoadError([f"{where}:1: cannot read the flow file ({e.strerror}); check the path"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FlowLoadError([f"{where}:1: the file is not UTF-8; save it as UTF-8"]) from None
    version = hashlib.sha256(raw).hexdigest()[:12]
    key = (str(path), version)
    if key in _cache:  # flows are immutable: the same bytes give the same Flow
        return _cache[key]
    spec, lines = load_spec(text, where)
    problems = checks.check_spec(spec, lines, where)
    if problems:
        raise FlowLoadError(sorted(problems, key=_line_key))
    flow = Flow(spec, path=path, version=version, lines=lines)
    if len(_cache) >= 8:
        _cache.pop(next(iter(_cache)))
    _cache[key] = flow
    return flow


_cache: dict[tuple[str, str], Any] = {}
