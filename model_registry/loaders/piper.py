"""Piper voices (VITS exported to ONNX), the embedded text-to-speech default."""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from model_registry.networks.piper import load_piper_voice

    voice = load_piper_voice(path, device)
    # onnxruntime's arena holds about the weights again while running: count them twice.
    memory = 2 * voice.path.stat().st_size
    return LoadedModel(
        spec=spec,
        handle=voice,
        device=device,
        memory_bytes=memory,
        precision="fp32",
        extras={"sample_rate": voice.sample_rate, "weights_path": str(voice.path)},
    )
