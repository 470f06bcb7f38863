"""img2txt (OCR): the text of an image, as plain text or as JSON blocks with confidences and boxes.

Every OCR backend's handle offers ``read(image, language=) -> [{"text", "confidence"?, "box"?}]`` in
reading order; a vision-language model answers with one block of text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import msgspec

from engine.rate_limits import Limit
from engine.tasks._checks import Checking, image_limits, size_from_image
from engine.tasks._definition import IMAGE_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._transform import eight_bit, uploaded_image
from model_registry import LoadedModel
from model_registry.kinds import OcrReader

__all__ = ("TASK", "ImageToTextParams", "lines_of")


class ImageToTextParams(msgspec.Struct, kw_only=True):
    image: Annotated[Path | None, Form(required=True, kind="file", file_rule="image")] = None
    language: Annotated[str | None, SENT] = None
    format: Annotated[str | None, Form(choices=("text", "json"))] = None
    width: Annotated[int | None, SENT] = None
    height: Annotated[int | None, SENT] = None


def check(ctx: Checking) -> None:
    image_limits(ctx, "image")
    size_from_image(ctx, "image")
    ctx.default("format")


def lines_of(blocks: list[dict]) -> list[str]:
    """Blocks that share a line (their vertical spans overlap by half) joined left to right."""
    boxed = [b for b in blocks if b.get("box")]
    if len(boxed) != len(blocks):
        return [b["text"] for b in blocks]
    lines: list[list[dict]] = []
    for block in sorted(boxed, key=lambda b: (b["box"][1] + b["box"][3]) / 2):
        top, bottom = block["box"][1], block["box"][3]
        if lines:
            line_top = min(b["box"][1] for b in lines[-1])
            line_bottom = max(b["box"][3] for b in lines[-1])
            overlap = min(bottom, line_bottom) - max(top, line_top)
            if overlap > 0.5 * min(bottom - top, line_bottom - line_top):
                lines[-1].append(block)
                continue
        lines.append([block])
    return [" ".join(b["text"] for b in sorted(line, key=lambda b: b["box"][0])) for line in lines]


class ImageToText:
    batchable = False

    def run(self, model: LoadedModel[OcrReader], params: ImageToTextParams, progress: Progress) -> TaskResult:
        image = eight_bit(uploaded_image(params.image))
        progress(10.0)
        blocks = model.handle.read(image, language=params.language)
        text = "\n".join(lines_of(blocks))
        meta = {"characters": len(text), "blocks": len(blocks)}
        if params.format == "json":
            body = json.dumps({"text": text, "blocks": blocks}, ensure_ascii=False)
            return TaskResult(data=body.encode(), filename="result.json", content_type="application/json", text=body, meta=meta)
        return TaskResult(data=text.encode(), filename="result.txt", content_type="text/plain; charset=utf-8", text=text, meta=meta)


TASK = Task(
    name="img2txt",
    label="Image To Text",
    group="analysis",
    inference_type="img2txt",
    params=ImageToTextParams,
    check=check,
    pipeline=ImageToText(),
    rate_limit=Limit(5, 50),
    mcp=McpTool("image_to_text", IMAGE_POLLING),
    inline_result=True,
)
