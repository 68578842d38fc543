"""The model, the losses, training and scoring know no benchmark (tests/).

The embedded benchmark (:mod:`neurogshn.data.relational`) sits behind an adapter: its words,
kinds of negative and question types reach training and scoring only through the data files
and :func:`neurogshn.data.diagnostics.diagnostics_for`. This test reads every module of the
four packages with :mod:`ast` and fails on any ``import`` of the benchmark's package, including
imports inside functions and relative imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import neurogshn

PACKAGE_ROOT = Path(neurogshn.__file__).resolve().parent
BENCHMARK_PACKAGE = "neurogshn.data.relational"
GENERIC_PACKAGES: tuple[str, ...] = ("model", "losses", "training", "tasks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file at ``path`` (the module ``module``,
    default: its name inside the package), relative imports resolved and ``from package
    import name`` counted as ``package.name`` too (``name`` may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path) if module is None else module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            out.append((node.lineno, source))
            out.extend((node.lineno, f"{source}.{alias.name}") for alias in node.names)
    return out


def _is_benchmark(name: str) -> bool:
    return name == BENCHMARK_PACKAGE or name.startswith(BENCHMARK_PACKAGE + ".")


def test_the_checker_sees_every_form_of_import(tmp_path: Path) -> None:
    """Top-level, in-function, ``from`` and relative imports are all found."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import neurogshn.data.relational.logic\n"
        "from neurogshn.data import relational\n"
        "def f():\n"
        "    from ..data.relational.vocabulary import SHAPES\n"
        "    from neurogshn.data.coco import load_json\n"
        "    from . import config\n"
    )
    found = imported_modules(probe, "neurogshn.training.probe")
    assert [(line, name) for line, name in found if _is_benchmark(name)] == [
        (1, "neurogshn.data.relational.logic"),
        (2, "neurogshn.data.relational"),
        (4, "neurogshn.data.relational.vocabulary"),
        (4, "neurogshn.data.relational.vocabulary.SHAPES"),
    ]
    assert (6, "neurogshn.training.config") in found


@pytest.mark.parametrize("package", GENERIC_PACKAGES)
def test_no_benchmark_import(package: str) -> None:
    files = sorted((PACKAGE_ROOT / package).rglob("*.py"))
    assert files, package
    offending: dict[str, str] = {}  # one entry per import statement
    for path in files:
        for line, name in imported_modules(path):
            where = f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}"
            if _is_benchmark(name):
                offending.setdefault(where, f"{where}: {name}")
    assert not offending, (
        f"neurogshn/{package} imports the benchmark's package (use the data files and "
        "neurogshn.data.diagnostics instead):\n" + "\n".join(offending.values())
    )
