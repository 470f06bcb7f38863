"""Small instruct LLMs (the prompt boosters) through transformers' causal-LM classes."""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._park import ModuleParker
from model_registry.loaders.sentence_transformers import _model_kwargs
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs, precision = _model_kwargs(spec, device)
    with measured_load(device) as measured:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, **kwargs)
        if "quantization_config" not in kwargs:  # bitsandbytes places quantized weights itself
            model.to(device)
        model.eval()
    memory = measured["cuda_bytes"] or module_bytes(model)

    return LoadedModel(
        spec=spec,
        handle=(model, tokenizer),
        device=device,
        memory_bytes=memory,
        precision=precision,
        # bitsandbytes-quantized weights cannot move with .to(): such a model is dropped when evicted.
        parker=None if "quantization_config" in kwargs else ModuleParker(model),
        extras={"weights_path": str(path)},
    )
