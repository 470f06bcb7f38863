"""A request to a task, checked: the model resolved, each field coerced, each upload within its rule,
then the task's own checks against the model; every problem answered at once in one 422."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from engine.errors import InvalidRequest
from engine.media import image_size
from engine.tasks._checks import Checking, UploadedFile
from engine.tasks._fields import FILE_RULES, CoercionError, coerce
from model_registry import ModelSpec, UnknownModel

if TYPE_CHECKING:
    from engine import Engine
    from engine.engine import Upload
    from engine.tasks._definition import Task

__all__ = ("Validated", "validate")


@dataclass
class Validated:
    spec: ModelSpec
    params: dict[str, Any]
    """The checked values, as the job store keeps them (the pipeline gets them typed)."""
    uploads: list[Upload]
    webhook_url: str | None = None
    return_inline: bool = False


def validate(
    task: Task,
    fields: Mapping[str, Any],
    files: Mapping[str, list[UploadedFile]],
    engine: Engine,
    *,
    for_price: bool,
) -> Validated:
    from engine.engine import Upload

    errors: dict[str, list[str]] = {}
    spec = _resolve_model(task, fields.get("model"), engine, errors)
    values = _coerce_fields(task, fields, for_price, errors)
    checked_files, sizes = _check_files(task, files, for_price, errors)
    if spec is not None:
        checking = Checking(task, spec, values, checked_files, sizes, engine, for_price, errors)
        task.check(checking)
        values = checking.values
    if errors:
        raise InvalidRequest(errors, _summary(errors))
    assert spec is not None
    if not for_price:
        _require_runnable(spec, engine)
    uploads = [
        Upload(name, f.filename, f.content_type, f.data) for name, items in checked_files.items() for f in items
    ]
    # The URL is checked by Engine.submit, which knows whose job it is (only the owner may call this machine).
    webhook_url = values.pop("webhook_url", None)
    return_inline = bool(values.pop("return_result_in_response", False))
    if not for_price:
        values = task.stored(values)
    return Validated(spec, values, uploads, webhook_url, return_inline)


def _resolve_model(task: Task, raw: Any, engine: Engine, errors: dict) -> ModelSpec | None:
    if raw in (None, "", []):
        if task.model_required:
            errors["model"] = ["The model field is required."]
            return None
        spec = engine.registry.first_runnable(task.inference_type)
        return spec or next(iter(engine.registry.for_types([task.inference_type])), None)
    if not isinstance(raw, str):
        errors["model"] = ["The model field must be a string."]
        return None
    try:
        spec = engine.registry.get(raw)
    except UnknownModel:
        errors["model"] = ["The selected model does not exist."]
        return None
    if not spec.supports(task.inference_type):
        errors["model"] = [f"The selected model does not support {task.label}."]
        return None
    return spec


def _coerce_fields(task: Task, fields: Mapping[str, Any], for_price: bool, errors: dict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec_field in task.fields:
        if spec_field.kind in ("file", "files") or spec_field.price == ("no" if for_price else "only"):
            continue
        raw = None
        for name in (spec_field.name, *spec_field.aliases):
            candidate = fields.get(name)
            if candidate not in (None, "", []):
                raw = candidate
                break
        if raw is None:
            required = spec_field.price == "required" if for_price else spec_field.required
            if required:
                errors.setdefault(spec_field.name, []).append(
                    f"The {spec_field.name.replace('_', ' ')} field is required."
                )
            continue
        try:
            values[spec_field.name] = coerce(spec_field, raw)
        except CoercionError as exc:
            errors.setdefault(spec_field.name, []).append(str(exc))
    return values


def _check_files(task: Task, files: Mapping[str, list[UploadedFile]], for_price: bool, errors: dict):
    checked: dict[str, list[UploadedFile]] = {}
    sizes: dict[str, list[tuple[int, int]]] = {}
    for spec_field in task.fields:
        if spec_field.kind not in ("file", "files"):
            continue
        items = files.get(spec_field.name, [])
        if not items:
            if spec_field.required and not for_price:
                errors.setdefault(spec_field.name, []).append(
                    f"The {spec_field.name.replace('_', ' ')} field is required."
                )
            continue
        rule = FILE_RULES[spec_field.file_rule or "image"]
        label = spec_field.name.replace("_", " ")
        for item in items:
            extension = Path(item.filename).suffix.lower().lstrip(".")
            if extension not in rule.extensions:
                errors.setdefault(spec_field.name, []).append(
                    f"The {label} field must be a file of type: {', '.join(sorted(rule.extensions))}."
                )
                continue
            if len(item.data) > rule.max_bytes:
                errors.setdefault(spec_field.name, []).append(
                    f"The {label} field must not be greater than {rule.max_bytes // 1024} kilobytes."
                )
                continue
            if rule.label == "image" and extension != "svg":
                size = image_size(item.data)
                if size is None:
                    errors.setdefault(spec_field.name, []).append(f"The {label} field must be an image.")
                    continue
                sizes.setdefault(spec_field.name, []).append(size)
            checked.setdefault(spec_field.name, []).append(item)
    return checked, sizes


def _require_runnable(spec: ModelSpec, engine: Engine) -> None:
    availability = engine.registry.availability(spec)
    if not availability.runnable:
        raise InvalidRequest({"model": [availability.reason]}, availability.reason)


def _summary(errors: dict[str, list[str]]) -> str:
    messages = [m for ms in errors.values() for m in ms]
    if len(messages) == 1:
        return messages[0]
    return f"{messages[0]} (and {len(messages) - 1} more error{'s' if len(messages) > 2 else ''})"
