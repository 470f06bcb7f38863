"""Whisper on CTranslate2 through faster-whisper: float16 on a GPU, int8 on the CPU.

A folder in CTranslate2's layout (model.bin, config.json, tokenizer.json, vocabulary.*) is what
faster-whisper loads; ``convert_to_ctranslate2`` makes one from a transformers Whisper checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.spec import ModelSpec

__all__ = ("compute_type", "convert_to_ctranslate2", "ctranslate2_folder", "is_ctranslate2_folder", "load")


def is_ctranslate2_folder(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def compute_type(spec: ModelSpec, device: str) -> str:
    if not device.startswith("cuda"):
        return "int8"  # CTranslate2's int8 GEMMs are what make Whisper usable on a CPU
    return {"int8": "int8_float16", "bf16": "bfloat16", "fp32": "float32"}.get(spec.quantization, "float16")


def convert_to_ctranslate2(source: Path, target: Path, quantization: str | None = None) -> Path:
    """A transformers Whisper checkpoint (config.json + safetensors + tokenizer) to a CTranslate2 folder."""
    import shutil
    import tempfile

    from ctranslate2.converters import TransformersConverter

    copy = [name for name in ("tokenizer.json", "preprocessor_config.json") if (source / name).is_file()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        # faster-whisper looks for tokenizer.json beside model.bin and falls back to the hub without it.
        TransformersConverter(str(source), copy_files=copy, low_cpu_mem_usage=True).convert(
            str(staging / "model"), quantization=quantization, force=True
        )
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def ctranslate2_folder(path: Path, cache_dir: Path | None) -> Path:
    """``path`` itself when it is in CTranslate2's layout, else its conversion (made once, then reused)."""
    if is_ctranslate2_folder(path):
        return path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds neither a CTranslate2 model.bin nor a transformers Whisper checkpoint")
    target = (cache_dir or path.parent / f"{path.name}.ct2") / "ct2-float16"
    if not is_ctranslate2_folder(target):
        # float16 storage serves both devices: CTranslate2 re-quantizes to int8 on the CPU at load.
        convert_to_ctranslate2(path, target, quantization="float16")
    return target


def load(spec: ModelSpec, path: Path, device: str, cache_dir: Path | None = None) -> LoadedModel:
    from faster_whisper import WhisperModel

    path = ctranslate2_folder(path, cache_dir)
    kind = compute_type(spec, device)
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    free_before = _cuda_free(index) if device.startswith("cuda") else None
    model = WhisperModel(
        str(path),
        device="cuda" if device.startswith("cuda") else "cpu",
        device_index=index,
        compute_type=kind,
        cpu_threads=os.cpu_count() or 0,
        local_files_only=True,
    )
    if free_before is not None:
        memory = max(0, free_before - _cuda_free(index))  # CTranslate2 allocates outside torch's view
    else:
        memory = _folder_bytes(path)  # an upper bound: int8 takes at most what the stored weights do

    return LoadedModel(
        spec=spec,
        handle=model,
        device=device,
        memory_bytes=max(memory, 1),
        precision=kind,
        extras={"multilingual": bool(model.model.is_multilingual), "weights_path": str(path)},
    )


def _cuda_free(index: int) -> int:
    import torch

    torch.cuda.synchronize(index)
    return torch.cuda.mem_get_info(index)[0]
