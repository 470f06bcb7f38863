"""Micro-batching of embedding jobs (engine/batching.py): a long list runs a slice a pass, so a small job
queued behind it joins the next pass instead of waiting for the whole list; the slices join into one result."""

import json

import numpy as np
from sentence_transformers import SentenceTransformer

from tests.conftest import eventually

MODEL = "MiniLM_L6_v2"


def submit(api, texts) -> str:
    response = api.post("txt2embedding", json={"input": texts, "model": MODEL, "return_result_in_response": True})
    assert response.status_code == 200, response.json()
    return response.json()["data"]["request_id"]


def vectors(status: dict) -> np.ndarray:
    body = json.loads(status["result"])
    assert [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    return np.array([item["embedding"] for item in body["data"]])


def test_small_job_queued_behind_a_long_list_of_the_same_key_finishes_first(api):
    long_id = submit(api, [f"sentence number {i} about a cat on a warm window sill" for i in range(256)])
    eventually(lambda: api.engine.jobs.get(long_id).status != "pending", timeout=60)
    small = api.wait(submit(api, "a kitten"), timeout=60)
    assert small["status"] == "done"
    assert not api.engine.jobs.get(long_id).finished, "the small job waited for the whole list"
    assert api.wait(long_id, timeout=300)["status"] == "done"


def test_a_list_run_in_slices_joins_into_the_vectors_of_one_encode(api):
    texts = [f"text {i}: " + "the quick brown fox " * (i % 7 + 1) for i in range(100)]
    request_id = submit(api, texts)
    status = api.wait(request_id, timeout=120)
    assert status["status"] == "done" and status["progress"] == 100.0
    job = api.engine.jobs.get(request_id)
    assert job.meta["passes"] > 1 and job.meta["tokens"] == json.loads(status["result"])["usage"]["total_tokens"] > 0
    path = api.engine.registry.availability(api.engine.registry.get(MODEL)).path
    expected = SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(vectors(status), expected, atol=1e-5)
