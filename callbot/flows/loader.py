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
        problems = [_clip(p) for p in problems]
        super().__init__("\n".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        return self.message


_CORE = "tag:yaml.org,2002:"
# what plain YAML resolves to without a written tag (values stay strings whatever their tag)
_PLAIN_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp", "merge", "value",
                                             "seq", "map"))
MAX_DEPTH = 40  # a real flow is ~8 levels deep (nodes > id > branches > 0 > if > any > 0 > slot)
MAX_VALUES = 100_000  # flows/mairie.yaml holds ~5 000; aliases (*name) must not blow a small file up


class _Walk:
    """Plain values out of a composed YAML tree, remembering the line of every key and list item.

    YAML aliases (``*name``) are expanded, as PyYAML would: the composed tree shares the
    anchored node, so a few lines can stand for a billion values ("billion laughs") or for a
    block that contains itself. Both are refused, as is nesting deeper than ``MAX_DEPTH``.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.lines: Lines = {}
        self.problems: list[str] = []
        self.values = 0
        self.open: set[int] = set()  # the nodes being walked: one met again is an alias to its own block

    def plain(self, node: yaml.Node, path: tuple, depth: int = 0) -> Any:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        self.values += 1
        if self.values > MAX_VALUES:  # said at the top-level key being expanded (the aliases share one node)
            raise FlowLoadError([f"{self.where}:{self.lines.get(path[:1], line)}: the flow holds more than "
                                 f"{MAX_VALUES} values once its aliases (*name) are expanded; use fewer aliases"])
        if node.tag not in _PLAIN_TAGS:  # !!python/object…, !custom: nothing in a flow is typed by a tag
            self.problems.append(f"{self.where}:{line}: YAML tag {_shown(node.tag.replace(_CORE, '!!'))} has no "
                                 "meaning in a flow; remove it (quote the text if it starts with '!')")
            return None
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.value in ("", "~", "null"):
                return None
            return node.value
        if depth >= MAX_DEPTH:
            self.problems.append(f"{self.where}:{line}: nested more than {MAX_DEPTH} levels deep; flatten it")
            return None
        if id(node) in self.open:
            self.problems.append(f"{self.where}:{line}: this block contains an alias (*name) to itself; "
                                 "a flow cannot contain itself")
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.plain(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
        finally:
            self.open.discard(id(node))
        raise AssertionError(node)

    def _mapping(self, node: yaml.MappingNode, path: tuple, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                self.problems.append(f"{self.where}:{line}: a mapping key must be a plain word; quote it")
                continue
            key = key_node.value
            if key in out:
                self.problems.append(f"{self.where}:{line}: duplicate key '{key}'; each key may appear once here "
                                     f"(first at line {self.lines[path + (key,)]})")
                continue
            self.lines[path + (key,)] = line
            out[key] = self.plain(value_node, path + (key,), depth + 1)
        return out


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than ``MAX_DEPTH`` while it scans.

    Its scanner is quadratic in the depth of ``[[[…`` (100 000 brackets: minutes) and its
    composer recursive (``RecursionError`` a few hundred levels down): stop at once instead.
    """

    def _too_deep(self) -> yaml.scanner.ScannerError:
        return yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep; flatten it",
                                         self.get_mark())

    def fetch_flow_collection_start(self, TokenClass) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise self._too_deep()
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_DEPTH:
            raise self._too_deep()
        return super().add_indent(column)


def parse_yaml(text: str, where: str) -> tuple[Any, Lines]:
    """YAML text -> (plain data with string scalars, path -> line)."""
    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
    except yaml.reader.ReaderError as e:  # no mark: a position in the text
        line = text.count("\n", 0, e.position) + 1
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else repr(e.character)
        raise FlowLoadError([f"{where}:{line}: invalid character {char} ({e.reason}); "
                             "remove it or save the file as plain UTF-8 text"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise FlowLoadError([f"{where}:{line}: invalid YAML ({getattr(e, 'problem', None) or e}); "
                             "check indentation and quote text containing ': ' or '#'"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise FlowLoadError([f"{where}:1: the file is empty; start from flows/mairie.yaml"])
    walk = _Walk(where)
    data = walk.plain(root, ())
    if walk.problems:
        raise FlowLoadError(walk.problems)
    return data, walk.lines


def line_of(lines: Lines, path: tuple) -> int:
    """Line of the deepest known prefix of ``path`` (pydantic locations include union tags)."""
    best, known = 1, ()
    for part in path:
        for candidate in (known + (part,),):
            if candidate in lines:
                known = candidate
                best = lines[candidate]
    return best


def _clip(problem: str, limit: int = 400) -> str:
    """A problem quoting a huge value keeps its start (where, what) and its end (how to fix)."""
    return problem if len(problem) <= limit else problem[: limit - 120] + " … " + problem[-117:]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _explain(err: dict, data: Any) -> str:
    loc = err["loc"]
    kind = err["type"]
    field = ".".join(str(p) for p in loc)
    if kind == "missing":
        return f"'{loc[-1]}' is missing in {'.'.join(map(str, loc[:-1])) or 'the file'}; add it"
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'; remove it or check the spelling against flows/schema.json"
    if kind == "literal_error" and loc and loc[-1] == "slot_type":
        return (f"bad slot type {_shown(err.get('input'))}; use one of: {', '.join(SLOT_TYPES)}")
    if kind == "union_tag_invalid":
        return (f"bad node type {_shown(err.get('ctx', {}).get('tag'))}; use one of: say, ask, menu, collect, "
                "goto, condition, ticket, transfer, survey, hangup")
    if kind == "union_tag_not_found":
        return "node has no 'type'; add type: say | ask | menu | collect | goto | condition | ticket | ..."
    return f"{field}: {err['msg']} (got {_shown(err.get('input'))}); fix the value"


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


def load_flow_text(text: str | bytes, where: str) -> tuple[FlowSpec, Lines]:
    """Parse and check a flow's text (UTF-8 bytes or str): everything ``load_flow`` checks, no ``Flow`` built.

    No file, no cache, nothing trained: fast enough to run 10 000 times (the flow fuzzer).
    Raises ``FlowLoadError`` listing every problem as ``where:line: …``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text.count(b"\n", 0, e.start) + 1
            raise FlowLoadError([f"{where}:{line}: the file is not UTF-8 (byte 0x{text[e.start]:02x}); "
                                 "save it as UTF-8"]) from None
    spec, lines = load_spec(text, where)
    problems = checks.check_spec(spec, lines, where)
    if problems:
        raise FlowLoadError(sorted(problems, key=_line_key))
    return spec, lines


def build_flow(spec: FlowSpec, lines: Lines, where: str, *, path: Path | None = None, version: str = "") -> Flow:
    """Compile a checked spec; the ``Flow``'s own checks (the opening prompts) fail as ``FlowLoadError`` too."""
    try:
        return Flow(spec, path=path, version=version, lines=lines)
    except FlowLoadError:
        raise
    except FlowError as e:
        raise FlowLoadError([e.message]) from None


def load_flow(path: str | Path):
    """Read, validate and compile a flow file; raises ``FlowLoadError`` listing every problem."""
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FlowLoadError([f"{where}:1: cannot read the flow file ({e.strerror}); check the path"]) from None
    version = hashlib.sha256(raw).hexdigest()[:12]
    key = (str(path), version)
    if key in _cache:  # flows are immutable: the same bytes give the same Flow
        return _cache[key]
    spec, lines = load_flow_text(raw, where)
    flow = build_flow(spec, lines, where, path=path, version=version)
    if len(_cache) >= 8:
        _cache.pop(next(iter(_cache)))
    _cache[key] = flow
    return flow


_cache: dict[tuple[str, str], Any] = {}
