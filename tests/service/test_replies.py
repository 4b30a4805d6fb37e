"""The hand-encoded Classify reply is the message the protobuf library builds from the same arrays."""
import numpy as np
import pytest

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.replies import RawInferReplyEncoder, ReplyEncoder, varint
from service.scores import Scored, score


def library_reply(request_id: str, model: str, version: int, labels, outputs: Scored, top_k: int) -> pb.ClassifyResponse:
    """The reply built with protobuf message objects, field by field."""
    reply = pb.ClassifyResponse(request_id=request_id, model=model, version=version)
    for scores, probabilities, ranking in zip(outputs.scores, outputs.probabilities, outputs.ranking):
        result = reply.results.add(scores=scores.tolist())
        for i in ranking[:top_k].tolist():
            result.top.add(label=labels[i], index=i, probability=float(probabilities[i]))
    return reply


def check(encoder: ReplyEncoder, request_id: str, model: str, version: int, outputs: Scored, top_k: int) -> None:
    encoded = encoder.encode(request_id, outputs, top_k)
    expected = library_reply(request_id, model, version, encoder.labels, outputs, top_k)
    assert pb.ClassifyResponse.FromString(encoded) == expected
    assert encoded == expected.SerializeToString(deterministic=True)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2 ** 35])
def test_varint_is_protobufs(n):
    assert pb.ClassifyResponse.FromString(b"\x18" + varint(n)).version == n


@pytest.mark.parametrize("classes,rows", [(1, 1), (10, 1), (10, 5), (200, 3)])
def test_encoded_reply_equals_the_library_message(classes, rows):
    rng = np.random.default_rng(classes * 10 + rows)
    labels = tuple(f"class-{i}" for i in range(classes))
    encoder = ReplyEncoder("cifar-tiny", 3, labels)
    outputs = score(rng.standard_normal((rows, classes)).astype(np.float32) * 5)
    for top_k in sorted({1, 5, classes, classes + 3}):
        check(encoder, "req-7", "cifar-tiny", 3, outputs, top_k)


def test_defaults_and_unusual_values_encode_as_protobuf_does():
    """Empty strings, version 0, class 0 and probability 0 are left out; long and non-ASCII text."""
    labels = ("", "chat noir", "狗", "x" * 300)
    raw = np.array([[0.0, -1e30, 2.5, 1e30], [1.0, 1.0, 1.0, -1.0]], dtype=np.float32)
    outputs = score(raw)
    assert (outputs.probabilities == 0).any()
    for request_id, model, version in [("", "m", 1), ("é" * 200, "", 0), ("id", "model-with-long-name" * 10, 2 ** 40)]:
        check(ReplyEncoder(model, version, labels), request_id, model, version, outputs, 4)


def test_rows_of_a_larger_batch_keep_their_own_scores():
    """A caller's rows are views into its batch's arrays: strided, not contiguous."""
    batch = score(np.random.default_rng(1).standard_normal((6, 10, 3)).astype(np.float32)[:, :, 1])
    mine = Scored(*(a[2:4] for a in batch))
    check(ReplyEncoder("m", 1, tuple("abcdefghij")), "", "m", 1, mine, 5)


@pytest.mark.parametrize("shape,request_id", [((1, 10), "req-1"), ((3, 10), ""), ((2, 200), "x" * 300), ((2, 10, 3, 3), "i")])
def test_raw_infer_reply_equals_the_library_message(shape, request_id):
    """Compared with tritonclient's own copy of the KServe protocol (this process may hold it; the
    project's copy and it cannot both be loaded)."""
    from tritonclient.grpc import service_pb2 as kpb

    scores = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    expected = kpb.ModelInferResponse(model_name="cifar-tiny", model_version="12", id=request_id)
    expected.outputs.add(name="scores", datatype="FP32", shape=shape)
    expected.raw_output_contents.append(scores.tobytes())
    encoder = RawInferReplyEncoder("cifar-tiny", 12, "scores")
    for _ in range(2):  # the second reply of a shape uses the bytes made for the first
        encoded = encoder.encode(request_id, scores)
        assert kpb.ModelInferResponse.FromString(encoded) == expected
        assert encoded == expected.SerializeToString(deterministic=True)
