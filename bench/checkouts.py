"""The checkouts an A/B benchmark (bench/revisions.py) serves from: a git revision prepared once in a
worktree of its own, with its own venv and default model repository, or a checkout as it is.

    prepare(rev, cache, label="base") -> Checkout   worktree CACHE/<commit>, its venv (python3 -m venv,
                                                     then its scripts/install.sh) and models/ (its
                                                     ``python -m training defaults``), reused when done
    as_is(root, label="head")         -> Checkout   ROOT with this interpreter, or another worktree with
                                                     its .venv; models/ built if missing

Each revision's server runs its own code with its own interpreter and libraries, so the comparison
is of the code; ``Checkout.libraries`` says which library versions each one has.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.launcher import ROOT

# Outside the repository: a prepared revision holds a venv, which the repository's file walks (the
# packaging test, the container build context) must not meet; every worktree of the repository shares it.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convnet-bench" / "revisions"
PREPARED = ".bench-prepared.json"
LIBRARIES = ("import grpc, numpy, onnxruntime; "
             "print(f'onnxruntime {onnxruntime.__version__}, grpcio {grpc.__version__}, NumPy {numpy.__version__}')")


@dataclass(frozen=True)
class Checkout:
    """One side of the comparison: where its code is, which interpreter runs it, what it serves."""

    label: str
    commit: str  # the full commit id, with " + uncommitted changes" where the tree differs from it
    root: Path
    python: str
    models: Path
    http_port: bool  # whether its ``python -m service serve`` takes --http-port (older ones do not)
    libraries: str

    @property
    def where(self) -> dict:
        """bench/processes.start_server's keywords that start this checkout's server."""
        return {"models": self.models, "python": self.python, "cwd": self.root, "http_port": self.http_port}


def clean_env() -> dict[str, str]:
    """This environment without what would make another checkout's interpreter import this one's code."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def run(command: list[str], cwd: Path, log: Path | None = None, **env: str) -> str:
    """Run ``command`` in ``cwd``; its output goes to ``log`` (appended) and is returned; fail with its tail."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**clean_env(), **env}, timeout=1800)
    output = done.stdout + done.stderr
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(command)}\n{output}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} (in {cwd}) failed with {done.returncode}:\n{output[-3000:]}")
    return done.stdout


def git(*args: str, cwd: Path = ROOT) -> str:
    return run(["git", *args], cwd).strip()


def commit_of(root: Path) -> str:
    """HEAD's full id in ``root``, marked when tracked files differ from it."""
    commit = git("rev-parse", "HEAD", cwd=root)
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no", cwd=root) else "")


def resolve(rev: str) -> str:
    """The full commit id of ``rev`` (a commit id, branch, tag or HEAD~n) in this repository."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except RuntimeError:
        raise ValueError(f"not a commit of this repository: {rev!r}") from None


def describe(label: str, root: Path, python: str, commit: str) -> Checkout:
    """The checkout's server flags and libraries, asked of its own interpreter in its own tree."""
    usage = run([python, "-m", "service", "serve", "--help"], root)
    return Checkout(label, commit, root, python, root / "models", "--http-port" in usage,
                    run([python, "-c", LIBRARIES], root).strip())


def defaults_command(root: Path, python: str) -> list[str]:
    """The checkout's command that builds the default model repository into models/: ``python -m
    training defaults``, or ``python -m exporter defaults`` in a checkout from before it moved."""
    package = "training" if (root / "training" / "__main__.py").is_file() else "exporter"
    return [python, "-m", package, "defaults", "--out", "models"]


def build_models(root: Path, python: str, log: Path | None = None) -> None:
    """The default model repository as the checkout's scripts/serve.sh builds it (quick when present)."""
    run(defaults_command(root, python), root, log)


def prepare(rev: str, cache: Path = CACHE, label: str = "base", say=print) -> Checkout:
    """``rev`` in its own worktree, venv and models under ``cache``, prepared once (under a lock, so
    two runs do not prepare the same one at once) and reused; each step's seconds go to say()."""
    commit = resolve(rev)
    tree = cache / commit
    cache.mkdir(parents=True, exist_ok=True)
    python = tree / ".venv" / "bin" / "python"
    with open(cache / f"{commit}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tree / PREPARED).exists():
            log = cache / f"{commit}.log"
            say(f"{label}: preparing {commit[:12]} in {tree} (log: {log})")
            steps = {}
            for step, command, cwd, env in (
                    ("worktree", ["git", "worktree", "add", "--detach", "--force", str(tree), commit], ROOT, {}),
                    ("venv", [sys.executable, "-m", "venv", str(tree / ".venv")], cache, {}),
                    ("install", ["bash", "scripts/install.sh"], tree, {"INSTALL_APT": "0", "PYTHON": str(python)}),
                    ("models", lambda: defaults_command(tree, str(python)), tree, {})):  # once the tree exists
                if step == "worktree":
                    git("worktree", "prune")
                    if (tree / ".git").exists():
                        continue
                started = time.monotonic()
                run(command() if callable(command) else command, cwd, log, **env)
                steps[step] = round(time.monotonic() - started, 1)
                say(f"{label}: {step} {steps[step]:.0f} s")
            (tree / PREPARED).write_text(json.dumps({"commit": commit, "seconds": steps}) + "\n")
    return describe(label, tree, str(python), commit)


def as_is(root: Path = ROOT, label: str = "head", log: Path | None = None) -> Checkout:
    """A checkout as it is: this one runs with this interpreter, another worktree with its own .venv
    (else this interpreter, whose ``-m`` imports the worktree's code from its cwd)."""
    root = root.resolve()
    venv = root / ".venv" / "bin" / "python"
    python = sys.executable if root == ROOT or not venv.exists() else str(venv)
    build_models(root, python, log)
    return describe(label, root, python, commit_of(root))
