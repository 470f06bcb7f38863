"""The answers of the dryAPI routes as typed structs, declared once for the OpenAPI document.

The handlers still build plain dicts; these structs describe them field for field (the names are
dryAPI's), and ``responses_for`` attaches one as a route's 200 answer beside the error envelope of
every status the route can refuse with (server/errors.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar.openapi.datastructures import ResponseSpec
from msgspec import UNSET, Meta, Struct, UnsetType, field

__all__ = (
    "BalanceAnswer",
    "BoostedPrompt",
    "BoostedSpeechPrompt",
    "BoosterPrice",
    "ErrorEnvelope",
    "ModelsPage",
    "PriceAnswer",
    "SampleAnswer",
    "StatusAnswer",
    "SubmitAnswer",
    "responses_for",
)

# --------------------------------------------------------------------------- task routes


class RequestId(Struct):
    request_id: Annotated[str, Meta(description="The job's id, for /request-status and the webhooks.")]


class SubmitAnswer(Struct):
    data: RequestId


class Price(Struct):
    price: Annotated[float, Meta(description="Price of the job in USD.", ge=0)]


class PriceAnswer(Struct):
    data: Price


# --------------------------------------------------------------------------- utilities


class JobStatus(Struct):
    status: Literal["pending", "processing", "done", "error"]
    progress: Annotated[float, Meta(ge=0, le=100, description="0.0 to 100.0; 100 once done.")]
    result_url: Annotated[str | None, Meta(description="Signed URL of the result file, once done.")]
    result: Annotated[str | None, Meta(description="The text of a text result (transcription, OCR, embedding JSON).")]
    preview: Annotated[str | None, Meta(description="A small base64 JPEG of the job in progress, for tasks that have one.")]
    results_alt_formats: Annotated[
        dict[str, str] | None, Meta(description="Signed URLs of the result in other formats (jpg, webp), once done.")
    ]
    # Present only when status is "error".
    error: str | None | UnsetType = UNSET
    error_code: Annotated[str | None | UnsetType, Meta(description="One of dryAPI's webhook error codes.")] = UNSET
    error_message: str | None | UnsetType = UNSET


class StatusAnswer(Struct):
    data: JobStatus


class Balance(Struct):
    balance: float
    currency: str
    client_id: str
    tier: str


class BalanceAnswer(Struct):
    data: Balance
    balance: Annotated[float, Meta(description="The same balance at top level, as the docs show it.")]


class ModelDetails(Struct):
    limits: dict[str, Any]
    features: dict[str, Any]
    defaults: dict[str, Any]


class ModelLora(Struct):
    display_name: str
    name: str


class ModelVoice(Struct):
    name: str
    slug: str
    gender: str | None


class ModelLanguage(Struct):
    name: str
    slug: str
    voices: list[ModelVoice]


class ModelPlacement(Struct):
    """Where the model sits on this machine's device (model_registry/placement.py), fastest that fits."""

    kind: Annotated[
        Literal["resident", "model_offload", "group_offload", "sequential_offload", "too_big"],
        Meta(description="resident: all on the GPU; *_offload: weights in host RAM, moved up by component, group or layer."),
    ]
    gpu_bytes: Annotated[int, Meta(description="Peak GPU memory of a job placed so (estimated at the largest request).")]
    host_bytes: Annotated[int, Meta(description="Weights kept in host RAM while offloaded.")]
    vae_tiling: Annotated[bool, Meta(description="The VAE decodes in tiles, as a whole decode would not fit.")]
    quantized_encoders: Annotated[
        list[str],
        Meta(description="Text encoders loaded quantized like the model's transformer (its NF4/INT8/FP8), to fit."),
    ]
    reason: Annotated[str | None, Meta(description="For too_big: why, and what would fit.")]


class ModelResource(Struct):
    """One entry of the models list: the hosted fields, then drylocal's own."""

    name: str
    slug: Annotated[str, Meta(description="What to send as `model`.")]
    inference_types: list[str]
    info: ModelDetails
    loras: list[ModelLora]
    installed: Annotated[bool, Meta(description="Its weights are on this machine.")]
    available: Annotated[bool, Meta(description="Installed, and this build has the backend that runs it.")]
    unavailable_reason: str | None
    quantization: str
    weights_note: Annotated[
        str | None, Meta(description="How the published weights become `quantization` at load, where they differ.")
    ]
    memory_estimate_bytes: int
    memory_bytes: Annotated[int | None, Meta(description="Measured once the model has been loaded.")]
    load_seconds: float | None
    loaded: bool
    aliases: list[str]
    license: Annotated[str | None, Meta(description="The weights' licence as their publisher names it.")]
    placement: ModelPlacement
    languages: Annotated[list[ModelLanguage] | UnsetType, Meta(description="Speech models only.")] = UNSET


class PageLinks(Struct):
    first: str | None
    last: str | None
    prev: str | None
    next: str | None


class PageMeta(Struct):
    current_page: int
    from_: int | None = field(name="from")
    last_page: int
    path: str
    per_page: int
    to: int | None
    total: int


class ModelsPage(Struct):
    data: list[ModelResource]
    links: PageLinks
    meta: PageMeta


# --------------------------------------------------------------------------- prompt enhancement


class BoostedPrompt(Struct):
    prompt: str
    negative_prompt: str | None | UnsetType = UNSET


class BoostedSpeechPrompt(Struct):
    prompt: str


class BoosterPrice(Struct):
    price: Annotated[float, Meta(ge=0)]


class SamplePrompt(Struct):
    type: Literal["text2image", "text2speech"]
    prompt: str


class SampleAnswer(Struct):
    success: bool
    data: SamplePrompt


# --------------------------------------------------------------------------- errors


class FieldMessages(Struct):
    field: str
    messages: list[str]


class ErrorEnvelope(Struct):
    """Every refusal (server/errors.py)."""

    data: None
    message: str
    errors: Annotated[
        dict[str, list[str]] | list[FieldMessages],
        Meta(description='{field: [messages]} (an empty list when none); [{field, messages}] with error_format = "array".'),
    ]
    statusCode: int


_REFUSALS = {
    400: "A body that cannot be read as the form it claims to be (a broken multipart body).",
    401: "No API key, or an unknown one.",
    403: "The account is suspended.",
    404: "No such request for this key.",
    422: "The request is invalid: per-field messages in errors.",
    429: "Rate limited: see the Retry-After and X-RateLimit-Type headers.",
}
# Every /api/v1/client route authenticates and counts against the key's rate limits.
_ALWAYS = (401, 403, 429)


def responses_for(answer: type[Struct], *refusals: int) -> dict[int, ResponseSpec]:
    """The 200 ``answer`` and the error envelope for 401, 403, 429 and each of ``refusals`` (400 and 422 where
    a route reads a body, 404 where it looks a job up)."""
    specs = {200: ResponseSpec(answer, generate_examples=False, description="OK")}
    for status in sorted({*_ALWAYS, *refusals}):
        specs[status] = ResponseSpec(ErrorEnvelope, generate_examples=False, description=_REFUSALS[status])
    return specs
