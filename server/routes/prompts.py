"""Prompt enhancement: boosters and sample prompts, answered at once.

Served by the registry's local instruct model ("prompt-booster" models) through an inline job: it is
scheduled by memory and recorded like every job, but the route waits for it and answers with its
result at top level (``{"prompt", "negative_prompt"}``), as do the prices (``{"price": ...}``), as the
SDK's fixtures show.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from engine import Account, Engine
from engine.errors import DryError, InvalidRequest
from model_registry import ModelSpec, price_of
from server.body import RequestBody, read_body
from engine.media import image_size
from engine.tasks._fields import FILE_RULES
from server.openapi import SamplesOperation, booster_operation
from server.responses import BoostedPrompt, BoostedSpeechPrompt, BoosterPrice, SampleAnswer, responses_for

__all__ = ("ROUTES",)

_SAMPLE_TYPES = ("text2image", "text2speech")


def _booster_spec(engine: Engine) -> ModelSpec:
    spec = engine.registry.first_runnable("prompt-booster")
    if spec is not None:
        return spec
    candidates = engine.registry.for_types(["prompt-booster"])
    if not candidates:
        raise InvalidRequest.on("model", "No prompt-booster model is configured.")
    return candidates[0]


def _check_prompt(body: RequestBody, errors: dict[str, list[str]], *, negative: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    names = ("prompt", "negative_prompt") if negative else ("prompt",)
    for name in names:
        raw = body.fields.get(name)
        if raw in (None, ""):
            if name == "prompt":
                errors.setdefault(name, []).append("The prompt field is required.")
            continue
        if not isinstance(raw, str):
            errors.setdefault(name, []).append(f"The {name.replace('_', ' ')} field must be a string.")
        elif len(raw) < 3:
            errors.setdefault(name, []).append(f"The {name.replace('_', ' ')} field must be at least 3 characters.")
        else:
            values[name] = raw
    return values


def _check_image(body: RequestBody, errors: dict[str, list[str]], required: bool) -> None:
    items = body.files.get("image", [])
    if not items:
        if required:
            errors.setdefault("image", []).append("The image field is required.")
        return
    rule = FILE_RULES["booster_image"]
    item = items[0]
    extension = item.filename.rsplit(".", 1)[-1].lower() if "." in item.filename else ""
    if extension not in rule.extensions:
        errors.setdefault("image", []).append(f"The image field must be a file of type: {', '.join(sorted(rule.extensions))}.")
    elif len(item.data) > rule.max_bytes:
        errors.setdefault("image", []).append(f"The image field must not be greater than {rule.max_bytes // 1024} kilobytes.")
    elif extension != "svg" and image_size(item.data) is None:
        errors.setdefault("image", []).append("The image field must be an image.")


def _raise(errors: dict[str, list[str]]) -> None:
    if errors:
        raise InvalidRequest(errors)


async def _booster(
    request: Request, engine: Engine, account: Account, path: str, *, negative: bool, image: str, for_price: bool
) -> dict:
    body = await read_body(request)
    errors: dict[str, list[str]] = {}
    values = _check_prompt(body, errors, negative=negative)
    if image != "none":
        _check_image(body, errors, required=image == "required" and not for_price)
    lang = body.fields.get("lang_code")
    if lang not in (None, "") and (not isinstance(lang, str) or len(lang) > 4):
        errors.setdefault("lang_code", []).append("The lang code field must not be greater than 4 characters.")
    _raise(errors)
    spec = _booster_spec(engine)
    if for_price:
        return {"price": price_of(spec, values)}
    if isinstance(lang, str) and lang:
        values["lang_code"] = lang
    return await _run_booster(engine, account, spec, {"booster": path, **values})


async def _run_booster(engine: Engine, account: Account, spec: ModelSpec, params: dict[str, Any]) -> dict:
    availability = engine.registry.availability(spec)
    if not availability.runnable:
        raise InvalidRequest({"model": [availability.reason]}, availability.reason)
    job = await engine.run_inline(account, "prompt-booster", spec, params)
    if job.status != "done" or job.result is None:
        raise DryError(f"The prompt booster failed: {job.error_message or 'no answer'}")
    return json.loads(job.result)


def _booster_routes(path: str, *, negative: bool, image: str) -> list[HTTPRouteHandler]:
    name = path.replace("/", "_")

    @post(
        f"/{path}",
        status_code=200,
        operation_id=name,
        summary=f"Enhance a prompt ({path})",
        operation_class=booster_operation(negative=negative, image=image, for_price=False),
        responses=responses_for(BoostedPrompt if negative else BoostedSpeechPrompt, 400, 422),
    )
    async def enhance(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        return await _booster(request, engine, account, path, negative=negative, image=image, for_price=False)

    @post(
        f"/{path}/price-calculation",
        status_code=200,
        operation_id=f"{name}_price",
        operation_class=booster_operation(negative=negative, image=image, for_price=True),
        responses=responses_for(BoosterPrice, 400, 422),
    )
    async def price(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        return await _booster(request, engine, account, path, negative=negative, image=image, for_price=True)

    return [enhance, price]


def _check_samples(request: Request) -> dict[str, Any]:
    query = request.query_params
    errors: dict[str, list[str]] = {}
    kind = query.get("type")
    if not kind:
        errors["type"] = ["The type field is required."]
    elif kind not in _SAMPLE_TYPES:
        errors["type"] = ["The selected type is invalid."]
    topic = query.get("topic") or None
    if topic and len(topic) > 500:
        errors["topic"] = ["The topic field must not be greater than 500 characters."]
    lang = query.get("lang_code") or None
    if lang and len(lang) > 4:
        errors["lang_code"] = ["The lang code field must not be greater than 4 characters."]
    _raise(errors)
    return {"type": kind, "topic": topic, "lang_code": lang}


@get("/prompts/samples", operation_id="prompt_samples", operation_class=SamplesOperation, responses=responses_for(SampleAnswer, 422))
async def prompt_samples(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    values = _check_samples(request)
    params = {"booster": "prompts/samples", **{k: v for k, v in values.items() if v}}
    answer = await _run_booster(engine, account, _booster_spec(engine), params)
    return {"success": True, "data": answer}


@get(
    "/prompts/samples/price-calculation",
    operation_id="prompt_samples_price",
    operation_class=SamplesOperation,
    responses=responses_for(BoosterPrice, 422),
)
async def prompt_samples_price(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    values = _check_samples(request)
    return {"price": price_of(_booster_spec(engine), {"topic": values["topic"] or ""})}


ROUTES = [
    *_booster_routes("prompt/image", negative=True, image="none"),
    *_booster_routes("prompt/video", negative=True, image="optional"),
    *_booster_routes("prompt/speech", negative=False, image="none"),
    *_booster_routes("prompt/image2image", negative=True, image="required"),
    prompt_samples,
    prompt_samples_price,
]
