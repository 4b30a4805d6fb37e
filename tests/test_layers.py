"""The packages' floors, read from the source with ``ast``: kernels -> exporter -> training ->
service -> bench, every import pointing down (or within its package) and no two modules importing
each other, directly or round a longer circle.

Every import counts: at the top, inside a function (a lazy import), and a module named by a string
to ``importlib.import_module``, ``__import__`` or ``importlib.util.find_spec``. The server imports
nothing of training either: the runtime image installs the server without the training package's
dependencies, so what the server needs of it (the page's sample images) comes as files.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("kernels", "exporter", "training", "service", "bench")
"""Bottom to top: a package may import its own modules and those of the floors below it."""
NOT_IMPORTED_BY = {"service": {"training"}}
"""Floors below that a package still must not import (see the module docstring)."""
IMPORTERS = {"import_module", "__import__", "find_spec"}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the floors (generated gRPC stubs left out), by dotted name."""
    modules = {}
    for floor in FLOORS:
        for path in sorted((root / floor).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "generated" not in parts:
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports. A dotted name counts as its longest prefix that is
    a module; ``from package import name`` as the submodule ``package.name`` where there is one."""
    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                names.update(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names)
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if called in IMPORTERS:
                    names.add(node.args[0].value)
        graph[name] = {target for n in names if (target := resolve(n)) is not None and target != name}
    return graph


def upward(graph: dict[str, set[str]]) -> list[str]:
    floor = {f: i for i, f in enumerate(FLOORS)}
    found = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            below = target.split(".")[0]
            if floor[below] > floor[top] or below in NOT_IMPORTED_BY.get(top, ()):
                found.append(f"{module} -> {target}")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(project_modules())


def test_every_import_points_down(graph):
    assert upward(graph) == []


def test_no_modules_import_each_other(graph):
    assert circles(graph) == []


def test_the_checks_find_what_they_look_for(tmp_path):
    """A made-up tree with an import up (a lazy one), one by importlib, and a circle of three."""
    files = {
        "kernels/__init__.py": "",
        "kernels/a.py": "def f():\n    from service import cli\n",
        "exporter/__init__.py": "from . import b\n",
        "exporter/b.py": "import importlib\nimportlib.import_module('bench.load')\nfrom exporter import c\n",
        "exporter/c.py": "from .d import x\n",
        "exporter/d.py": "from exporter.b import y\nfrom kernels import a\n",
        "training/__init__.py": "", "service/__init__.py": "", "service/cli.py": "import training.e\n",
        "training/e.py": "", "bench/__init__.py": "", "bench/load.py": "from service.cli import main\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    made_up = import_graph(project_modules(tmp_path))
    assert upward(made_up) == ["exporter.b -> bench.load", "kernels.a -> service.cli", "service.cli -> training.e"]
    assert circles(made_up) == [["exporter.b", "exporter.c", "exporter.d"]]


def test_bench_runs_as_a_package_without_path_edits():
    """bench/ scripts run as ``python -m bench.<script>`` from the checkout: none edits sys.path, so
    none needs an import below code (flake8's E402) either."""
    found = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "bench").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if "sys.path" in line or "noqa: E402" in line]
    assert found == []
