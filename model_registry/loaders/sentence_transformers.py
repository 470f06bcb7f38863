"""Embedding models in the sentence-transformers layout (modules.json, pooling, normalize)."""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._park import ModuleParker
from model_registry.spec import ModelSpec

__all__ = ("load",)


def _model_kwargs(spec: ModelSpec, device: str) -> tuple[dict, str]:
    """Quantize only where a GPU is present: bitsandbytes kernels are what make int8 pay off there."""
    import torch

    if not device.startswith("cuda"):
        return {"dtype": torch.float32}, "fp32"
    if spec.quantization in ("int8", "nf4"):
        from transformers import BitsAndBytesConfig

        config = (
            BitsAndBytesConfig(load_in_8bit=True)
            if spec.quantization == "int8"
            else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16)
        )
        return {"quantization_config": config, "dtype": torch.float16}, spec.quantization
    if spec.quantization == "bf16":
        return {"dtype": torch.bfloat16}, "bf16"
    if spec.quantization == "fp32":
        return {"dtype": torch.float32}, "fp32"
    return {"dtype": torch.float16}, "fp16"


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a server log is no place for per-load progress bars
    model_kwargs, precision = _model_kwargs(spec, device)
    with measured_load(device) as measured:
        model = SentenceTransformer(
            str(path), device=device, local_files_only=True, model_kwargs=model_kwargs, trust_remote_code=False
        )
        model.eval()
    memory = measured["cuda_bytes"] or module_bytes(model)

    return LoadedModel(
        spec=spec,
        handle=model,
        device=device,
        memory_bytes=memory,
        precision=precision,
        # bitsandbytes-quantized weights cannot move with .to(): such a model is dropped when evicted.
        parker=None if "quantization_config" in model_kwargs else ModuleParker(model),
        extras={"dimensions": _dimensions(model), "max_seq_length": model.max_seq_length},
    )


def _dimensions(model) -> int:
    # sentence-transformers 6 renamed the accessor; older releases only have the long name.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())
