"""bench/workers.py's pieces that need no server: the request h2load replays and the CPU clock."""
from __future__ import annotations

import os

import numpy as np

from bench.workers import cpu_seconds, grpc_body, spread
from service.generated.inference import grpc_service_pb2 as kpb


def test_the_replayed_request_is_one_grpc_frame_of_one_image():
    body = grpc_body("cifar-tiny", (3, 32, 32))
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    request = kpb.ModelInferRequest.FromString(body[5:])
    assert request.model_name == "cifar-tiny" and list(request.inputs[0].shape) == [1, 3, 32, 32]
    image = np.frombuffer(request.raw_input_contents[0], "<f4")
    assert image.size == 3 * 32 * 32 and np.isfinite(image).all()


def test_cpu_seconds_grow_with_work_done():
    before = cpu_seconds([os.getpid()])
    total = 0
    while cpu_seconds([os.getpid()]) - before < 0.05:
        total += sum(range(10_000))
    assert total > 0


def test_spread_is_the_median_with_the_range():
    assert spread([3.0, 1.0, 2.0], ".1f") == "2.0 (1.0-3.0)"
