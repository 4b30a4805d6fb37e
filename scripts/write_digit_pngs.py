"""Write a few held-out handwritten digits as PNG files for ``python -m service classify``.

The digits come from the test part of the same stratified split the model was trained on (the seed
and test fraction are read from the model's metadata.json when ``--model-dir`` is given). Each file
is the digit exactly as the network saw it: white ink on black, 8-bit gray, saved either at its
original 8x8 or already upscaled to 32x32 by the same bilinear filter the server applies.

    python scripts/write_digit_pngs.py --out digits-png --count 10 --model-dir models/digits-lenet5
    python -m service classify --model digits-lenet5 digits-png/*.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.digits import digits_uint8, load_digits_split  # noqa: E402


def split_settings(model_dir: Path | None) -> dict:
    """The data split a trained model records in its newest version's metadata.json."""
    settings = {"seed": 0, "test_fraction": 0.2}
    if model_dir is None:
        return settings
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"--model-dir: no version folder in {model_dir}")
    meta = json.loads((model_dir / str(versions[0]) / "metadata.json").read_text())
    data = meta.get("data", {})
    settings.update({k: data[k] for k in ("seed", "test_fraction") if k in data})
    return settings


def write_pngs(out: Path, count: int, size: int, seed: int, test_fraction: float) -> list[Path]:
    """Save the first ``count`` test digits as ``digit-<dataset index>-label<y>.png``."""
    split = load_digits_split(test_fraction=test_fraction, seed=seed)
    originals, _ = digits_uint8()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(min(count, len(split.test_labels))):
        index, label = int(split.test_index[k]), int(split.test_labels[k])
        pixels = originals[index] if size == 8 else split.test_images[k]
        path = out / f"digit-{index:04d}-label{label}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("digits-png"), help="folder for the PNG files")
    parser.add_argument("--count", type=int, default=10, help="how many held-out digits (default 10)")
    parser.add_argument("--size", type=int, choices=(8, 32), default=32, help="save at 8x8 or upscaled to 32x32")
    parser.add_argument("--model-dir", type=Path, help="REPO/MODEL whose metadata gives the split (seed, test fraction)")
    parser.add_argument("--seed", type=int, help="split seed (overrides the model's)")
    args = parser.parse_args(argv)
    if args.count <= 0:
        parser.error(f"--count must be positive, got {args.count}")
    settings = split_settings(args.model_dir)
    if args.seed is not None:
        settings["seed"] = args.seed
    for path in write_pngs(args.out, args.count, args.size, settings["seed"], settings["test_fraction"]):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
