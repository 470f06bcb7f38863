"""img2txt (OCR): the text of an image, as plain text or as JSON blocks with confidences and boxes.

Every OCR backend's handle offers ``read(image, language=) -> [{"text", "confidence"?, "box"?}]`` in
reading order; a vision-language model answers with one block of text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.tasks import Progress, TaskResult
from engine.tasks._transform import eight_bit, uploaded_image
from model_registry import LoadedModel

__all__ = ("PIPELINE", "lines_of")


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

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        image = eight_bit(uploaded_image(inputs))
        progress(10.0)
        blocks = model.handle.read(image, language=params.get("language"))
        text = "\n".join(lines_of(blocks))
        meta = {"characters": len(text), "blocks": len(blocks)}
        if params.get("format") == "json":
            body = json.dumps({"text": text, "blocks": blocks}, ensure_ascii=False)
            return TaskResult(data=body.encode(), filename="result.json", content_type="application/json", text=body, meta=meta)
        return TaskResult(data=text.encode(), filename="result.txt", content_type="text/plain; charset=utf-8", text=text, meta=meta)


PIPELINE = ImageToText()
