"""txt2embedding: vectors for one text or a list, micro-batched across concurrent jobs."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Iterator

import msgspec

from engine.rate_limits import Limit
from engine.tasks._checks import Checking, fmt, num
from engine.tasks._definition import AUDIO_POLLING, Form, McpTool, Progress, Task, TaskResult
from model_registry import LoadedModel
from model_registry.kinds import Embedder

__all__ = ("PIPELINE", "TASK", "EmbeddingParams")


class EmbeddingParams(msgspec.Struct, kw_only=True):
    input: Annotated[str | list[str], Form(required=True, price="required", kind="text_or_list")]
    tokens: int = 0
    """Counted by the checks with the model's own tokenizer: the price and the usage block."""


def check(ctx: Checking) -> None:
    value = ctx.values.get("input")
    if value is None:
        return
    texts = [value] if isinstance(value, str) else value
    max_inputs = int(num(ctx.spec.limit("max_inputs")) or 2048)
    if len(texts) > max_inputs:
        ctx.error("input", f"The input may hold at most {max_inputs} texts.")
        return
    if any(not text.strip() for text in texts):
        ctx.error("input", "The input must not contain empty texts.")
        return
    counts = ctx.engine.count_tokens(ctx.spec, texts)
    per_input = num(ctx.spec.limit("max_input_tokens"))
    total = num(ctx.spec.limit("max_total_tokens"))
    for index, count in enumerate(counts):
        if per_input and count > per_input:
            where = "input" if isinstance(value, str) else f"input.{index}"
            ctx.error(where, f"The {where} has {count} tokens; model {ctx.spec.slug} accepts at most {fmt(per_input)}.")
    if total and sum(counts) > total:
        ctx.error("input", f"The input has {sum(counts)} tokens in all; the limit is {fmt(total)}.")
    ctx.values["tokens"] = sum(counts)

_ENCODE_BATCH = 32


class Txt2Embedding:
    batchable = True
    slice_inputs = _ENCODE_BATCH
    """A longer list runs this many texts a pass, so other jobs join its passes (engine/batching.py)."""

    def run(self, model: LoadedModel[Embedder], params: EmbeddingParams, progress: Progress) -> TaskResult:
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

    def batch_size(self, params: EmbeddingParams) -> int:
        return len(_texts(params))

    def run_batch(self, model: LoadedModel[Embedder], items: list[EmbeddingParams]) -> list[TaskResult]:
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

    def part(self, params: EmbeddingParams, start: int, stop: int) -> EmbeddingParams:
        """The job's texts ``start:stop`` as a job of their own (engine/batching.py runs them as a pass)."""
        return EmbeddingParams(input=_texts(params)[start:stop])

    def join(self, params: EmbeddingParams, parts: list[TaskResult]) -> TaskResult:
        """The job's one result from its slices' results, in order: indices renumbered, its own token count."""
        bodies = [json.loads(part.text) for part in parts]
        data = [{**item, "index": i} for i, item in enumerate(item for body in bodies for item in body["data"])]
        tokens = int(params.tokens)
        body = {"object": "list", "model": bodies[0]["model"], "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        text = json.dumps(body, separators=(",", ":"))
        meta = {**parts[0].meta, "tokens": tokens, "batch_jobs": max(part.meta.get("batch_jobs", 1) for part in parts),
                "passes": len(parts)}
        return TaskResult(data=text.encode(), filename="embeddings.json", content_type="application/json", text=text,
                          meta=meta)


_ONE_THREAD_TEXTS = 3
"""Passes this small run on one CPU thread: a one-text MiniLM pass took 14 ms on one thread against 18 ms on
two (2 cores, OpenMP threads sleeping when idle), four texts the same on both, 32 texts 388 ms against 236."""


def _encode(model: LoadedModel[Embedder], texts: list[str]):
    with _cpu_threads(model.device, 1 if len(texts) <= _ONE_THREAD_TEXTS else None):
        if texts and _plain(model.handle):
            return _forward(model.handle, texts)
        return model.handle.encode(texts, batch_size=_ENCODE_BATCH, convert_to_numpy=True, show_progress_bar=False)


def _plain(handle) -> bool:
    """A sentence-transformers model whose ``encode`` adds nothing to its modules' forward: no default prompt,
    no truncated dimension (a model folder may configure either; those go through ``encode``)."""
    return (
        hasattr(handle, "preprocess")
        and getattr(handle, "default_prompt_name", None) is None
        and getattr(handle, "truncate_dim", None) is None
    )


def _forward(handle, texts: list[str]):
    """What ``SentenceTransformer.encode`` computes, without its per-call overhead.

    ``encode`` walks the whole module tree on every call (``eval()``, keyword checks, device resolution): on 2
    CPU cores a one-text MiniLM call took 22 ms through it and 18.5 ms as its forward alone, the same vectors.
    The model is put in eval mode once, by its loader. Texts are sorted by length into passes of
    ``_ENCODE_BATCH``, as ``encode`` does, so a pass pads to similar lengths.
    """
    import numpy as np
    import torch
    from sentence_transformers.util import batch_to_device

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    rows: list = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(order), _ENCODE_BATCH):
            chosen = order[start : start + _ENCODE_BATCH]
            features = batch_to_device(handle.preprocess([texts[i] for i in chosen]), handle.device)
            vectors = handle(features)["sentence_embedding"].float().cpu().numpy()
            for row, index in zip(vectors, chosen):
                rows[index] = row
    return np.stack(rows)


@contextlib.contextmanager
def _cpu_threads(device: str, threads: int | None) -> Iterator[None]:
    """torch's intra-op threads for one pass on the CPU (passes run one at a time, so nothing else sees it)."""
    if threads is None or not device.startswith("cpu"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _texts(params: EmbeddingParams) -> list[str]:
    value = params.input
    return [value] if isinstance(value, str) else list(value)


def _result(model: LoadedModel[Embedder], params: EmbeddingParams, rows) -> TaskResult:
    tokens = int(params.tokens)
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

TASK = Task(
    name="txt2embedding",
    label="Text To Embedding",
    group="generation",
    inference_type="txt2embedding",
    params=EmbeddingParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=Limit(10, 500),
    mcp=McpTool("text_to_embedding", AUDIO_POLLING),
    inline_result=True,
)
