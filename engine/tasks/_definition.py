"""What a task module declares, and what the rest of drylocal derives from it.

A task is one module of this package exposing ``TASK``: its route name and label, its typed
parameters (one msgspec Struct whose ``Annotated[..., Form(...)]`` fields are what clients send),
its checks, its pipeline, its rate limit and its MCP tool. The routes, the OpenAPI operations, the
MCP tools, the rate-limit tables and the inference-type map are all built from the set of ``TASK``s.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Any, Callable, Generic, Protocol, TypeVar

import msgspec

from engine.tasks._fields import Field
from model_registry import LoadedModel

if TYPE_CHECKING:
    from engine.rate_limits import Limit
    from engine.tasks._checks import Checking

__all__ = (
    "AUDIO_POLLING",
    "BatchPipeline",
    "Form",
    "IMAGE_POLLING",
    "McpTool",
    "Pipeline",
    "Progress",
    "Task",
    "TaskResult",
    "VIDEO_POLLING",
)

Progress = Callable[..., None]
"""``progress(pct, preview_jpeg=None)``: the job's progress, and for images and video a small preview."""

P = TypeVar("P", bound=msgspec.Struct)


@dataclass
class TaskResult:
    data: bytes
    """The result file's bytes."""
    filename: str
    content_type: str
    text: str | None = None
    """Inline result for ``return_result_in_response`` (text, or JSON for structured results)."""
    alt_formats: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    """Facts worth keeping with the job (seed used, detected language, token count...)."""


class Pipeline(Protocol[P]):
    batchable: bool

    def run(self, model: LoadedModel, params: P, progress: Progress) -> TaskResult: ...


class BatchPipeline(Pipeline[P], Protocol[P]):
    """A pipeline whose concurrent jobs of one model run as one call (where they share the GPU)."""

    def run_batch(self, model: LoadedModel, items: list[P]) -> list[TaskResult]: ...

    def batch_size(self, params: P) -> int:
        """How many items one job adds to a batch (the scheduler caps a batch by items, not jobs)."""
        ...


@dataclass(frozen=True)
class Form:
    """Marks a parameter as one clients send, with how the form reads it (the rest come from the checks)."""

    required: bool = False
    price: str = "optional"
    """On the price route: ``required``, ``optional``, ``no`` (not read), or ``only`` (read there alone:
    the client's own count of what a job holds; a job is billed from what it really holds)."""
    kind: str | None = None
    """url, text_or_list, loras, file, files; else read from the annotation (str, int, float, bool)."""
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    max_length: int | None = None
    file_rule: str | None = None


SENT = Form()
"""An optional field clients may send, priced when present."""

# How long MCP tools wait for a job: initial delay, longest delay, give up after (seconds).
AUDIO_POLLING = (1.0, 5.0, 300.0)
IMAGE_POLLING = (2.0, 8.0, 300.0)
VIDEO_POLLING = (5.0, 30.0, 900.0)


@dataclass(frozen=True)
class McpTool:
    name: str
    polling: tuple[float, float, float]


_WEBHOOK = Field("webhook_url", "url", price="no", max_length=2048)
_INLINE = Field("return_result_in_response", "boolean", price="no")
_QUICK_CHECK_BYTES = 4096
_KINDS = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Task(Generic[P]):
    name: str
    """The route (``txt2img``) and the job's ``task``."""
    label: str
    """How the hosted service names the task in messages: 'does not support Text To Image'."""
    group: str
    """The docs' section: generation, analysis, transformation."""
    inference_type: str
    """The models' inference type that serves it."""
    params: type[P]
    check: Callable[[Checking], None]
    pipeline: Pipeline[P]
    rate_limit: Limit | None
    """The Basic tier's limit (Premium has 300 a minute on every route)."""
    mcp: McpTool | None = None
    rate_bucket: str | None = None
    """A bucket the Basic tier shares with other routes (the four Whisper routes share one)."""
    model_required: bool = True
    inline_result: bool = False
    """Whether ``return_result_in_response`` applies."""
    long_running: bool = False
    """Video: the job time limit doubles."""
    routes: bool = True
    """Whether it has the two task routes (the prompt boosters answer on routes of their own)."""
    download_field: str | None = None
    """A URL field whose media is downloaded, beside the GPU's queue, before the job runs."""
    price_route: str = "price-calculation"
    """The price route under the task's: ``videos/replace`` has ``/price``, as the SDK calls it."""
    one_upload_of: tuple[str, ...] = ()
    """File fields of which a submit needs one, though none alone is required (img2img: image or images[])."""

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """The form: the parameters clients send, then the webhook (and the inline flag where it applies)."""
        hints = typing.get_type_hints(self.params, include_extras=True)
        fields = []
        for name in self.params.__struct_fields__:
            hint = hints[name]
            form = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Form)), None)
            if form is None:
                continue
            kind = form.kind or _KINDS[_bare(hint.__origin__)]
            fields.append(
                Field(name, kind, form.required, form.price, form.aliases, form.choices, form.max_length, form.file_rule)
            )
        extra = (_INLINE, _WEBHOOK) if self.inline_result else (_WEBHOOK,)
        return (*fields, *extra)

    def checks_quickly(self, fields: dict[str, Any], files: dict[str, Any], size: int) -> bool:
        """Whether checking this request is pure CPU work of well under a millisecond: no file to read, no
        site to ask about a URL, and little text to tokenize. The routes check such requests on the event
        loop; a hop to a thread and back cost more than the check itself."""
        return not files and size <= _QUICK_CHECK_BYTES and not (self.download_field and fields.get(self.download_field))

    @property
    def needs_upload(self) -> bool:
        """Whether a submit cannot succeed without a file (so its OpenAPI body is multipart alone)."""
        return bool(self.one_upload_of) or any(f.kind in ("file", "files") and f.required for f in self.fields)

    @cached_property
    def _multi_file_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.kind == "files")

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def typed(self, values: dict[str, Any], inputs: dict[str, Any] | None = None) -> P:
        """The parameters as the pipeline takes them: checked values (or a job's stored ones) with the
        paths of its uploaded files. Keys the Struct does not know are ignored: a job stored by an older
        build still runs."""
        merged = dict(values)
        several = self._multi_file_fields
        for name, value in (inputs or {}).items():
            if name in several:
                # One file sent as ``images[]`` is stored as a single path, like any lone upload.
                merged[name] = value if isinstance(value, list) else [value]
            else:
                merged[name] = value[0] if isinstance(value, list) and value else value
        return msgspec.convert(merged, self.params, dec_hook=_paths)

    def stored(self, values: dict[str, Any]) -> dict[str, Any]:
        """Checked values as the job store keeps them, typed once on the way (a check that produced a
        value its Struct does not declare is a bug here, not a silent loss in the pipeline). Uploads are
        not among them: a file field's Struct default is None, its requirement the form's."""
        unknown = set(values) - set(self.params.__struct_fields__)
        if unknown:
            raise AssertionError(f"{self.name}: checks produced undeclared parameters {sorted(unknown)}")
        msgspec.convert(values, self.params, dec_hook=_paths)
        return values

    def time_limit(self, values: dict[str, Any], base_seconds: float) -> float:
        """Seconds a job may run: the setting, twice it for video, and for media twice the media's length
        on top (a long recording is long work, not a stuck job). 0 = no limit."""
        if not base_seconds:
            return 0.0
        if self.long_running:
            return 2 * base_seconds
        return base_seconds + 2 * float(values.get("duration_seconds") or 0)


def _bare(annotation: Any) -> Any:
    """``int`` of ``int | None``."""
    args = typing.get_args(annotation)
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in args if a is not NoneType)
    return annotation


def _paths(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    raise NotImplementedError(kind)
