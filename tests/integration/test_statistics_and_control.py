"""The statistics and model repository extensions of a real server, through tritonclient (gRPC):
exact counts, and load/unload under load with no failure but the refusals after the unload."""
from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton
from test_server_helpers import images
from tritonclient.utils import InferenceServerException

from bench.launcher import wait_until

MODEL = "cifar-tiny"


def infer_input(x: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def infer(client: triton.InferenceServerClient, n: int, seed: int, **kwargs) -> np.ndarray:
    return client.infer(MODEL, [infer_input(images(n, seed=seed))], **kwargs).as_numpy("scores")


def test_statistics_count_images_batches_and_requests_exactly(start_server):
    server = start_server()
    with triton.InferenceServerClient(server.target) as client:
        for i in range(5):  # one after the other: one batch of 3 each
            infer(client, 3, seed=i)
        with ThreadPoolExecutor(8) as pool:  # together: batches form as they will
            list(pool.map(lambda i: infer(client, 2, seed=i), range(24)))
        stats = client.get_inference_statistics(MODEL, as_json=False)
        everything = client.get_inference_statistics(as_json=False)
    (s,) = stats.model_stats
    assert (s.name, s.version) == (MODEL, "1")
    assert s.inference_count == 5 * 3 + 24 * 2
    assert sum(b.compute_infer.count for b in s.batch_stats) == s.execution_count
    assert sum(b.batch_size * b.compute_infer.count for b in s.batch_stats) == s.inference_count
    assert [b.compute_infer.count for b in s.batch_stats if b.batch_size == 3][0] >= 5
    st = s.inference_stats
    assert st.success.count == st.queue.count == st.compute_infer.count == 29 and st.fail.count == 0
    assert st.success.ns >= st.queue.ns + st.compute_infer.ns > 0
    assert s.last_inference > 1_700_000_000_000  # ms since the epoch
    assert {(m.name, m.version) for m in everything.model_stats} >= {(MODEL, "1"), ("cifar-vgg", "1")}
    metrics_images = server.metric("convnet_images_total", model=MODEL, version="1")
    assert metrics_images == s.inference_count
    with pytest.raises(InferenceServerException) as missing:
        client2 = triton.InferenceServerClient(server.target)
        client2.get_inference_statistics("nope")
    assert "NOT_FOUND" in str(missing.value.status())


def test_server_metadata_lists_the_extensions(start_server):
    off, explicit = start_server(), start_server("--model-control", "explicit")
    with triton.InferenceServerClient(off.target) as a, triton.InferenceServerClient(explicit.target) as b:
        assert set(a.get_server_metadata().extensions) == {"schedule_policy", "statistics"}
        assert set(b.get_server_metadata().extensions) == {"schedule_policy", "statistics", "model_repository"}
    assert "model control: none" in off.output() and "model control: explicit" in explicit.output()


def test_load_and_unload_are_refused_while_off_and_the_index_answers(start_server):
    server = start_server()
    with triton.InferenceServerClient(server.target) as client:
        for call in (lambda: client.unload_model(MODEL), lambda: client.load_model(MODEL)):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert "FAILED_PRECONDITION" in str(refused.value.status())
            assert "--model-control explicit" in refused.value.message()
        index = client.get_model_repository_index(as_json=False).models
        assert (MODEL, "1", "READY", "") in [(m.name, m.version, m.state, m.reason) for m in index]
        assert client.is_model_ready(MODEL)


def test_a_load_that_fails_names_the_field_and_the_model_keeps_serving(start_server, model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    server = start_server("--model-control", "explicit", models=repo)
    config_path = repo / MODEL / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "labels": config["labels"][:3]}))
    with triton.InferenceServerClient(server.target) as client:
        before = infer(client, 2, seed=1)
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(MODEL)
        assert "INVALID_ARGUMENT" in str(refused.value.status())
        assert f"{config_path}: labels: expected 10 strings (output.shape[0]), got {config['labels'][:3]!r}" in \
            refused.value.message()
        with pytest.raises(InferenceServerException) as override:
            client.load_model(MODEL, config=json.dumps(config))
        assert "INVALID_ARGUMENT" in str(override.value.status()) and "parameters: expected none" in override.value.message()
        assert client.is_model_ready(MODEL)
        np.testing.assert_array_equal(infer(client, 2, seed=1), before)


def test_model_control_needs_the_token(start_server, tmp_path):
    (tmp_path / "token").write_text("s3cret-" + "y" * 20)
    server = start_server("--model-control", "explicit", "--auth-token-file", str(tmp_path / "token"))
    with triton.InferenceServerClient(server.target) as client:
        with pytest.raises(InferenceServerException) as refused:
            client.unload_model(MODEL)
        assert "UNAUTHENTICATED" in str(refused.value.status())
        client.unload_model(MODEL, headers={"authorization": "Bearer s3cret-" + "y" * 20})
        assert not client.is_model_ready(MODEL, headers={"authorization": "Bearer s3cret-" + "y" * 20})


def test_unload_and_load_under_load(start_server, model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    server = start_server("--model-control", "explicit", models=repo)
    outcomes: list[tuple[str, str]] = []
    unloaded = threading.Event()
    stop = threading.Event()

    def caller(seed: int) -> None:
        with triton.InferenceServerClient(server.target) as client:
            while not stop.is_set():
                after = unloaded.is_set()
                try:
                    infer(client, 2, seed=seed)
                    outcomes.append(("ok", "after" if after else "before"))
                except InferenceServerException as exc:
                    outcomes.append((str(exc.status()), exc.message()))

    with triton.InferenceServerClient(server.target) as control, ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(caller, i) for i in range(6)]
        wait_until(lambda: len(outcomes) >= 30, "30 calls answered")
        control.unload_model(MODEL)
        unloaded.set()
        assert not control.is_model_ready(MODEL)
        refused_before = len(outcomes)
        wait_until(lambda: len([o for o in outcomes[refused_before:] if o[0] != "ok"]) >= 5, "5 calls refused")
        index = control.get_model_repository_index(as_json=False)
        assert [(m.name, m.state) for m in index.models] == [(MODEL, "UNAVAILABLE")]
        control.load_model(MODEL)
        assert control.is_model_ready(MODEL)
        reloaded = len(outcomes)
        wait_until(lambda: len([o for o in outcomes[reloaded:] if o[0] == "ok"]) >= 10, "10 calls served again")
        stop.set()
        for f in futures:
            f.result(timeout=60)
    failures = [o for o in outcomes if o[0] != "ok"]
    assert failures, "the unload refused nothing: it was not under load"
    for code, message in failures:
        assert code == "StatusCode.UNAVAILABLE", (code, message)
        assert "unloaded" in message, message
    assert outcomes.count(("ok", "before")) >= 30
