"""An onnxruntime session on the device drylocal was given: CUDA where the installed onnxruntime has
it, else the CPU; quiet (its warnings are per-node noise in a server log)."""

from __future__ import annotations

from pathlib import Path

__all__ = ("onnx_session",)


def onnx_session(model: Path, device: str):
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=providers)
