"""OpenAI-compatible routes over the same engine jobs: `/v1/models`, `/v1/embeddings`,
`/v1/audio/transcriptions`, `/v1/audio/speech`, `/v1/images/generations`, `/v1/images/edits`.

Each request is validated by the dryAPI task's own rules and runs as an inline job, so it is
scheduled, priced, billed and recorded like any other; only the shapes follow OpenAI's API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide

from engine import Account, Engine
from engine.errors import DryError, InvalidRequest, RateLimited
from engine.redaction import redact_paths
from model_registry.errors import RegistryError
from server.auth import provide_account
from engine.tasks import TASKS, validate
from server.body import RequestBody, read_body

__all__ = ("ROUTER", "TASK_OF_ROUTE")

TASK_OF_ROUTE = {
    "/v1/embeddings": "txt2embedding",
    "/v1/images/generations": "txt2img",
    "/v1/images/edits": "img2img",
    "/v1/audio/speech": "txt2audio",
    "/v1/audio/transcriptions": "audiofile2txt",
}
"""The dryAPI task each OpenAI route runs: its checks, its pipeline and its rate limits."""

_AUDIO_FORMATS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "opus": "ogg", "ogg": "ogg"}


async def _run(engine: Engine, account: Account, task: str, body: RequestBody):
    """Validate as the dryAPI route would, run inline, and return the finished job."""
    checked = await asyncio.to_thread(validate, TASKS[task], body.fields, body.files, engine, for_price=False)
    job = await engine.run_inline(account, task, checked.spec, checked.params, checked.uploads)
    if job.status != "done":
        raise DryError(job.error_message or "The job failed.")
    return job, checked


def _model_or_default(engine: Engine, task_type: str, requested: Any) -> str | None:
    """OpenAI clients name their own models (``whisper-1``, ``tts-1``): those mean "the default"."""
    if isinstance(requested, str) and requested:
        try:
            return engine.registry.get(requested).slug
        except RegistryError:
            pass
    spec = engine.registry.first_runnable(task_type)
    return spec.slug if spec else None


@get("/models", operation_id="openai_models")
async def models(engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    data = [
        {"id": spec.slug, "object": "model", "created": 0, "owned_by": "drylocal", "inference_types": list(spec.inference_types)}
        for spec in engine.registry.all()
        if engine.registry.availability(spec).runnable
    ]
    return {"object": "list", "data": data}


@post("/embeddings", status_code=200, operation_id="openai_embeddings")
async def embeddings(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    raw = (await read_body(request)).fields
    fields = {"input": raw.get("input"), "model": _model_or_default(engine, "txt2embedding", raw.get("model"))}
    job, _ = await _run(engine, account, "txt2embedding", RequestBody(fields))
    result = json.loads(job.result)
    if raw.get("encoding_format") == "base64":
        # OpenAI's Python client asks for base64 by default: little-endian float32, as OpenAI sends.
        for item in result["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return result


@post("/audio/transcriptions", status_code=200, operation_id="openai_transcriptions")
async def transcriptions(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> Response:
    raw = await read_body(request)
    upload = raw.files.get("file")
    if not upload:
        raise InvalidRequest.on("file", "The file field is required.")
    response_format = raw.fields.get("response_format") or "json"
    if response_format not in ("json", "text", "verbose_json", "srt", "vtt"):
        raise InvalidRequest.on("response_format", "The response format must be json, text, verbose_json, srt or vtt.")
    fields = {
        "model": _model_or_default(engine, "audio_file2text", raw.fields.get("model")),
        "include_ts": response_format in ("verbose_json", "srt", "vtt"),
        "return_result_in_response": True,
    }
    job, _ = await _run(engine, account, "audiofile2txt", RequestBody(fields, {"audio": upload}))
    segments = job.meta.get("timestamps", [])
    plain = " ".join(s["text"] for s in segments) if segments else (job.result or "")
    if response_format == "text":
        return Response(plain, media_type="text/plain")
    if response_format in ("srt", "vtt"):
        return Response(_subtitles(segments, response_format), media_type="text/plain")
    body: dict[str, Any] = {"text": plain}
    if response_format == "verbose_json":
        body.update(
            task="transcribe",
            language=job.meta.get("language"),
            duration=job.meta.get("duration_seconds"),
            segments=[{"id": i, "start": s["start"], "end": s["end"], "text": s["text"]} for i, s in enumerate(segments)],
        )
    return Response(body)


def _subtitles(segments: list[dict], kind: str) -> str:
    def stamp(seconds: float) -> str:
        millis = int(round(seconds * 1000))
        text = f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}"
        return text + ("," if kind == "srt" else ".") + f"{millis % 1000:03d}"

    blocks = [
        (f"{i + 1}\n" if kind == "srt" else "") + f"{stamp(s['start'])} --> {stamp(s['end'])}\n{s['text']}\n"
        for i, s in enumerate(segments)
    ]
    return ("WEBVTT\n\n" if kind == "vtt" else "") + "\n".join(blocks)


@post("/audio/speech", status_code=200, operation_id="openai_speech")
async def speech(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> Response:
    raw = (await read_body(request)).fields
    slug = _model_or_default(engine, "txt2audio", raw.get("model"))
    response_format = raw.get("response_format") or "mp3"
    if response_format not in _AUDIO_FORMATS:
        raise InvalidRequest.on("response_format", f"The response format must be one of: {', '.join(_AUDIO_FORMATS)}.")
    fields = {"text": raw.get("input"), "model": slug, "format": _AUDIO_FORMATS[response_format], "speed": raw.get("speed")}
    voice = raw.get("voice")
    if slug and isinstance(voice, str):
        fields.update(_voice_and_lang(engine, slug, voice))
    job, _ = await _run(engine, account, "txt2audio", RequestBody({k: v for k, v in fields.items() if v is not None}))
    data = await asyncio.to_thread(engine.result_bytes, job)
    return Response(data, media_type="audio/mpeg" if response_format == "mp3" else f"audio/{fields['format']}")


def _voice_and_lang(engine: Engine, slug: str, voice: str) -> dict[str, str]:
    """OpenAI voice names (``alloy``) find the model's voice of that name (Kokoro's ``af_alloy``)."""
    for language in engine.registry.get(slug).languages:
        for candidate in language.voices:
            if voice in (candidate.slug, candidate.name.lower()) or candidate.slug.endswith(f"_{voice}"):
                return {"voice": candidate.slug, "lang": language.slug}
    return {"voice": voice}


@post("/images/generations", status_code=200, operation_id="openai_image_generations")
async def image_generations(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    raw = (await read_body(request)).fields
    width, height = _size(raw.get("size") or "1024x1024")
    count = int(raw.get("n") or 1)
    if not 1 <= count <= 4:
        raise InvalidRequest.on("n", "n must be between 1 and 4.")
    fields = {"prompt": raw.get("prompt"), "model": _model_or_default(engine, "txt2img", raw.get("model")),
              "width": width, "height": height, "seed": raw.get("seed", -1)}
    data = []
    for _ in range(count):
        job, _ = await _run(engine, account, "txt2img", RequestBody(dict(fields)))
        data.append(await _image_item(engine, job, raw.get("response_format")))
    return {"created": int(time.time()), "data": data}


@post("/images/edits", status_code=200, operation_id="openai_image_edits")
async def image_edits(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    raw = await read_body(request)
    pictures = raw.files.get("image") or []  # "image[]" parts arrive here too, brackets dropped
    if not pictures:
        raise InvalidRequest.on("image", "The image field is required.")
    fields: dict[str, Any] = {"prompt": raw.fields.get("prompt"), "model": _model_or_default(engine, "img2img", raw.fields.get("model")),
                              "seed": raw.fields.get("seed", -1)}
    if raw.fields.get("size"):
        fields["width"], fields["height"] = _size(raw.fields["size"])
    spec = engine.registry.get(fields["model"]) if fields["model"] else None
    if spec is not None:
        fields.setdefault("steps", spec.info.defaults.get("steps", spec.limit("min_steps", 1)))
    files = {"image": pictures} if len(pictures) == 1 else {"images": pictures}
    job, _ = await _run(engine, account, "img2img", RequestBody(fields, files))
    return {"created": int(time.time()), "data": [await _image_item(engine, job, raw.fields.get("response_format"))]}


def _size(text: Any) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise InvalidRequest.on("size", "The size must look like 1024x1024.") from None
    return width, height


async def _image_item(engine: Engine, job, response_format: Any) -> dict[str, str]:
    if response_format == "b64_json":
        image = await asyncio.to_thread(engine.result_bytes, job)
        return {"b64_json": base64.b64encode(image).decode()}
    return {"url": engine.result_url(job)}


def _openai_error(request: Request, exc: Exception) -> Response:
    """OpenAI clients read ``{"error": {"message", "type", "param", "code"}}``."""
    status = getattr(exc, "status", 500)
    param = next(iter(exc.errors), None) if isinstance(exc, InvalidRequest) else None
    if isinstance(exc, RegistryError):
        status, param = 422, "model"
    message = redact_paths(getattr(exc, "message", None) or str(exc), request.app.state.settings.home)
    kind = {401: "authentication_error", 404: "not_found_error", 422: "invalid_request_error", 429: "rate_limit_error"}
    # OpenAI's clients back off by Retry-After, as dryAPI's do.
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    body = {"error": {"message": message, "type": kind.get(status, "server_error"), "param": param, "code": None}}
    return Response(body, status_code=status, headers=headers)


ROUTER = Router(
    "/v1",
    route_handlers=[models, embeddings, transcriptions, speech, image_generations, image_edits],
    dependencies={"account": Provide(provide_account, sync_to_thread=False)},
    exception_handlers={DryError: _openai_error, RegistryError: _openai_error},
)
