"""The import directions between the layers (rnnflow/__init__.py draws them), read from the code
with `ast`: every import counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (type names only, never run)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rnnmodel", "rnnflow", "tasks", "flows")
PYFUNC_PAIR = {"rnnflow.forecaster", "rnnflow.forecaster_model"}  # MLflow loads the model through them
FRONT_DOOR = {"rnnflow.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by full name: ``from a.b import c`` is ``a.b.c`` when that
    is a module of this repository, else ``a.b``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _library(name: str) -> bool:
    """rnnflow's ML library: every module of rnnflow outside tracking/, ops/ and the front door."""
    return (_top(name) == "rnnflow" and name != "rnnflow" and name not in FRONT_DOOR
            and not _under(name, "rnnflow.tracking") and not _under(name, "rnnflow.ops"))


def _offenders(applies, banned) -> list[str]:
    return sorted(f"{m} imports {i}" for m, imps in IMPORTS.items() if applies(m)
                  for i in imps if banned(i))


def test_the_modules_are_read():
    """The rules below check something: the layers are where the test looks for them."""
    assert {"rnnflow.cli", "rnnflow.tracking.runs", "rnnflow.ops.team", "tasks.train",
            "flows.train", "rnnmodel.engine"} <= MODULES.keys()
    assert "mlflow" in IMPORTS["rnnflow.tracking.runs"] and "prefect" in IMPORTS["tasks.train"]


def test_only_the_tracking_package_and_the_pyfunc_pair_import_mlflow():
    assert _offenders(lambda m: not _under(m, "rnnflow.tracking") and m not in PYFUNC_PAIR,
                      lambda i: _top(i) == "mlflow") == []


def test_rnnmodel_knows_nothing_above_it():
    banned = {"rnnflow", "tasks", "flows", "prefect", "mlflow", "pandas", "optuna"}
    assert _offenders(lambda m: _top(m) == "rnnmodel", lambda i: _top(i) in banned) == []


def test_the_library_imports_neither_prefect_nor_ops_nor_tasks_nor_flows():
    assert _offenders(_library, lambda i: _top(i) in {"prefect", "prefect_dask", "tasks", "flows"}
                      or _under(i, "rnnflow.ops") or _under(i, "rnnflow.cli")) == []


def test_tracking_stands_below_tasks_flows_and_operations():
    """The tracking package imports no tasks, flows or front door, and of the operations only
    the standard-library process facts (pids, process start times)."""
    assert _offenders(lambda m: _under(m, "rnnflow.tracking"),
                      lambda i: _top(i) in {"tasks", "flows"} or _under(i, "rnnflow.cli")
                      or (_under(i, "rnnflow.ops") and i != "rnnflow.ops.processes")) == []


def test_tasks_import_no_flows_and_flows_no_rnnmodel():
    assert _offenders(lambda m: _top(m) == "tasks", lambda i: _top(i) == "flows") == []
    assert _offenders(lambda m: _top(m) == "flows", lambda i: _top(i) == "rnnmodel") == []


def test_operations_start_no_training_themselves():
    """ops/ runs servers and processes; it reaches flows only through prefect.yaml entrypoints
    (serve), never by importing tasks or flows."""
    assert _offenders(lambda m: _under(m, "rnnflow.ops"), lambda i: _top(i) in {"tasks", "flows"}) == []


def circles_of(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk meets, as 'a -> b -> a'."""
    circles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                circles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return circles


def test_no_import_circles():
    graph = {m: {i for i in imps if i in MODULES and i != m} for m, imps in IMPORTS.items()}
    assert circles_of(graph) == []


def test_the_reader_sees_lazy_imports_and_circles_but_not_type_checking_ones(tmp_path):
    """team.py and team_services.py imported each other inside functions: that counts. A name
    imported under TYPE_CHECKING only is never run, so it does not."""
    global ROOT
    (tmp_path / "a.py").write_text("def f():\n    from rnnflow.cli import main\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    import mlflow\nelse:\n    import prefect\n")
    saved, ROOT = ROOT, tmp_path
    try:
        assert _imports(tmp_path / "a.py") == {"rnnflow.cli"}
        assert _imports(tmp_path / "b.py") == {"typing", "prefect"}
    finally:
        ROOT = saved
    assert circles_of({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert circles_of({"a": {"b"}, "b": set()}) == []
