"""U²-Net exported to ONNX (rembg's ``u2netp.onnx``, the embedded img-rmbg default) on onnxruntime.

Pre- and post-processing are rembg's (danielgatis/rembg, ``sessions/base.py`` and ``sessions/u2netp.py``),
so a mask here is the one rembg gives for the same file. The one deviation: a flat prediction, where
rembg's min-max stretch would divide by zero, is kept as it is.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.spec import ModelSpec

__all__ = ("U2NetSession", "load")

# ImageNet's statistics, which rembg applies after scaling by the image's own maximum (not by 255).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WORKING_SIZE = 320
"""U²-Net's training size; used only where an export leaves its input size open (rembg's is fixed)."""


class U2NetSession:
    """An onnxruntime session of a U²-Net export; ``predict_mask`` gives the foreground mask."""

    def __init__(self, session, path: Path) -> None:
        self.session = session
        self.path = path
        height, width = session.get_inputs()[0].shape[2:]
        self.input_size = (width, height) if isinstance(width, int) and isinstance(height, int) else None

    def predict_mask(self, image, size: int = WORKING_SIZE):
        """The foreground mask of a PIL image as an "L" image of its size, by rembg's steps.

        Squash to the network's input size with Lanczos, divide by the largest channel value, normalize
        with ImageNet's mean and std, run; take the first output's channel 0, stretch it to 0..1 by its
        minimum and maximum, truncate to 8 bits and resize back with Lanczos. ``size`` is used only when
        the export's input size is not fixed.
        """
        import numpy as np
        from PIL import Image

        width, height = self.input_size or (size, size)
        pixels = np.array(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
        scaled = pixels / max(np.max(pixels), 1e-6)  # upstream's floor keeps a black image from dividing by 0
        x = ((scaled - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        first_output = self.session.get_outputs()[0].name
        (prediction,) = self.session.run([first_output], {self.session.get_inputs()[0].name: x})
        prediction = prediction[0, 0]
        lo, hi = np.min(prediction), np.max(prediction)
        if hi > lo:
            prediction = (prediction - lo) / (hi - lo)
        mask = Image.fromarray((prediction * 255).astype(np.uint8))
        return mask.resize(image.size, Image.Resampling.LANCZOS)


def _onnx_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("*.onnx"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one U²-Net .onnx file in {path}, found {len(found)}")
    return found[0]


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from model_registry.loaders._onnx import onnx_session

    model = _onnx_file(path)
    handle = U2NetSession(onnx_session(model, device), model)
    # The weights counted twice (the Piper loader's rule: onnxruntime holds about a copy again while
    # running); the catalog's figure, which adds the activations at the working size, where it is larger.
    memory = max(2 * model.stat().st_size, spec.vram_bytes)
    working_size = handle.input_size[0] if handle.input_size else WORKING_SIZE
    return LoadedModel(
        spec=spec,
        handle=handle,
        device=device if "CUDAExecutionProvider" in handle.session.get_providers() else "cpu",
        memory_bytes=memory,
        precision="fp32",
        extras={"weights_path": str(model), "working_size": working_size},
    )
