"""The trained default model digits-lenet5, served: every held-out digit, sent as a PNG through the
running server (gRPC, concurrent requests the batch queue merges), gets the same class as the NumPy
model computes on the training pipeline's tensor, so the served accuracy equals the NumPy accuracy."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_server_helpers import assert_scores, reply_scores

from training.digits import load_digits_split
from exporter.repository import resolve_version
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits-lenet5"
TARGET = 0.97
PER_REQUEST = 24


@pytest.fixture(scope="module")
def held_out(model_repo):
    """The test split the model was trained against, per its metadata, and its accuracy record."""
    model_dir = model_repo / MODEL
    meta = json.loads((model_dir / str(resolve_version(model_dir)) / "metadata.json").read_text())
    split = load_digits_split(seed=meta["data"]["seed"], test_fraction=meta["data"]["test_fraction"])
    return split, meta


def write_pngs(model_repo: Path, out: Path, size: int, count: int) -> list[Path]:
    result = subprocess.run([sys.executable, "scripts/write_digit_pngs.py", "--out", str(out), "--count", str(count),
                             "--size", str(size), "--model-dir", str(model_repo / MODEL)],
                            cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines()]


def test_the_default_model_reaches_the_target_accuracy(held_out, reference):
    split, meta = held_out
    numpy_pred = reference(MODEL, split.x_test).argmax(axis=1)
    accuracy = float((numpy_pred == split.test_labels).mean())
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1e-6)
    assert accuracy >= TARGET, f"digits-lenet5 test accuracy {accuracy:.2%} is below {TARGET:.0%}"


@pytest.mark.parametrize("png_size", [8, 32])
def test_served_predictions_equal_the_numpy_model_on_every_held_out_digit(server, model_repo, held_out, reference,
                                                                         png_size, tmp_path):
    split, _ = held_out
    paths = write_pngs(model_repo, tmp_path, png_size, len(split.test_labels))
    assert [int(p.stem.split("label")[1]) for p in paths] == list(split.test_labels)
    files = [p.read_bytes() for p in paths]

    stub = convnet_pb2_grpc.ClassifierStub(server.channel())
    images_before = server.metric("convnet_images_total", model=MODEL)
    futures = [stub.Classify.future(pb.ClassifyRequest(model=MODEL, images=pb.EncodedImages(images=files[i:i + PER_REQUEST])),
                                    timeout=120)
               for i in range(0, len(files), PER_REQUEST)]
    served = np.concatenate([reply_scores(f.result()) for f in futures])
    assert server.metric("convnet_images_total", model=MODEL) - images_before == len(files)

    expected = reference(MODEL, split.x_test)
    assert_scores(served, expected)
    served_pred, numpy_pred = served.argmax(axis=1), expected.argmax(axis=1)
    np.testing.assert_array_equal(served_pred, numpy_pred)
    served_accuracy = float((served_pred == split.test_labels).mean())
    assert served_accuracy == float((numpy_pred == split.test_labels).mean()) >= TARGET


def test_classify_cli_names_the_digits(server, model_repo, held_out, reference, tmp_path):
    split, _ = held_out
    paths = write_pngs(model_repo, tmp_path, 32, 5)
    result = subprocess.run([sys.executable, "-m", "service", "classify", "--target", server.target, "--model", MODEL,
                             "--json", *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    top = [json.loads(line)["top"][0]["label"] for line in result.stdout.splitlines()]
    assert top == [str(c) for c in reference(MODEL, split.x_test[:5]).argmax(axis=1)]
