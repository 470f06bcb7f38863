"""txt2embedding: vectors for one text or a list, micro-batched across concurrent jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.tasks import Progress, TaskResult
from model_registry import LoadedModel

__all__ = ("PIPELINE",)

_ENCODE_BATCH = 32


class Txt2Embedding:
    batchable = True

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        texts = _texts(params)
        if len(texts) <= _ENCODE_BATCH:
            return self.run_batch(model, [params])[0]
        # A long list is encoded chunk by chunk so the job can report progress between chunks.
        chunks = []
        for start in range(0, len(texts), _ENCODE_BATCH):
            chunks.append(_encode(model, texts[start : start + _ENCODE_BATCH]))
            progress(100.0 * min(len(texts), start + _ENCODE_BATCH) / len(texts))
        import numpy as np

        return _result(model, params, np.concatenate(chunks))

    def run_batch(self, model: LoadedModel, items: list[dict[str, Any]]) -> list[TaskResult]:
        texts = [text for params in items for text in _texts(params)]
        # One encode call for every job of the batch: this is where concurrent requests share the GPU.
        vectors = _encode(model, texts)
        results, offset = [], 0
        for params in items:
            count = len(_texts(params))
            rows = vectors[offset : offset + count]
            offset += count
            results.append(_result(model, params, rows))
        for result in results:
            result.meta["batch_jobs"] = len(items)
        return results


def _encode(model: LoadedModel, texts: list[str]):
    return model.handle.encode(texts, batch_size=_ENCODE_BATCH, convert_to_numpy=True, show_progress_bar=False)


def _texts(params: dict[str, Any]) -> list[str]:
    value = params["input"]
    return [value] if isinstance(value, str) else list(value)


def _result(model: LoadedModel, params: dict[str, Any], rows) -> TaskResult:
    tokens = int(params.get("tokens") or 0)
    body = {
        "object": "list",
        "model": model.spec.slug,
        "data": [{"object": "embedding", "index": i, "embedding": row.tolist()} for i, row in enumerate(rows)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    text = json.dumps(body, separators=(",", ":"))
    return TaskResult(
        data=text.encode(),
        filename="embeddings.json",
        content_type="application/json",
        text=text,
        meta={"dimensions": int(rows.shape[1]) if rows.ndim == 2 else 0, "tokens": tokens},
    )


PIPELINE = Txt2Embedding()
