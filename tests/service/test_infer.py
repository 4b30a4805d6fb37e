"""The transport-free request path: both version conventions, the deadline, resolve -> decode -> submit."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tiny_models import SHAPE, weights_for

from service.config import ServerConfig
from service.errors import InvalidInput, ModelNotFound
from service.infer import Inference, InferRequest, parse_version, time_left
from service.metrics import Metrics
from service.models import ModelRegistry


@pytest.mark.parametrize("asked, expected", [(0, 0), (3, 3), ("", 0), ("3", 3), ("000000000000000012", 12)])
def test_both_version_conventions_parse_to_a_number_with_0_the_default(asked, expected):
    assert parse_version(asked) == expected


@pytest.mark.parametrize("asked, message", [
    (-1, r"^version: expected 0 \(the default\) or a version number >= 1, received -1$"),
    ("0", r"^model_version: expected '' \(the default\) .* received '0'$"),
    ("x", r"^model_version: .* received 'x'$"),
    ("-2", r"^model_version: .* received '-2'$"),
    ("1" * 19, r"^model_version: .* at most 18\), received '1{19}'$"),
])
def test_bad_versions_name_the_field_of_their_api(asked, message):
    with pytest.raises(InvalidInput, match=message):
        parse_version(asked)


@pytest.mark.parametrize("remaining, timeout, expected", [
    (None, None, None), (2.0, None, 2.0), (None, 0.5, 0.5), (2.0, 0.5, 0.5), (0.25, 0.5, 0.25)])
def test_the_earlier_of_transport_deadline_and_request_timeout_limits_the_request(remaining, timeout, expected):
    assert time_left(remaining, timeout) == expected


def test_infer_resolves_decodes_with_the_versions_spec_and_returns_its_rows(tiny_repo):
    x = np.random.default_rng(1).standard_normal((2, *SHAPE)).astype(np.float32)
    seen = []

    async def decode_later(spec, served):
        seen.append((spec.name, served.version, served.batching.max_batch_size))
        return x

    async def main():
        registry = ModelRegistry.load(ServerConfig(models=tiny_repo))
        inference = Inference(registry)
        metrics = Metrics()
        with metrics.track("test") as tracker:
            by_int = await inference.infer(InferRequest("tiny", decode_later, 1), remaining=5.0, tracker=tracker)
        by_str = await inference.infer(InferRequest("tiny", lambda spec, served: x, "", timeout=5.0))
        await registry.close(1)
        return tracker, by_int, by_str

    tracker, by_int, by_str = asyncio.run(main())
    assert seen == [("tiny", 1, 8)] and tracker.model == "tiny"
    for result, version in [(by_int, 1), (by_str, 2)]:
        w, b = weights_for(version)
        assert result.served.version == version and result.spec.labels == ("a", "b", "c")
        np.testing.assert_allclose(result.outputs.raw, x.reshape(2, -1) @ w + b, rtol=1e-5, atol=1e-5)


def test_the_model_is_looked_up_before_the_version_is_parsed_or_the_input_decoded(tiny_repo):
    def never(spec, served):
        raise AssertionError("decoded a request for an unknown model")

    async def main():
        registry = ModelRegistry.load(ServerConfig(models=tiny_repo))
        try:
            with pytest.raises(ModelNotFound, match="no model named 'nope'"):
                await Inference(registry).infer(InferRequest("nope", never, "bad"))
            with pytest.raises(InvalidInput, match="model_version"):
                await Inference(registry).infer(InferRequest("tiny", never, "bad"))
            model, served = Inference(registry).lookup("tiny", "1")
            assert (model.name, served.version) == ("tiny", 1)
        finally:
            await registry.close(1)

    asyncio.run(main())
