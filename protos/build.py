"""Generate the Python gRPC stubs from protos/**/*.proto into service/generated/.

Run as ``python -m protos.build``; ``--check`` exits non-zero when the generated files are stale.
The .proto files are mapped to the virtual path ``service/generated/`` (protoc's
``-Ivirtual=disk``), so the generated modules import each other as ``service.generated...``
and work as an ordinary package, with no sys.path changes.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
PACKAGE = Path("service") / "generated"
OUT_DIR = ROOT / PACKAGE


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc on every .proto, writing *_pb2.py, *_pb2.pyi and *_pb2_grpc.py under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    if not files:
        return
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = [
            "protoc", f"-I{PACKAGE.as_posix()}={PROTO_DIR}", f"-I{include}",
            f"--python_out={root}", f"--pyi_out={root}", f"--grpc_python_out={root}",
            *[(PACKAGE / f.relative_to(PROTO_DIR)).as_posix() for f in files],
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {', '.join(map(str, files))}")
        shutil.copytree(root / PACKAGE, out_dir, dirs_exist_ok=True)
    for d in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


def _generated_files(root: Path) -> set[Path]:
    """Generated sources under root, relative to it (bytecode caches are not generated sources)."""
    return {p.relative_to(root) for p in root.rglob("*") if p.suffix in (".py", ".pyi") and p.is_file()}


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Generated files that differ from a fresh generation (missing, changed or extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want = _generated_files(fresh)
        have = _generated_files(out_dir) if out_dir.exists() else set()
        diff = sorted(str(p) for p in want ^ have)
        diff += sorted(str(p) for p in want & have if not filecmp.cmp(fresh / p, out_dir / p, shallow=False))
        return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protos.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale generated files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated stubs: " + ", ".join(stale) + " (run python -m protos.build)", file=sys.stderr)
            return 1
        return 0
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    generate(OUT_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
