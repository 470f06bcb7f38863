"""Field definitions of the dryAPI routes and the coercion rules clients rely on.

Clients send numbers as strings, booleans as "1"/"0"/"true"/"false", ``""`` for null, LoRAs as a
list, a JSON string or PHP-bracket fields; every one of those is accepted here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ("FILE_RULES", "Field", "FileRule", "coerce")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    """string, integer, number, boolean, text_or_list, loras, url, file, files."""
    required: bool = False
    price: str = "optional"
    """On the price route: ``required``, ``optional`` or ``no`` (not part of the price request); ``only``:
    read on the price route alone, never on submit, because it is the client's own count of what a job
    holds (``count_text``, ``duration_seconds``) and a job is billed from what it really holds."""
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    max_length: int | None = None
    file_rule: str | None = None
    description: str = ""


@dataclass(frozen=True)
class FileRule:
    extensions: frozenset[str]
    max_bytes: int
    label: str


_MB = 1024 * 1024
# limits-and-quotas.md, "File Uploads".
FILE_RULES: dict[str, FileRule] = {
    "image": FileRule(frozenset({"jpg", "jpeg", "png", "gif", "bmp", "webp"}), 10 * _MB, "image"),
    "booster_image": FileRule(frozenset({"jpg", "jpeg", "png", "gif", "bmp", "webp", "svg"}), 10 * _MB, "image"),
    "video": FileRule(frozenset({"mp4", "mpeg", "mpg", "mov", "qt", "avi", "wmv", "ogg", "ogv"}), 80 * _MB, "video"),
    "audio": FileRule(frozenset({"aac", "mp3", "ogg", "oga", "wav", "webm", "flac", "m4a"}), 80 * _MB, "audio"),
    "voice_reference": FileRule(frozenset({"mp3", "wav", "flac", "ogg", "m4a"}), 10 * _MB, "audio"),
    "music_reference": FileRule(frozenset({"mp3", "wav", "flac", "ogg", "m4a"}), 10 * _MB, "audio"),
    "video_audio": FileRule(frozenset({"mp3", "wav", "ogg", "flac"}), 20 * _MB, "audio"),
    # transcribe's source_file: "audio or video", each within its own route's limit.
    "media": FileRule(
        frozenset({"mp4", "mpeg", "mpg", "mov", "qt", "avi", "wmv", "ogg", "ogv", "aac", "mp3", "oga", "wav", "webm", "flac", "m4a"}),
        80 * _MB,
        "media",
    ),
    # vid-upscale, vid-rmbg: the hosted OpenAPI's "MP4, MPEG, QuickTime, AVI, WMV, OGG. Maximum file size: 10 MB."
    "short_video": FileRule(frozenset({"mp4", "mpeg", "mpg", "mov", "qt", "avi", "wmv", "ogg", "ogv"}), 10 * _MB, "video"),
}

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


class CoercionError(ValueError):
    pass


def coerce(field: Field, value: Any) -> Any:
    """The value in the field's type, or CoercionError with the Laravel-style message."""
    name = field.name.replace("_", " ")
    kind = field.kind
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CoercionError(f"The {name} field must be a string.")
        value = str(value)
        if field.max_length and len(value) > field.max_length:
            raise CoercionError(f"The {name} field must not be greater than {field.max_length} characters.")
        if field.choices and value not in field.choices:
            raise CoercionError(f"The selected {name} is invalid.")
        return value
    if kind == "integer":
        if isinstance(value, bool):
            raise CoercionError(f"The {name} field must be an integer.")
        if isinstance(value, int):
            result = value
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str) and _is_int(value.strip()):
            result = int(float(value.strip()))
        else:
            raise CoercionError(f"The {name} field must be an integer.")
        if abs(result) >= 2**63:
            raise CoercionError(f"The {name} field must be an integer.")
        if field.choices and result not in field.choices:
            raise CoercionError(f"The selected {name} is invalid.")
        return result
    if kind == "number":
        if isinstance(value, bool):
            raise CoercionError(f"The {name} field must be a number.")
        try:
            result = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, TypeError, OverflowError):
            raise CoercionError(f"The {name} field must be a number.") from None
        # NaN and infinities (JSON's NaN, 1e400) are not numbers a price or a pipeline can use.
        if not math.isfinite(result):
            raise CoercionError(f"The {name} field must be a number.")
        return result
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise CoercionError(f"The {name} field must be true or false.")
    if kind == "text_or_list":
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            value = [value[k] for k in sorted(value, key=_index_key)]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise CoercionError(f"The {name} field must be a string or an array of strings.")
    if kind == "url":
        if not isinstance(value, str):
            raise CoercionError(f"The {name} field must be a valid URL.")
        if len(value) > (field.max_length or 2048):
            raise CoercionError(f"The {name} field must not be greater than {field.max_length or 2048} characters.")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CoercionError(f"The {name} field must be a valid URL.")
        return value
    if kind == "loras":
        return _loras(value, name)
    raise AssertionError(f"unknown field kind {kind}")


def _is_int(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    return number.is_integer() and abs(number) < 2**63


def _index_key(key: str) -> tuple[int, str]:
    return (int(key), "") if str(key).isdigit() else (1 << 30, str(key))


def _loras(value: Any, name: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise CoercionError(f"The {name} field must be an array.") from None
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value, key=_index_key)]
    if not isinstance(value, list):
        raise CoercionError(f"The {name} field must be an array.")
    loras = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise CoercionError(f"Each entry of {name} must have a name.")
        weight = item.get("weight", 1.0)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise CoercionError(f"The weight of lora {item['name']} must be a number.") from None
        loras.append({"name": item["name"], "weight": weight})
    return loras
