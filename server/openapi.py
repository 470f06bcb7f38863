"""OpenAPI request bodies generated from the task forms, so the document Litestar serves is the contract.

The routes parse bodies themselves (every encoding on every route), so Litestar cannot infer their
schemas; each operation class below adds the JSON, form and multipart bodies from server/forms.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIMediaType as MediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from server.fields import FILE_RULES, Field
from server.forms import TaskForm

__all__ = ("operation_for", "schema_of")

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


def schema_of(form: TaskForm, *, for_price: bool, with_files: bool) -> Schema:
    properties: dict[str, Schema] = {"model": _STRING}
    required = ["model"] if form.model_required else []
    for field in form.fields:
        if for_price and field.price == "no":
            continue
        if field.kind in ("file", "files") and not with_files:
            continue
        name = "images[]" if field.kind == "files" else field.name
        properties[name] = _field_schema(field)
        if (field.price == "required") if for_price else field.required:
            required.append(name)
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required or None)


def operation_for(form: TaskForm, *, for_price: bool) -> type[Operation]:
    has_files = any(f.kind in ("file", "files") and (not for_price or f.price != "no") for f in form.fields)
    json_schema = schema_of(form, for_price=for_price, with_files=False)
    content = {
        "multipart/form-data": MediaType(schema=schema_of(form, for_price=for_price, with_files=True)),
        "application/x-www-form-urlencoded": MediaType(schema=json_schema),
    }
    if not has_files or for_price:
        content = {"application/json": MediaType(schema=json_schema), **content}

    @dataclass
    class TaskOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(content=content, required=True)

    TaskOperation.__name__ = f"{form.task}_{'price' if for_price else 'submit'}_operation"
    return TaskOperation
