"""The package's import graph keeps the data flow's direction (docs/architecture.md).

Every ``import`` of a ``neurogshn`` module is read from the source (top-level and
function-local alike; those under ``if TYPE_CHECKING:`` are kept apart as type-only), and the
rules below are checked on the resulting module graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurogshn"

#: (importer package, imported package): imports that would run against the data flow.
FORBIDDEN = [
    ("model", "losses"),
    ("model", "training"),
    ("model", "tasks"),
    ("model", "data"),
    ("losses", "training"),
    ("losses", "tasks"),
    ("training", "tasks"),
    ("training", "jobs"),
    ("tasks", "jobs"),
    ("data", "model"),
    ("data", "losses"),
    ("data", "training"),
    ("data", "tasks"),
    ("graph", "model"),
    ("graph", "training"),
    ("graph", "tasks"),
    ("graph", "losses"),
    ("features", "model"),
    ("features", "graph"),
    ("segmentation", "features"),
    ("segmentation", "graph"),
    ("viz", "training"),
    ("viz", "tasks"),
    ("hardware", "jobs"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, bool]]:
    """``(imported module, type_only)`` for every neurogshn import in ``tree``."""
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, type_only) for a in node.names if a.name.startswith("neurogshn"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("neurogshn"):
                out.append((target, type_only))
                # ``from neurogshn.model import gshn`` imports the submodule
                out.extend((f"{target}.{a.name}", type_only) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return out


def import_graph() -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """Modules, runtime import edges and type-only import edges between them."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    runtime: dict[str, set[str]] = {m: set() for m in files}
    typing: dict[str, set[str]] = {m: set() for m in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, type_only in _imports(tree, name, path.name == "__init__.py"):
            if target in files and target != name:
                (typing if type_only else runtime)[name].add(target)
    return set(files), runtime, typing


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def _without_package_faces(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges into a package's ``__init__`` stand for the submodules it hands on; an
    ``__init__`` that re-exports its own submodules is not a cycle with them."""
    return {
        m: {t for t in targets if not (m.startswith(t + ".") and package_of(t) == package_of(m))}
        for m, targets in edges.items()
    }


def test_the_graph_is_read():
    modules, runtime, typing = import_graph()
    assert "neurogshn.model.gshn" in modules
    assert "neurogshn.model.itm" in runtime["neurogshn.model.gshn"]
    assert "neurogshn.model.itm" in typing["neurogshn.losses.itm"]


@pytest.mark.parametrize("importer,imported", FORBIDDEN)
def test_no_import_against_the_data_flow(importer: str, imported: str):
    _, runtime, typing = import_graph()
    bad = sorted(
        f"{m} -> {t}"
        for edges in (runtime, typing)
        for m, targets in edges.items()
        for t in targets
        if package_of(m) == importer and package_of(t) == imported
    )
    assert not bad, f"{importer}/ must not import {imported}/: {bad}"


def test_losses_import_the_model_for_types_only():
    _, runtime, _ = import_graph()
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in runtime.items()
        for t in targets
        if package_of(m) == "losses" and package_of(t) == "model"
    )
    assert not bad, bad


def test_no_import_cycles():
    _, runtime, _ = import_graph()
    found = cycles(_without_package_faces(runtime))
    assert not found, found


def test_the_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
