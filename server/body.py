"""Reads any request body (JSON, multipart, form-urlencoded) into fields and files.

Real clients send every encoding to every route (API_CONTRACT.md): PHP-bracket keys such as
``loras[0][name]`` and ``images[]`` are folded into lists and objects, and ``""`` means absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from engine.errors import InvalidRequest

__all__ = ("FormFile", "RequestBody", "read_body")

_BRACKETS = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True)
class FormFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class RequestBody:
    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[FormFile]] = field(default_factory=dict)
    size: int = 0
    """Bytes of a JSON body (0 for forms): a small one is cheap to check."""


async def read_body(request: Request) -> RequestBody:
    content_type = request.headers.get("content-type", "").lower()
    if "multipart/form-data" in content_type or "application/x-www-form-urlencoded" in content_type:
        form = await request.form()
        body = RequestBody()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                if not data and not value.filename:
                    continue  # an empty file part is how n8n sends "no file"
                name = _base_name(key)
                body.files.setdefault(name, []).append(
                    FormFile(value.filename or name, value.content_type or "application/octet-stream", data)
                )
            else:
                _assign(body.fields, key, value)
        _check_values(body.fields)
        return body
    raw = await request.body()
    if not raw.strip():
        return RequestBody()
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidRequest.on("body", _TOO_DEEP) from None
    except ValueError:
        raise InvalidRequest.on("body", "The request body must be valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest.on("body", "The request body must be a JSON object.")
    _check_values(data)
    return RequestBody(fields=data, size=len(raw))


_MAX_DEPTH = 16
"""Deeper than any dryAPI body (LoRAs are the deepest, at 3); hostile nesting stops here as a 422."""
_TOO_DEEP = f"The request body is nested more than {_MAX_DEPTH} levels deep."


def _check_values(fields: dict[str, Any]) -> None:
    """422 for what no field can hold: text that is not Unicode (a lone surrogate from JSON's \\ud800
    cannot be stored, tokenized or written as UTF-8) and nesting past ``_MAX_DEPTH``."""
    for name, value in fields.items():
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > _MAX_DEPTH:
                raise InvalidRequest.on("body", _TOO_DEEP)
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidRequest.on(str(name), f"The {name} field must be valid UTF-8 text.") from None
            elif isinstance(item, dict):
                stack.extend((v, depth + 1) for v in (*item.keys(), *item.values()))
            elif isinstance(item, list):
                stack.extend((v, depth + 1) for v in item)


def _base_name(key: str) -> str:
    return key.split("[", 1)[0]


def _assign(fields: dict[str, Any], key: str, value: Any) -> None:
    """``loras[0][name]=x`` -> fields["loras"] = {"0": {"name": "x"}}; ``tags[]=a`` appends to a list."""
    base = _base_name(key)
    parts = _BRACKETS.findall(key[len(base) :])
    if not parts:
        if base in fields and not isinstance(fields[base], (dict, list)):
            # A repeated plain key (``image=a&image=b``) becomes a list, as PHP would not, but clients mean it.
            previous = fields[base]
            fields[base] = [previous, value] if not isinstance(previous, list) else previous + [value]
        else:
            fields[base] = value
        return
    container: Any = fields
    path = [base, *parts]
    for index, part in enumerate(path[:-1]):
        nxt = path[index + 1]
        default: Any = [] if nxt == "" else {}
        if isinstance(container, list):
            container.append(default)
            container = container[-1]
            continue
        if part not in container or not isinstance(container[part], (dict, list)):
            container[part] = default
        container = container[part]
    last = path[-1]
    if isinstance(container, list):
        container.append(value)
    elif last == "":
        container.setdefault(last, []).append(value)
    else:
        container[last] = value
