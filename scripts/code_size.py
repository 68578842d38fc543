"""Print the modules and functions of a package over the size limits of docs/architecture.md.

python scripts/code_size.py [--package neurogshn] [--module-lines 450] [--function-lines 80]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def oversized(
    package: Path, module_lines: int, function_lines: int
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(modules, functions)`` over the limits, each ``(lines, name)``, longest first."""
    modules, functions = [], []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        lines = source.count("\n")
        if lines > module_lines:
            modules.append((lines, str(path)))
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > function_lines:
                    functions.append((length, f"{path}::{node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("neurogshn"))
    parser.add_argument("--module-lines", type=int, default=450)
    parser.add_argument("--function-lines", type=int, default=80)
    args = parser.parse_args()
    modules, functions = oversized(args.package, args.module_lines, args.function_lines)
    print(f"modules over {args.module_lines} lines: {len(modules)}")
    for n, name in modules:
        print(f"  {n:5d}  {name}")
    print(f"functions over {args.function_lines} lines: {len(functions)}")
    for n, name in functions:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
