"""``/metrics`` in Prometheus' text format, parsed by prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually


def scrape(api) -> dict[str, list]:
    response = api.client.get("/metrics", headers=api.headers)  # the owner's key
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples, name: str, **labels) -> float:
    matches = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, samples)
    return matches[0]


def test_metrics_count_jobs_times_memory_and_loads(api):
    before = scrape(api)
    assert value(before["drylocal_model_loads"], "drylocal_model_loads_total") == 0
    assert value(before["drylocal_memory_in_use_bytes"], "drylocal_memory_in_use_bytes") == 0
    assert value(before["drylocal_memory_budget_bytes"], "drylocal_memory_budget_bytes") > 0

    ids = [api.post("txt2embedding", json={"input": f"text {i}", "model": "MiniLM_L6_v2"}).json()["data"]["request_id"] for i in range(3)]
    for request_id in ids:
        assert api.wait(request_id)["status"] == "done"
    bad = api.post("txt2embedding", json={"input": "", "model": "MiniLM_L6_v2"})
    assert bad.status_code == 422  # refused at the door: never a job

    eventually(lambda: value(scrape(api)["drylocal_job_run_seconds"], "drylocal_job_run_seconds_count", task="txt2embedding", status="done") == 3)
    after = scrape(api)
    assert value(after["drylocal_jobs"], "drylocal_jobs", task="txt2embedding", status="done") == 3
    assert value(after["drylocal_job_wait_seconds"], "drylocal_job_wait_seconds_count", task="txt2embedding") == 3
    assert value(after["drylocal_queue_depth"], "drylocal_queue_depth") == 0
    assert value(after["drylocal_model_loads"], "drylocal_model_loads_total") == 1
    assert value(after["drylocal_model_memory_bytes"], "drylocal_model_memory_bytes", model="MiniLM_L6_v2") > 0
    assert value(after["drylocal_memory_in_use_bytes"], "drylocal_memory_in_use_bytes") > 0
    assert value(after["drylocal_model_load_seconds"], "drylocal_model_load_seconds", model="MiniLM_L6_v2") > 0
    assert value(after["drylocal_model_evictions"], "drylocal_model_evictions_total") == 0
