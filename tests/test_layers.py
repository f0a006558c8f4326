"""The layering of docs/architecture.md holds in the imports: no import cycle among the modules of
tlr_ray/ and analysis/, lazy (function-level) imports included, and analysis/ never imports tlr_ray
(it reads results, not our code). `importlib.import_module` calls count as imports."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tlr_ray", "analysis")


def modules() -> dict[str, Path]:
    out = {}
    for base in PACKAGES:
        for path in (ROOT / base).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports anywhere in its file. `from pkg import sub` is an edge to
    pkg.sub when that is a module (the package itself is only being initialised)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [node.module, *subs]
            elif dynamic := dynamic_import(node):
                # importlib.import_module(f"pkg.{name}"): an edge to every module it may load
                prefix = dynamic if dynamic.endswith(".") else dynamic + "."
                targets = [m for m in mods if m == dynamic or m.startswith(prefix)]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def dynamic_import(node: ast.AST) -> str | None:
    """The module name, or the constant prefix of an f-string one ("tlr_ray.tasks."), that an
    `importlib.import_module(...)` call loads; None for any other node."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module" and node.args):
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_has_the_dynamic_imports():
    """get_task imports task modules by name (importlib): those edges count like any import."""
    graph = import_graph()
    assert {"tlr_ray.tasks.nli", "tlr_ray.tasks.dp"} <= graph["tlr_ray.tasks"]
    assert "tlr_ray.tasks" not in graph["tlr_ray.tasks.nli"]  # task modules import tasks.base, not the package


def test_no_import_cycle_among_our_modules():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the packages
    found = cycles(graph)
    assert not found, "import cycles (lazy imports included): " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) + ")" for c in found)


def test_analysis_does_not_import_tlr_ray():
    graph = import_graph()
    assert not {m: sorted(t for t in ts if t.startswith("tlr_ray")) for m, ts in graph.items()
                if m.startswith("analysis") and any(t.startswith("tlr_ray") for t in ts)}
