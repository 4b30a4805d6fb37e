"""Generate the Python gRPC stubs from protos/**/*.proto into service/generated/.

Run as ``python -m protos.build``; ``--check`` exits non-zero when the generated files are stale.
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
OUT_DIR = ROOT / "service" / "generated"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc on every .proto, writing *_pb2.py, *_pb2.pyi and *_pb2_grpc.py under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    if not files:
        return
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc", f"-I{PROTO_DIR}", f"-I{include}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
        *[str(f.relative_to(PROTO_DIR)) for f in files],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, files))}")
    for d in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Generated files that differ from a fresh generation (missing, changed or extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want = {p.relative_to(fresh) for p in fresh.rglob("*.py*") if p.is_file()}
        have = {p.relative_to(out_dir) for p in out_dir.rglob("*.py*") if p.is_file()} if out_dir.exists() else set()
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
