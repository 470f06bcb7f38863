"""Vision-language OCR models of the Qwen2.5-VL family (Nanonets-OCR-s) through transformers.

transformers' Qwen2-VL processor needs torchvision; the image-only one in _qwen_vl serves instead.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._park import ModuleParker
from model_registry.loaders.sentence_transformers import _model_kwargs
from model_registry.spec import ModelSpec

__all__ = ("VlmReader", "load")

INSTRUCTION = (
    "Extract the text from the above document as if you were reading it naturally. Keep the reading "
    "order and line breaks. Return tables as HTML and equations as LaTeX."
)
MAX_NEW_TOKENS = 4096
MAX_IMAGE_PIXELS = 2_508_800
"""Pixels the vision tower sees at most (3,200 visual tokens of 28 x 28): Qwen2.5-VL's own ceiling of
12.8 M pixels turns an A4 scan into 16,000 tokens and tens of GB of attention; a page stays readable
at this size. A catalog row's ``max_image_pixels`` limit overrides it."""


class VlmReader:
    """``read(image)`` -> the model's transcription of the page, one block a line."""

    def __init__(self, model, processor, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        self.model, self.processor = model, processor
        self.max_new_tokens = max_new_tokens

    def read(self, image, language: str | None = None) -> list[dict]:
        import torch

        instruction = INSTRUCTION + (f" The document is in {language}." if language else "")
        text = (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|image_pad|><|vision_end|>{instruction}<|im_end|>\n<|im_start|>assistant\n"
        )
        inputs = self.processor(text=[text], images=[image]).to(self.model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        answer = self.processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [{"text": line} for line in answer.strip().splitlines()]


def _cap_image_pixels(image_processor, cap: int) -> None:
    """Lower (never raise) the processor's largest image: the resize keeps the aspect ratio."""
    size = dict(image_processor.size)
    size["longest_edge"] = min(int(size.get("longest_edge") or cap), cap)
    image_processor.size = size
    if getattr(image_processor, "max_pixels", None):
        image_processor.max_pixels = min(image_processor.max_pixels, cap)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from model_registry.loaders._qwen_vl import ImageTextProcessor

    hf_logging.disable_progress_bar()
    kwargs, precision = _model_kwargs(spec, device)
    with measured_load(device) as measured:
        processor = ImageTextProcessor.from_pretrained(path)
        _cap_image_pixels(processor.image_processor, int(spec.limit("max_image_pixels", MAX_IMAGE_PIXELS)))
        model = AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True, **kwargs)
        if "quantization_config" not in kwargs:
            model.to(device)
        model.eval()
    memory = measured["cuda_bytes"] or module_bytes(model)
    limit = int(spec.info.defaults.get("max_new_tokens", MAX_NEW_TOKENS))
    return LoadedModel(
        spec=spec,
        handle=VlmReader(model, processor, limit),
        device=device,
        memory_bytes=memory,
        precision=precision,
        # bitsandbytes-quantized weights cannot move with .to(): such a model is dropped when evicted.
        parker=None if "quantization_config" in kwargs else ModuleParker(model),
        extras={"weights_path": str(path)},
    )
