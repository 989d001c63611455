"""The benchmarks import what the project still has.

They run by hand (`make bench`), so a name moved in the code breaks them unseen: the startup
benchmark's predict row once died on `from rnnflow.data import source_table` after the table of
sources moved it. Every `from rnnflow… / rnnmodel… import name` in a benchmark, at any depth and
inside the code strings it runs with `python -c`, must resolve.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parents[2] / "benchmarks").glob("*.py"))
OURS = ("rnnflow", "rnnmodel", "flows", "tasks")


def _code_in(tree: ast.AST) -> list[ast.AST]:
    """The module and every string constant in it that parses as Python with an import of ours."""
    trees = [tree]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                trees.append(ast.parse(node.value))
            except SyntaxError:
                continue
    return trees


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each `from <ours> import name` in the file and its code strings."""
    found = []
    for tree in _code_in(ast.parse(path.read_text())):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                found += [(node.module, a.name) for a in node.names]
    return found


def test_the_reader_finds_imports_in_functions_and_code_strings(tmp_path):
    f = tmp_path / "b.py"
    f.write_text('def main():\n    from rnnflow.config import load_config\n'
                 'CODE = """\nfrom rnnflow.sources import source_table\nprint({m})\n"""\n')
    assert imports_of(f) == [("rnnflow.config", "load_config"), ("rnnflow.sources", "source_table")]


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_every_name_a_benchmark_imports_exists(path):
    missing = [f"from {mod} import {name}" for mod, name in imports_of(path)
               if not hasattr(importlib.import_module(mod), name)
               and importlib.util.find_spec(f"{mod}.{name}") is None]
    assert missing == [], f"{path.name}: {missing}"
