"""The package's shape: no import circles, and no test or bench tooling in the runtime package.

A circle usually means a function lives in the wrong module (move it down rather than import
lazily); imports under ``if TYPE_CHECKING:`` do not run and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(*packages: str) -> dict[str, Path]:
    mods = {}
    for pkg in packages:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``path`` imports at run time (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(x) for stmt in node.body for x in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough for ~150 nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    mods = _modules("callbot", "callbot_testing")
    graph = {name: {d for d in _imports(p, mods) if d in mods and d != name} for name, p in mods.items()}
    assert _cycles(graph) == []


def test_runtime_package_holds_no_test_tooling() -> None:
    """callbot/ never imports callbot_testing, except the optional ``eval-intents --spoken``."""
    allowed = {"callbot.flows.cli"}
    mods = _modules("callbot")
    offenders = {name for name, p in mods.items()
                 if any(i.startswith("callbot_testing") for i in _imports(p, mods)) and name not in allowed}
    assert offenders == set()
    assert not (ROOT / "callbot" / "testing").exists() and not (ROOT / "callbot" / "bench").exists()


def test_flows_package_is_pure() -> None:
    """The flow engine is plain Python: no pipecat, no asyncio event loop, no audio."""
    mods = _modules("callbot")
    for name, p in mods.items():
        if name.startswith("callbot.flows") and name != "callbot.flows.cli" and name != "callbot.flows.chat":
            heavy = {i for i in _imports(p, {}) if i.split(".")[0] in ("pipecat", "aiohttp", "redis")}
            assert not heavy, f"{name} imports {heavy}"
