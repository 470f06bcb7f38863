"""OpenAPI request bodies and query parameters, so the document Litestar serves is the contract.

The routes parse bodies and queries themselves (server/body.py reads JSON, form-urlencoded and multipart
on every route), so Litestar cannot infer them; the operation classes below declare them: the task
bodies from the task modules' fields (engine/tasks), the prompt boosters' bodies, and the query of
/models and /prompts/samples.
The answers are declared beside them in server/responses.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from litestar.openapi.spec import (
    OpenAPIMediaType as MediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

from engine.tasks import Task
from engine.tasks._fields import FILE_RULES, Field

__all__ = ("DryOperation", "ModelsOperation", "SamplesOperation", "booster_operation", "operation_for", "schema_of")

_STRING = Schema(type=OpenAPIType.STRING)


def _field_schema(field: Field) -> Schema:
    if field.kind == "integer":
        return Schema(type=OpenAPIType.INTEGER, enum=list(field.choices) or None)
    if field.kind == "number":
        return Schema(type=OpenAPIType.NUMBER)
    if field.kind == "boolean":
        return Schema(type=OpenAPIType.BOOLEAN)
    if field.kind == "url":
        return Schema(type=OpenAPIType.STRING, format="uri", max_length=field.max_length or 2048)
    if field.kind == "text_or_list":
        return Schema(one_of=[_STRING, Schema(type=OpenAPIType.ARRAY, items=_STRING, min_items=1)])
    if field.kind == "loras":
        item = Schema(
            type=OpenAPIType.OBJECT,
            properties={"name": _STRING, "weight": Schema(type=OpenAPIType.NUMBER)},
            required=["name"],
        )
        return Schema(type=OpenAPIType.ARRAY, items=item)
    if field.kind == "file":
        rule = FILE_RULES[field.file_rule or "image"]
        return Schema(type=OpenAPIType.STRING, format="binary", description=f"{', '.join(sorted(rule.extensions))}; "
                      f"at most {rule.max_bytes // (1024 * 1024)} MB")
    if field.kind == "files":
        return Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING, format="binary"))
    return Schema(type=OpenAPIType.STRING, enum=list(field.choices) or None, max_length=field.max_length)


def schema_of(task: Task, *, for_price: bool, with_files: bool) -> Schema:
    properties: dict[str, Schema] = {"model": _STRING}
    required = ["model"] if task.model_required else []
    for field in task.fields:
        if field.price == ("no" if for_price else "only"):
            continue
        if field.kind in ("file", "files") and not with_files:
            continue
        name = "images[]" if field.kind == "files" else field.name
        properties[name] = _field_schema(field)
        if (field.price == "required") if for_price else field.required:
            required.append(name)
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required or None)


def _content(fields: Schema, with_files: Schema, *, upload_required: bool) -> dict[str, MediaType]:
    """Every route reads all three encodings, but files come only in multipart: a route that cannot
    succeed without a file declares multipart alone, as a JSON or form request there always fails."""
    multipart = {"multipart/form-data": MediaType(schema=with_files)}
    if upload_required:
        return multipart
    return {
        "application/json": MediaType(schema=fields),
        **multipart,
        "application/x-www-form-urlencoded": MediaType(schema=fields),
    }


@dataclass
class DryOperation(Operation):
    """An operation of the dryAPI routes; subclasses (``_with``) name a request body or query parameters."""

    body: ClassVar[dict[str, MediaType] | None] = None
    query: ClassVar[tuple[Parameter, ...]] = ()

    def __post_init__(self) -> None:
        if self.body is not None:
            self.request_body = RequestBody(content=self.body, required=True)
        declared = {(p.name, p.param_in) for p in self.parameters or () if isinstance(p, Parameter)}
        extra = [p for p in self.query if (p.name, p.param_in) not in declared]
        if extra:
            self.parameters = [*(self.parameters or ()), *extra]
        # Litestar declares its own 400 (an inline schema) for a path or query parameter that fails to
        # parse; server/errors.py answers those as a 422 envelope. A 400 the route declares is a reference.
        if self.responses and "400" in self.responses and not _declared(self.responses["400"]):
            del self.responses["400"]


def _declared(response: OpenAPIResponse | Reference) -> bool:
    media = (getattr(response, "content", None) or {}).get("application/json")
    return media is not None and isinstance(media.schema, Reference)


def _with(name: str, *, body: dict[str, MediaType] | None = None, query: tuple[Parameter, ...] = ()) -> type[DryOperation]:
    return type(name, (DryOperation,), {"body": body, "query": query})


def operation_for(task: Task, *, for_price: bool) -> type[Operation]:
    upload_required = task.needs_upload and not for_price
    content = _content(
        schema_of(task, for_price=for_price, with_files=False),
        schema_of(task, for_price=for_price, with_files=True),
        upload_required=upload_required,
    )
    return _with(f"{task.name.replace('/', '_')}_{'price' if for_price else 'submit'}_operation", body=content)


_PROMPT = Schema(type=OpenAPIType.STRING, min_length=3)
_LANG_CODE = Schema(type=OpenAPIType.STRING, max_length=4)


def booster_operation(*, negative: bool, image: str, for_price: bool) -> type[Operation]:
    """The body of a prompt booster (server/routes/prompts.py): ``image`` is none, optional or required
    (on submit; the price never needs it); speech takes ``lang_code`` where the others take a negative prompt."""
    properties: dict[str, Schema | Reference] = {"prompt": _PROMPT}
    if negative:
        properties["negative_prompt"] = _PROMPT
    else:
        properties["lang_code"] = _LANG_CODE
    fields = Schema(type=OpenAPIType.OBJECT, properties=properties, required=["prompt"])
    with_files = fields
    upload_required = image == "required" and not for_price
    if image != "none":
        picture = _field_schema(Field("image", "file", file_rule="booster_image"))
        with_files = Schema(
            type=OpenAPIType.OBJECT,
            properties={**properties, "image": picture},
            required=["prompt", "image"] if upload_required else ["prompt"],
        )
    name = f"booster_{'negative' if negative else 'speech'}_{image}_{'price' if for_price else 'submit'}_operation"
    return _with(name, body=_content(fields, with_files, upload_required=upload_required))


def _query(name: str, schema: Schema, description: str, *, required: bool = False, **kw) -> Parameter:
    return Parameter(name=name, param_in="query", schema=schema, description=description, required=required, **kw)


_PAGE_SIZE = "Models per page (default 15; more than 50 is served as 50)."
ModelsOperation = _with(
    "ModelsOperation",
    query=(
        _query(
            "filter[inference_types]",
            Schema(type=OpenAPIType.ARRAY, items=_STRING),
            "Comma-separated inference types (txt2img,txt2audio); repeated keys and filter[inference_types][] work too.",
            style="form",
            explode=False,
        ),
        _query("filter[available]", Schema(type=OpenAPIType.BOOLEAN),
               "Only models installed and runnable here (true, 1, yes or on)."),
        _query("per_page", Schema(type=OpenAPIType.INTEGER, minimum=1, default=15), _PAGE_SIZE),
        _query("limit", Schema(type=OpenAPIType.INTEGER, minimum=1), "Another name for per_page."),
        _query("page", Schema(type=OpenAPIType.INTEGER, minimum=1, default=1), "Page number, from 1."),
    ),
)

SamplesOperation = _with(
    "SamplesOperation",
    query=(
        _query("type", Schema(type=OpenAPIType.STRING, enum=["text2image", "text2speech"]),
               "What the sample prompt is for.", required=True),
        _query("topic", Schema(type=OpenAPIType.STRING, max_length=500),
               "What the prompt should be about; a topic of the model's choosing when absent."),
        _query("lang_code", _LANG_CODE, "Language of a text2speech sample, e.g. en."),
    ),
)
