"""A trained model's parameters as a small checked file: float16 ``.npz`` plus a JSON sidecar.

The default repository ships Fashion-MNIST weights this way because the full training run takes
longer on a 2-core machine than a fresh start may (DESIGN.md): ``python -m training train ...
--weights-out`` writes the pair, and ``training.defaults`` checks the file's SHA-256 against the
pinned digest before it builds the model. float16 halves the file; the served model computes in
float32 from the rounded values, so the reference forward pass and the server agree exactly.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np


class WeightsError(ValueError):
    """A weights file that is missing, altered or does not fit; the message names the file."""


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rounded(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 copies of ``params`` holding exactly the float16 values a weights file stores."""
    return {k: np.asarray(v, dtype=np.float16).astype(np.float32) for k, v in params.items()}


def save_weights(path: str | Path, params: dict[str, np.ndarray], info: dict) -> str:
    """Write ``params`` as float16 to ``path`` (.npz) and ``info`` plus the file's SHA-256 to ``path``.json.

    Returns the digest. The archive is written byte-for-byte reproducibly (sorted members, a fixed
    timestamp), so the same parameters give the same digest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(params):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(params[name], dtype=np.float16), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, member.getvalue())
    path.write_bytes(buf.getvalue())
    digest = sha256(path)
    sidecar = {**info, "file": path.name, "sha256": digest, "dtype": "float16"}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return digest


def load_weights(path: str | Path, expected_sha256: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The float32 parameters and the sidecar info; raises ``WeightsError`` on a missing or altered file."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    for p in (path, sidecar):
        if not p.is_file():
            raise WeightsError(f"{p}: file not found")
    info = json.loads(sidecar.read_text())
    digest = sha256(path)
    want = expected_sha256 or info.get("sha256")
    if digest != want:
        raise WeightsError(f"{path}: SHA-256 {digest} does not match the expected {want}; "
                           "rebuild it with the training command in docs/BENCHMARKS.md")
    with np.load(path) as archive:
        params = {k: archive[k].astype(np.float32) for k in archive.files}
    return params, info
