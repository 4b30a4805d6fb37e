"""pyproject.toml declares every import: each third-party module imported anywhere in the
repository belongs to a distribution named in `dependencies` or an extra, and what the server,
the CLI and the health check load at run time comes from `dependencies` alone (the runtime image
installs nothing else). .ci/run proves the same the slow way, in a fresh virtual environment.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SKIP_DIRS = {".venv", ".git", "build", "dist", "node_modules"}
# What `python -m service serve|classify` and deploy/healthcheck.py import before serving.
RUNTIME_ENTRY = ["service.cli", "service.server", "service.client", "service.idle", "deploy.healthcheck"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return norm(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def declared(groups: list[str]) -> set[str]:
    names = set()
    for group in groups:
        for requirement in PROJECT["dependencies"] if group == "" else PROJECT["optional-dependencies"][group]:
            name = requirement_name(requirement)
            if name == norm(PROJECT["name"]):
                extras = re.search(r"\[(.*)\]", requirement).group(1).split(",")
                names |= declared([e.strip() for e in extras])
            else:
                names.add(name)
    return names


def closure(names: set[str]) -> set[str]:
    """The distributions and everything they require (unconditional requirements only)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]


def local_names() -> set[str]:
    """Top-level names that are the repository's own modules and packages (tests import helpers by name)."""
    return {p.stem for p in python_files()} | {p.parent.name for p in python_files() if p.name == "__init__.py"} \
        | {p.name for p in ROOT.iterdir() if p.is_dir()}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@functools.cache
def module_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide ``module``; for one not installed here (an optional
    benchmark extra such as torch), the distribution of the same name."""
    return {norm(d) for d in module_distributions().get(module, [module])}


def test_every_third_party_import_is_declared():
    local, allowed = local_names(), declared(["", *PROJECT["optional-dependencies"]])
    missing = {}
    for path in python_files():
        for module in imported_modules(path) - local - set(sys.stdlib_module_names) - {"__future__"}:
            dists = distributions_of(module)
            if not dists & allowed:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


BLOCKER = """
import importlib, importlib.util, json, sys
blocked = set(json.loads(sys.argv[1]))
class Absent:  # in front of each finder: nothing of a blocked module is found, as if not installed
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)
    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [Absent(finder) for finder in sys.meta_path]
for m in json.loads(sys.argv[2]):
    importlib.import_module(m)
print(json.dumps({m: importlib.util.find_spec(m) is None for m in json.loads(sys.argv[3])}))
"""


def import_with_only_runtime(modules: list[str], probe: list[str] = ()) -> subprocess.CompletedProcess:
    """Import modules in a fresh interpreter where every installed module outside the runtime
    dependencies (and what they require) is absent, as in the runtime image: importing one fails,
    and ``importlib.util.find_spec`` (the optional probes libraries make) finds nothing. Prints, as
    JSON, whether each ``probe`` module looks absent."""
    runtime = closure(declared([""])) | {norm(PROJECT["name"])}
    blocked = sorted(m for m, dists in module_distributions().items()
                     if not {norm(d) for d in dists} & runtime and m not in sys.stdlib_module_names)
    return subprocess.run([sys.executable, "-c", BLOCKER, json.dumps(blocked), json.dumps(modules),
                           json.dumps(list(probe))], cwd=ROOT, capture_output=True, text=True, timeout=540)


def test_runtime_needs_only_runtime_dependencies():
    done = import_with_only_runtime(RUNTIME_ENTRY)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_checks_see_an_undeclared_import():
    """The import scan would catch PyYAML if the deploy extra did not declare it, and the runtime
    check refuses what only an extra brings."""
    done = import_with_only_runtime(["sklearn"])
    assert done.returncode != 0 and "ModuleNotFoundError: No module named 'sklearn'" in done.stderr
    assert "yaml" in imported_modules(ROOT / "deploy" / "stack.py")
    assert distributions_of("yaml") == {"pyyaml"}
    assert "pyyaml" not in declared([""]) and "pyyaml" in declared(["deploy"])


def test_a_blocked_module_looks_absent_to_an_optional_probe():
    """A library's optional probe (yarl's ``find_spec("pydantic_core")``) gets None for a module
    outside the runtime dependencies, not an exception; a runtime one is still found."""
    done = import_with_only_runtime([], probe=["sklearn", "numpy"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"sklearn": True, "numpy": False}
