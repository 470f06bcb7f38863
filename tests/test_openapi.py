"""drylocal's OpenAPI document against the hosted dryAPI's: every hosted operation, body field, content
type, query parameter and answer property is declared, and the declared answers are the real ones.

The hosted side is tests/data/hosted_openapi_operations.json, extracted from the hosted document's
summary by scripts/extract_hosted_openapi.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import Settings
from tests.conftest import API, running_api

HOSTED = json.loads((Path(__file__).parent / "data" / "hosted_openapi_operations.json").read_text())["operations"]

# Hosted operations drylocal does not serve yet. The list may only shrink: a test fails once one exists.
NOT_YET_SERVED: set[str] = set()

# Fields the hosted document marks required that drylocal lets clients leave out.
OPTIONAL_HERE = {
    # Defaulted from the model's info.defaults when absent: real clients omit them (the task modules,
    # API_CONTRACT.md "accept both"). include_ts defaults to false, txt2music's seed to a random one.
    "POST txt2img": {"guidance", "steps"},
    "POST img2img": {"steps"},
    "POST txt2video": {"guidance", "steps"},
    "POST img2video": {"guidance", "steps"},
    "POST txt2audio": {"lang", "speed", "format", "sample_rate"},
    "POST txt2music": {"lyrics", "inference_steps", "guidance_scale", "seed", "format"},
    "POST aud2txt": {"include_ts"},
    "POST vid2txt": {"include_ts"},
    "POST audiofile2txt": {"include_ts"},
    "POST videofile2txt": {"include_ts"},
    # A price asks only for what changes it (Field.price); the same defaults fill the rest.
    "POST txt2img/price-calculation": {"prompt", "guidance", "steps", "seed"},
    "POST img2img/price-calculation": {"prompt", "steps", "seed"},
    "POST txt2video/price-calculation": {"steps"},
    "POST img2video/price-calculation": {"steps"},
    "POST txt2audio/price-calculation": {"lang", "speed", "format", "sample_rate"},
    "POST aud2txt/price-calculation": {"include_ts"},
    # vid2txt prices from duration_seconds as well as from video_url, as aud2txt does on the hosted side.
    "POST vid2txt/price-calculation": {"video_url", "include_ts"},
}

# Fields drylocal requires that the hosted document leaves optional.
REQUIRED_HERE = {
    # The boosters answer 422 "The prompt field is required." without one (server/routes/prompts.py).
    "POST prompt/image": {"prompt"},
    "POST prompt/image/price-calculation": {"prompt"},
    "POST prompt/video": {"prompt"},
    "POST prompt/video/price-calculation": {"prompt"},
    "POST prompt/speech": {"prompt"},
    "POST prompt/speech/price-calculation": {"prompt"},
    # ... and image2image answers 422 "The image field is required." without its reference image.
    "POST prompt/image2image": {"prompt", "image"},
    "POST prompt/image2image/price-calculation": {"prompt"},
}


def _name(op: dict[str, Any]) -> str:
    return f"{op['method']} {op['path'].removeprefix(API + '/')}"


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict[str, Any]:
    with running_api(Settings.load(home=tmp_path_factory.mktemp("openapi") / "home")) as api:
        return api.client.get("/schema/openapi.json").json()


def _operation(document: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    return document["paths"].get(op["path"], {}).get(op["method"].lower())


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _served(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(op, found) for op in HOSTED if (found := _operation(document, op)) is not None]


def test_every_hosted_operation_is_served_or_listed(document):
    missing = {_name(op) for op in HOSTED if _operation(document, op) is None}
    assert missing == NOT_YET_SERVED, f"not served: {sorted(missing - NOT_YET_SERVED)}; now served, unlist: {sorted(NOT_YET_SERVED - missing)}"


def test_hosted_body_fields_are_declared_for_the_hosted_content_types(document):
    absent = []
    for op, found in _served(document):
        content = (found.get("requestBody") or {}).get("content", {})
        for media_type, fields in op["bodies"].items():
            if media_type not in content:
                absent.append(f"{_name(op)}: no {media_type} body")
                continue
            properties = _resolve(document, content[media_type]["schema"]).get("properties", {})
            absent += [f"{_name(op)} {media_type}: {field}" for field in fields if field not in properties]
    assert not absent


def test_required_fields_agree_with_the_hosted_except_those_listed(document):
    optional_here: dict[str, set[str]] = {}
    required_here: dict[str, set[str]] = {}
    for op, found in _served(document):
        content = (found.get("requestBody") or {}).get("content", {})
        for media_type, fields in op["bodies"].items():
            if not fields or media_type not in content:
                continue  # a hosted body without fields names none to compare
            required = set(_resolve(document, content[media_type]["schema"]).get("required") or ())
            hosted = {name for name, field in fields.items() if field["required"]}
            if hosted - required:
                optional_here.setdefault(_name(op), set()).update(hosted - required)
            if (required & set(fields)) - hosted:
                required_here.setdefault(_name(op), set()).update((required & set(fields)) - hosted)
    assert optional_here == OPTIONAL_HERE
    assert required_here == REQUIRED_HERE


def test_hosted_query_parameters_are_declared(document):
    absent = []
    for op, found in _served(document):
        declared = {p["name"] for p in found.get("parameters", []) if p["in"] == "query"}
        absent += [f"{_name(op)}: {name}" for name in op["query"] if name not in declared]
    assert not absent


def test_models_declares_the_available_filter(document):
    parameters = {p["name"]: p for p in document["paths"][f"{API}/models"]["get"]["parameters"]}
    assert parameters["filter[available]"]["schema"]["type"] == "boolean"


def test_every_answer_declares_the_hosted_properties(document):
    absent = []
    for op, found in _served(document):
        schema = _resolve(document, found["responses"]["200"]["content"]["application/json"]["schema"])
        absent += [f"{_name(op)}: {name}" for name in op["response_properties"] if name not in schema.get("properties", {})]
    assert not absent


def test_every_dryapi_route_declares_its_answer_and_the_error_envelope(document):
    for path, operations in document["paths"].items():
        if not path.startswith(f"{API}/"):
            continue
        for method, found in operations.items():
            answer = _resolve(document, found["responses"]["200"]["content"]["application/json"]["schema"])
            assert answer.get("properties"), f"{method} {path}: the 200 answer has no properties"
            for status in ("401", "429"):
                assert found["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorEnvelope"
                }, f"{method} {path} {status}"


def test_a_route_that_needs_an_upload_declares_multipart_alone(document):
    # server/body.py reads JSON and forms on every route, but a file comes only in multipart.
    paths = document["paths"]
    assert list(paths[f"{API}/img2txt"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
    assert list(paths[f"{API}/img2img"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
    assert "application/json" in paths[f"{API}/txt2audio"]["post"]["requestBody"]["content"]  # ref_audio is optional
    assert "application/json" in paths[f"{API}/prompt/video"]["post"]["requestBody"]["content"]


def test_document_is_valid_openapi_3_1(document):
    validator = pytest.importorskip("openapi_spec_validator")
    assert document["openapi"].startswith("3.1")
    validator.validate(document)


def _check_answer(document: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    declared = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**declared, "components": document["components"]})


def test_real_answers_match_their_declared_schemas(api):
    document = api.client.get("/schema/openapi.json").json()
    answers = [
        ("balance", "get", api.get("balance")),
        ("models", "get", api.get("models", params={"per_page": 50})),
        ("models", "get", api.get("models", params={"filter[available]": "true"})),
        ("request-status/{request_id}", "get", api.get("request-status/nope")),
        ("prompts/samples", "get", api.get("prompts/samples")),
        ("prompt/image", "post", api.post("prompt/image", json={"prompt": "ab"})),
        ("txt2img", "post", api.client.post(f"{API}/txt2img", json={})),
        ("txt2embedding/price-calculation", "post",
         api.post("txt2embedding/price-calculation", json={"input": "hello", "model": "MiniLM_L6_v2"})),
    ]
    submitted = api.post("txt2embedding", json={"input": "hello world", "model": "MiniLM_L6_v2"})
    answers.append(("txt2embedding", "post", submitted))
    request_id = submitted.json()["data"]["request_id"]
    api.wait(request_id)
    answers.append(("request-status/{request_id}", "get", api.get(f"request-status/{request_id}")))
    for route, method, response in answers:
        _check_answer(document, f"{API}/{route}", method, response.status_code, response.json())
