"""PP-OCRv4 (detection, angle classification, recognition) as ONNX models run by RapidOCR.

The embedded OCR default: the three models ship inside the ``rapidocr-onnxruntime`` package.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.spec import ModelSpec

__all__ = ("OcrReader", "load")


class OcrReader:
    """``read(image)`` -> text blocks in reading order, each with its confidence and box."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def read(self, image, language: str | None = None) -> list[dict]:
        import numpy as np

        found, _ = self.engine(np.array(image.convert("RGB")))
        blocks = []
        for box, text, score in found or []:
            xs, ys = [p[0] for p in box], [p[1] for p in box]
            blocks.append(
                {
                    "text": text,
                    "confidence": round(float(score), 4),
                    "box": [round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys))],
                }
            )
        return blocks


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from rapidocr_onnxruntime import RapidOCR

    folder = path if path.is_dir() else path.parent
    models = {
        "det_model_path": next(iter(sorted(folder.glob("*det*.onnx"))), None),
        "rec_model_path": next(iter(sorted(folder.glob("*rec*.onnx"))), None),
        "cls_model_path": next(iter(sorted(folder.glob("*cls*.onnx"))), None),
    }
    missing = [name for name, file in models.items() if file is None]
    if missing:
        raise FileNotFoundError(f"{folder} lacks the PP-OCR models for {', '.join(missing)}")
    engine = RapidOCR(**{name: str(file) for name, file in models.items()})
    size = sum(file.stat().st_size for file in models.values())
    return LoadedModel(
        spec=spec,
        handle=OcrReader(engine),
        device="cpu",  # onnxruntime's CPU provider: the models are small and the GPU is kept for the rest
        memory_bytes=3 * size,
        precision="fp32",
        extras={"weights_path": str(folder)},
    )
