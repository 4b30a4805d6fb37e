"""The statistics and model repository extensions over HTTP/REST, through tritonclient.http: the
same exact counts and the same control rules (off by default, token) as over gRPC."""
from __future__ import annotations

import shutil

import pytest
import tritonclient.http as httpclient
from http_helpers import MODEL, request
from test_server_helpers import images
from tritonclient.utils import InferenceServerException

TOKEN = "s3cret-" + "z" * 20


def http_client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", concurrency=8)


def tensor(n: int, seed: int) -> httpclient.InferInput:
    x = images(n, seed=seed)
    t = httpclient.InferInput("input", list(x.shape), "FP32")
    t.set_data_from_numpy(x)
    return t


def infer(client: httpclient.InferenceServerClient, n: int, seed: int, **kwargs) -> None:
    assert client.infer(MODEL, [tensor(n, seed)], **kwargs).as_numpy("scores").shape == (n, 10)


def test_statistics_count_images_batches_and_requests_exactly(start_server):
    server = start_server()
    with http_client(server) as client:
        for i in range(4):  # one after the other: one batch of 3 each
            infer(client, 3, seed=i)
        together = [client.async_infer(MODEL, [tensor(2, seed=i)]) for i in range(16)]  # batches form as they will
        assert all(r.get_result().as_numpy("scores").shape == (2, 10) for r in together)
        (s,) = client.get_inference_statistics(MODEL)["model_stats"]
        assert client.get_inference_statistics(MODEL, "1")["model_stats"] == [s]
        everything = client.get_inference_statistics()["model_stats"]
        with pytest.raises(InferenceServerException) as missing:
            client.get_inference_statistics(MODEL, "9")
    assert (s["name"], s["version"]) == (MODEL, "1")
    assert s["inference_count"] == 4 * 3 + 16 * 2
    batches = s["batch_stats"]
    assert sum(b["compute_infer"]["count"] for b in batches) == s["execution_count"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == s["inference_count"]
    st = s["inference_stats"]
    assert st["success"]["count"] == st["queue"]["count"] == 20 and st["fail"]["count"] == 0
    assert {(m["name"], m["version"]) for m in everything} >= {(MODEL, "1"), ("cifar-vgg", "1")}
    assert server.metric("convnet_images_total", model=MODEL, version="1") == s["inference_count"]
    assert missing.value.status() == "404" and "no version '9'" in missing.value.message()


def test_server_metadata_lists_the_same_extensions_as_grpc(start_server):
    off, explicit = start_server(), start_server("--model-control", "explicit")
    with http_client(off) as a, http_client(explicit) as b:
        assert set(a.get_server_metadata()["extensions"]) == {"binary_tensor_data", "classification",
                                                              "schedule_policy", "statistics"}
        assert set(b.get_server_metadata()["extensions"]) == {"binary_tensor_data", "classification",
                                                              "schedule_policy", "statistics", "model_repository"}


def test_load_and_unload_are_refused_while_off_and_the_index_answers(start_server):
    server = start_server()
    with http_client(server) as client:
        for call in (lambda: client.unload_model(MODEL), lambda: client.load_model(MODEL)):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert refused.value.status() == "400"  # FAILED_PRECONDITION, as over gRPC
            assert "--model-control explicit" in refused.value.message()
        assert {"name": MODEL, "version": "1", "state": "READY", "reason": ""} in client.get_model_repository_index()
        assert client.is_model_ready(MODEL)


def test_a_load_that_fails_names_the_file_and_the_model_keeps_serving(start_server, model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    server = start_server("--model-control", "explicit", models=repo)
    config_path = repo / MODEL / "config.json"
    config_path.write_text("{not json")
    with http_client(server) as client:
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(MODEL)
        assert refused.value.status() == "400" and f"{config_path}: not valid JSON" in refused.value.message()
        override = request(server.http_port, "POST", f"/v2/repository/models/{MODEL}/load",
                           b'{"parameters": {"config": "{}"}}')
        assert override.status == 400 and override.error.startswith("parameters: expected none")
        assert client.is_model_ready(MODEL)
        infer(client, 2, seed=4)


def test_index_unload_and_load_with_the_token(start_server, model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    (tmp_path / "token").write_text(TOKEN)
    server = start_server("--model-control", "explicit", "--auth-token-file", str(tmp_path / "token"), models=repo)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with http_client(server) as client:
        with pytest.raises(InferenceServerException) as refused:
            client.unload_model(MODEL)
        assert refused.value.status() == "401"
        assert client.get_model_repository_index(headers=auth) == [
            {"name": MODEL, "version": "1", "state": "READY", "reason": ""}]
        infer(client, 2, seed=1, headers=auth)
        client.unload_model(MODEL, headers=auth)
        assert not client.is_model_ready(MODEL, headers=auth)
        with pytest.raises(InferenceServerException) as gone:
            infer(client, 2, seed=2, headers=auth)
        assert gone.value.status() == "503" and "unloaded" in gone.value.message()
        assert client.get_model_repository_index(headers=auth) == [
            {"name": MODEL, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
        assert request(server.http_port, "POST", "/v2/repository/index", b'{"ready": true}', auth).json() == []
        bad = request(server.http_port, "POST", "/v2/repository/index", b'{"ready": 1}', auth)
        assert bad.status == 400 and bad.error == "ready: expected true or false, received 1"
        with pytest.raises(InferenceServerException) as missing:
            client.load_model("nope", headers=auth)
        assert missing.value.status() == "404" and "no model 'nope'" in missing.value.message()
        client.load_model(MODEL, headers=auth)
        assert client.is_model_ready(MODEL, headers=auth)
        infer(client, 2, seed=3, headers=auth)
