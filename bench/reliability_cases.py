"""Every bad input to try against a live server, over every API, with the answer each should get.

``all_cases()`` is the one list of cases: tests/integration/test_reliability_inputs.py runs each
against a server and asserts the status and the words of its message; ``python -m
bench.reliability_runner`` runs the same cases and writes what it observed, so the table in
docs/RELIABILITY.md is never copied by hand.

The server runs with ``SERVER_ENV`` (1 MiB messages, 1 Mpixel images) on a repository of
``cifar-tiny`` and ``broken`` (a corrupt model.onnx), built by ``build_repo``. The inputs are made by
bench/bad_inputs.py; bench/reliability_runner.py sends the cases and tabulates what came back.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from service.generated.convnet.v1 import convnet_pb2 as pb
from bench import ROOT
from bench.bad_inputs import gif, images, png, png_bomb, tensor, with_value


DOC = ROOT / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- cases:begin -->", "<!-- cases:end -->"
MESSAGE_LIMIT = 1 << 20
PIXEL_LIMIT = 1_000_000
SERVER_ENV = {"CONVNET_MAX_MESSAGE_BYTES": str(MESSAGE_LIMIT), "CONVNET_MAX_IMAGE_PIXELS": str(PIXEL_LIMIT)}
MODEL = "cifar-tiny"
TRAVERSAL_NAMES = ["../cifar-tiny", "cifar-tiny/../cifar-tiny", "..", "a/b", "/etc/passwd", "cifar-tiny/1/model.onnx"]


def build_repo(repo: Path, models: Path) -> Path:
    """cifar-tiny from ``models`` and ``broken``: the same config with a corrupt model.onnx."""
    shutil.copytree(models / MODEL, repo / MODEL)
    shutil.copytree(models / MODEL, repo / "broken")
    config = repo / "broken" / "config.json"
    config.write_text(config.read_text().replace(f'"{MODEL}"', '"broken"', 1))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"\x08\x07 this is not an ONNX file")
    return repo


# -- the cases ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input: which API, what is sent, the expected status and words of its message."""

    api: str  # classify, stream, kserve, model-info, wire (raw bytes to a method)
    id: str
    input: str
    code: str
    words: tuple[str, ...]
    make: Callable[[], object]  # builds the request message (or messages)


def own_cases() -> list[tuple[str, str, str, tuple[str, ...], Callable[[], pb.ClassifyRequest]]]:
    """Bad ClassifyRequests: sent both by Classify and inside a ClassifyStream."""
    r = pb.ClassifyRequest
    ok = tensor(images(1))
    big = images(90)  # 90 x 12 KiB > 1 MiB
    cases = [
        ("wrong-rank", "tensor.shape [3, 32, 32]", "INVALID_ARGUMENT", ("tensor.shape", "[N, 3, 32, 32]", "[3, 32, 32]"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[3, 32, 32], data=b"\0" * 12288))),
        ("wrong-shape", "tensor.shape [2, 3, 28, 28]", "INVALID_ARGUMENT", ("tensor.shape", "[N, 3, 32, 32]", "[2, 3, 28, 28]"),
         lambda: r(model=MODEL, tensor=tensor(images(2, (3, 28, 28))))),
        ("byte-length", "shape [1, 3, 32, 32] with 100 bytes", "INVALID_ARGUMENT", ("tensor.data", "12288 bytes", "received 100"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[1, 3, 32, 32], data=b"\0" * 100))),
        ("odd-byte-length", "shape [1, 3, 32, 32] with 12289 bytes", "INVALID_ARGUMENT", ("tensor.data", "12288", "12289"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[1, 3, 32, 32], data=b"\0" * 12289))),
        ("empty-batch", "tensor.shape [0, 3, 32, 32]", "INVALID_ARGUMENT", ("tensor.shape[0]", "at least 1", "received 0"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[0, 3, 32, 32]))),
        ("negative-dim", "tensor.shape [-1, 3, 32, 32]", "INVALID_ARGUMENT", ("tensor.shape[0]", "at least 1", "-1"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[-1, 3, 32, 32]))),
        ("huge-dim", "tensor.shape [2^62, 3, 32, 32], no data", "INVALID_ARGUMENT", ("tensor.data", "bytes", "received 0"),
         lambda: r(model=MODEL, tensor=pb.Tensor(shape=[2 ** 62, 3, 32, 32]))),
        ("too-many-images", "65 images (max_batch_size 64)", "INVALID_ARGUMENT", ("max_batch_size=64", "received 65"),
         lambda: r(model=MODEL, tensor=tensor(images(65)))),
        ("too-many-encoded", "65 encoded images", "INVALID_ARGUMENT", ("images.images", "max_batch_size=64", "received 65"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[png(np.zeros((4, 4), np.uint8))] * 65))),
        ("missing-input", "neither tensor nor images", "INVALID_ARGUMENT", ("input", "tensor or encoded images", "neither"),
         lambda: r(model=MODEL)),
        ("no-images", "images with an empty list", "INVALID_ARGUMENT", ("images.images", "at least 1 image", "received 0"),
         lambda: r(model=MODEL, images=pb.EncodedImages())),
        ("nan", "NaN at [0, 1, 2, 3]", "INVALID_ARGUMENT", ("tensor.data", "finite", "nan", "[0, 1, 2, 3]"),
         lambda: r(model=MODEL, tensor=tensor(with_value(np.nan)))),
        ("inf", "-Inf at [1, 0, 0, 0]", "INVALID_ARGUMENT", ("tensor.data", "finite", "-inf", "[1, 0, 0, 0]"),
         lambda: r(model=MODEL, tensor=tensor(with_value(-np.inf, (1, 0, 0, 0))))),
        ("undecodable-image", "images[0] = b'not an image'", "INVALID_ARGUMENT", ("images.images[0]", "PNG or JPEG", "12 bytes"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[b"not an image"]))),
        ("truncated-png", "second image cut to 60 bytes", "INVALID_ARGUMENT", ("images.images[1]", "PNG or JPEG", "60 bytes"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[
             png(np.zeros((8, 8, 3), np.uint8)), png(np.random.default_rng(1).integers(0, 255, (20, 20, 3), np.uint8))[:60]]))),
        ("empty-image", "images[0] of 0 bytes", "INVALID_ARGUMENT", ("images.images[0]", "PNG or JPEG", "0 bytes"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[b""]))),
        ("gif", "a GIF image", "INVALID_ARGUMENT", ("images.images[0]", "PNG or JPEG"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[gif()]))),
        ("oversized-image", f"1200x1000 PNG (limit {PIXEL_LIMIT} pixels)", "INVALID_ARGUMENT",
         ("images.images[0]", f"at most {PIXEL_LIMIT} pixels", "1200x1000"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[png(np.zeros((1000, 1200), np.uint8))]))),
        ("decompression-bomb", "PNG of 30000x30000 declared in ~1 kB", "INVALID_ARGUMENT",
         ("images.images[0]", f"at most {PIXEL_LIMIT} pixels", "900000000 pixels"),
         lambda: r(model=MODEL, images=pb.EncodedImages(images=[png_bomb()]))),
        ("unknown-model", "model 'no-such-model'", "NOT_FOUND", ("model", "no-such-model", "available: broken, cifar-tiny"),
         lambda: r(model="no-such-model", tensor=ok)),
        ("unknown-version", "version 7", "NOT_FOUND", ("version", "no version 7", "available: 1"),
         lambda: r(model=MODEL, version=7, tensor=ok)),
        ("negative-version", "version -1", "INVALID_ARGUMENT", ("version", ">= 1", "-1"),
         lambda: r(model=MODEL, version=-1, tensor=ok)),
        ("not-ready", "model 'broken' (corrupt model.onnx)", "UNAVAILABLE", ("broken", "not ready", "cannot load"),
         lambda: r(model="broken", tensor=ok)),
        ("long-name", "model name of 100000 characters", "NOT_FOUND", ("no model named", "message cut"),
         lambda: r(model="x" * 100_000, tensor=ok)),
        ("over-message-limit", f"90 images, 1.1 MB, over the {MESSAGE_LIMIT} byte limit", "RESOURCE_EXHAUSTED", (),
         lambda: r(model=MODEL, tensor=tensor(big))),
    ]
    cases += [(f"path-name-{i}", f"model {name!r}", "NOT_FOUND", ("no model named", repr(name)),
               lambda name=name: r(model=name, tensor=ok)) for i, name in enumerate(TRAVERSAL_NAMES)]
    return cases


def kserve_cases():
    """Bad KServe v2 requests (tritonclient's message classes; imported lazily: see tests/conftest.py)."""
    from tritonclient.grpc import service_pb2 as k

    def infer(model=MODEL, version="", shape=(1, 3, 32, 32), name="input", datatype="FP32", raw=None, typed=None,
              outputs=(), inputs=1, timeout=None):
        request = k.ModelInferRequest(model_name=model, model_version=version, id="case")
        for i in range(inputs):
            t = request.inputs.add(name=name if i == 0 else f"extra{i}", datatype=datatype, shape=list(shape))
            if typed is not None:
                typed(t.contents)
        if raw is not None:
            request.raw_input_contents.append(raw)
        for output in outputs:
            request.outputs.add(name=output)
        if timeout is not None:
            timeout(request.parameters["timeout"])
        return request

    one = images(1).tobytes()
    fp32 = lambda values: lambda c: c.fp32_contents.extend(values)  # noqa: E731
    cases = [
        ("wrong-rank", "inputs[0].shape [3, 32, 32]", "INVALID_ARGUMENT", ("inputs[0].shape", "[N, 3, 32, 32]", "[3, 32, 32]"),
         lambda: infer(shape=(3, 32, 32), raw=one)),
        ("wrong-shape", "inputs[0].shape [1, 3, 32, 31]", "INVALID_ARGUMENT", ("inputs[0].shape", "[1, 3, 32, 31]"),
         lambda: infer(shape=(1, 3, 32, 31), raw=images(1, (3, 32, 31)).tobytes())),
        ("byte-length", "raw_input_contents of 1000 bytes for [1, 3, 32, 32]", "INVALID_ARGUMENT",
         ("raw_input_contents[0]", "12288 bytes", "received 1000"), lambda: infer(raw=b"\0" * 1000)),
        ("typed-count", "47 fp32_contents for [1, 3, 32, 32]", "INVALID_ARGUMENT",
         ("fp32_contents", "3072 values", "received 47"), lambda: infer(typed=fp32([0.0] * 47))),
        ("no-contents", "shape given, no contents", "INVALID_ARGUMENT", ("fp32_contents", "3072 values", "received 0"),
         lambda: infer()),
        ("empty-batch", "inputs[0].shape [0, 3, 32, 32]", "INVALID_ARGUMENT", ("inputs[0].shape[0]", "at least 1", "received 0"),
         lambda: infer(shape=(0, 3, 32, 32), raw=b"")),
        ("too-many-images", "65 images (max_batch_size 64)", "INVALID_ARGUMENT", ("max_batch_size=64", "received 65"),
         lambda: infer(shape=(65, 3, 32, 32), raw=images(65).tobytes())),
        ("missing-input", "no inputs", "INVALID_ARGUMENT", ("inputs", "exactly 1", "received 0"), lambda: infer(inputs=0)),
        ("two-inputs", "two inputs", "INVALID_ARGUMENT", ("inputs", "exactly 1", "received 2"),
         lambda: infer(inputs=2, typed=fp32([0.0] * 3072))),
        ("input-name", "input named 'pixels'", "INVALID_ARGUMENT", ("inputs[0].name", "'input'", "'pixels'"),
         lambda: infer(name="pixels", raw=one)),
        ("output-name", "output 'probs' asked for", "INVALID_ARGUMENT", ("outputs[0].name", "'scores'", "'probs'"),
         lambda: infer(raw=one, outputs=["probs"])),
        ("dtype-fp64", "datatype FP64", "INVALID_ARGUMENT", ("inputs[0].datatype", "'FP32'", "'FP64'"),
         lambda: infer(datatype="FP64", raw=images(1).astype(np.float64).tobytes())),
        ("dtype-int8", "datatype INT8 with int_contents", "INVALID_ARGUMENT", ("inputs[0].datatype", "'FP32'", "'INT8'"),
         lambda: infer(datatype="INT8", typed=lambda c: c.int_contents.extend([1] * 3072))),
        ("typed-wrong-kind", "FP32 with int_contents", "INVALID_ARGUMENT", ("inputs[0].contents", "fp32_contents", "int_contents"),
         lambda: infer(typed=lambda c: c.int_contents.extend([1] * 3072))),
        ("mixed-contents", "raw and typed contents together", "INVALID_ARGUMENT", ("inputs[0].contents", "both"),
         lambda: infer(raw=one, typed=fp32([1.0]))),
        ("nan-raw", "raw NaN at [0, 1, 2, 3]", "INVALID_ARGUMENT", ("raw_input_contents[0]", "finite", "nan", "[0, 1, 2, 3]"),
         lambda: infer(shape=(2, 3, 32, 32), raw=with_value(np.nan).tobytes())),
        ("inf-typed", "typed +Inf at [0, 1, 2, 3]", "INVALID_ARGUMENT", ("fp32_contents", "finite", "inf"),
         lambda: infer(shape=(2, 3, 32, 32), typed=fp32(with_value(np.inf).ravel().tolist()))),
        ("timeout-type", "parameters['timeout'] as a string", "INVALID_ARGUMENT", ("parameters['timeout']", "int64", "string_param"),
         lambda: infer(raw=one, timeout=lambda p: setattr(p, "string_param", "soon"))),
        ("unknown-model", "model 'no-such-model'", "NOT_FOUND", ("model", "no-such-model", "available"),
         lambda: infer(model="no-such-model", raw=one)),
        ("unknown-version", "model_version '7'", "NOT_FOUND", ("version", "no version 7", "available: 1"),
         lambda: infer(version="7", raw=one)),
        ("not-ready", "model 'broken'", "UNAVAILABLE", ("broken", "not ready", "cannot load"),
         lambda: infer(model="broken", raw=one)),
        ("over-message-limit", f"90 images, 1.1 MB, over the {MESSAGE_LIMIT} byte limit", "RESOURCE_EXHAUSTED", (),
         lambda: infer(shape=(90, 3, 32, 32), raw=images(90).tobytes())),
    ]
    for i, version in enumerate(["1/../../", "..", "-1", "0", "1.0", "\u00b2", "9" * 5000, " 1"]):
        cases.append((f"bad-version-{i}", f"model_version {version[:12]!r}{'...' if len(version) > 12 else ''}",
                      "INVALID_ARGUMENT", ("model_version", "version number >= 1"),
                      lambda version=version: infer(version=version, raw=one)))
    for i, name in enumerate(TRAVERSAL_NAMES):
        cases.append((f"path-name-{i}", f"model_name {name!r}", "NOT_FOUND", ("no model named", repr(name)),
                      lambda name=name: infer(model=name, raw=one)))
    return cases


def all_cases() -> list[Case]:
    cases = []
    for api in ("classify", "stream"):
        cases += [Case(api, *c) for c in own_cases()]
    cases += [Case("kserve", *c) for c in kserve_cases()]
    info = [("path-name-" + str(i), f"GetModelInfo model {n!r}", "NOT_FOUND", ("no model named",),
             lambda n=n: pb.GetModelInfoRequest(model=n)) for i, n in enumerate(TRAVERSAL_NAMES)]
    info.append(("unknown-version", "GetModelInfo version 99", "NOT_FOUND", ("no version 99",),
                 lambda: pb.GetModelInfoRequest(model=MODEL, version=99)))
    cases += [Case("model-info", *c) for c in info]
    garbage = b"\xff\xff\xff\x01 not protobuf"
    wire = [("undecodable-classify", "11 bytes that are no protobuf, to Classify", "/convnet.v1.Classifier/Classify"),
            ("undecodable-stream", "the same inside a ClassifyStream", "/convnet.v1.Classifier/ClassifyStream"),
            ("undecodable-info", "the same to GetModelInfo", "/convnet.v1.Classifier/GetModelInfo"),
            ("undecodable-infer", "the same to KServe ModelInfer", "/inference.GRPCInferenceService/ModelInfer"),
            ("bad-utf8-string", "model name bytes c3 28 (not UTF-8)", "/convnet.v1.Classifier/Classify")]
    for id_, text, method in wire:
        data = b"\x0a\x02\xc3\x28" if id_ == "bad-utf8-string" else garbage
        message_type = ("inference.ModelInferRequest" if "inference" in method else
                        "convnet.v1.GetModelInfoRequest" if "Info" in method else "convnet.v1.ClassifyRequest")
        cases.append(Case("wire", id_, text, "INVALID_ARGUMENT", ("request", message_type, "do not parse"),
                          lambda method=method, data=data: (method, data)))
    return cases
