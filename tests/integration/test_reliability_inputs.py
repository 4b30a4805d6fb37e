"""Bad input over every API of a live server: the right status, a message naming the field, the
expected and the received value; the server keeps serving; a bad request never poisons a batch.

The cases are bench/reliability_cases.py's ``all_cases()``, the same list that writes the table of
docs/RELIABILITY.md.
"""
from __future__ import annotations

import asyncio
import signal

import grpc
import numpy as np
import pytest
from test_server_helpers import assert_scores, images, reply_scores, tensor
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench import image_modes
from bench.reliability_cases import MODEL, SERVER_ENV, all_cases, build_repo
from bench.reliability_runner import Runner
from bench.launcher import launch_server
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc
from service.repository import read_spec

CASES = all_cases()


@pytest.fixture(scope="module")
def case_server(model_repo, tmp_path_factory):
    """A server with 1 MiB messages and 1 Mpixel images on cifar-tiny + a corrupt model."""
    tmp = tmp_path_factory.mktemp("cases")
    repo = build_repo(tmp / "models", model_repo)
    server = launch_server(tmp, models=repo, env=SERVER_ENV, health=False)
    process = server.process
    channel = grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20)])
    yield process, channel, server.log_path
    channel.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


@pytest.mark.parametrize("case", CASES, ids=[f"{c.api}-{c.id}" for c in CASES])
def test_bad_input_gets_its_status_and_a_message_naming_field_expected_received(case_server, case):
    process, channel, _ = case_server
    code, message = Runner(channel).run(case)
    assert code == case.code, f"{case.input}: {code} {message}"
    for word in case.words:
        assert word in message, f"{case.input}: {word!r} not in {message!r}"
    assert len(message.encode()) <= 2000
    assert process.poll() is None


def test_the_server_keeps_serving_correct_scores_after_every_bad_input(case_server, reference):
    process, channel, log = case_server
    for case in CASES:
        Runner(channel).run(case)
    x = images(3, seed=77)
    reply = convnet_pb2_grpc.ClassifierStub(channel).Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)), timeout=30)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    assert process.poll() is None
    assert "Traceback" not in log.read_text()  # no bad input reached an unhandled error


def test_bad_requests_never_poison_a_batch_of_concurrent_good_callers(start_server, reference):
    """Good and bad callers at once, with a queue delay so batches gather many callers: every good
    caller gets exactly its own scores, every bad one its own error, and batches did form."""
    server = start_server(config={"model": {MODEL: {"max_queue_delay_ms": 20.0, "max_batch_size": 64}}}, env=SERVER_ENV)
    bad_own = [c for c in CASES if c.api == "classify" and c.code == "INVALID_ARGUMENT"]
    bad_kserve = [c for c in CASES if c.api == "kserve" and c.code == "INVALID_ARGUMENT"]
    goods = [images(1 + i % 3, seed=300 + i) for i in range(48)]
    batches_before = server.metric("convnet_batches_total", model=MODEL)

    async def main():
        async with grpc.aio.insecure_channel(server.target) as channel:
            own = convnet_pb2_grpc.ClassifierStub(channel)
            kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            calls = []
            for i, x in enumerate(goods):
                calls.append(own.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x), request_id=str(i)), timeout=60))
                bad = bad_own[i % len(bad_own)] if i % 2 else bad_kserve[i % len(bad_kserve)]
                calls.append((own.Classify if bad.api == "classify" else kserve.ModelInfer)(bad.make(), timeout=60))
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    expected = reference(MODEL, np.concatenate(goods))
    offset = 0
    for i, x in enumerate(goods):
        good, bad = results[2 * i], results[2 * i + 1]
        assert isinstance(good, pb.ClassifyResponse) and good.request_id == str(i), good
        assert_scores(reply_scores(good), expected[offset:offset + len(x)])
        offset += len(x)
        assert isinstance(bad, grpc.aio.AioRpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    batches = server.metric("convnet_batches_total", model=MODEL) - batches_before
    assert batches < len(goods) / 2, f"{batches} batches for {len(goods)} good callers: no batches formed"
    assert server.metric("convnet_requests_total", model=MODEL, code="INVALID_ARGUMENT") >= len(goods) / 2


def test_kserve_typed_request_is_answered_after_malformed_ones_on_the_same_connection(case_server, reference):
    _, channel, _ = case_server
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    x = images(2, seed=5)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=x.shape).contents.fp32_contents.extend(x.ravel().tolist())
    reply = stub.ModelInfer(request, timeout=30)
    scores = np.array(reply.outputs[0].contents.fp32_contents, dtype=np.float32).reshape(2, -1)
    assert_scores(scores, reference(MODEL, x))


def test_every_encoding_is_served_the_scores_of_its_8bit_rgb_twin(case_server, model_repo, reference):
    """Each picture of bench/image_modes.py in every encoding a client may send (8- and 16-bit PNG of
    every color type, palettes with transparency, JPEG in RGB, CMYK, gray, progressive), in one
    request with its 8-bit RGB PNG twin: the twins get the NumPy reference's scores, and each
    encoding its twin's (16-bit gray used to score up to 9.5 off)."""
    _, channel, _ = case_server
    cases = [case for case in image_modes.cases() if case.encoded and case.twin is not None]
    files = [image_modes.twin_png(case) for case in cases] + [case.make() for case in cases]
    reply = convnet_pb2_grpc.ClassifierStub(channel).Classify(
        pb.ClassifyRequest(model=MODEL, images=pb.EncodedImages(images=files)), timeout=60)
    scores = reply_scores(reply)
    twins, served = scores[:len(cases)], scores[len(cases):]
    pre = read_spec(model_repo / MODEL).preprocessing
    assert_scores(twins, reference(MODEL, np.stack([image_modes.twin_tensor(case, pre) for case in cases])))
    for case, got, want in zip(cases, served, twins):
        if case.tolerance == image_modes.EXACT:
            assert_scores(got[None], want[None])
        else:  # 16 bits rounded to 8, or JPEG's loss: observed up to 0.07 on scores spanning +-5
            assert np.abs(got - want).max() <= 0.1, (case.id, np.abs(got - want).max())
