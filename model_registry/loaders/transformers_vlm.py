"""Vision-language OCR models of the Qwen2.5-VL family (Nanonets-OCR-s) through transformers.

transformers' Qwen2-VL *processor* needs torchvision for its video half, and no torchvision matches
every torch drylocal runs on; OCR needs only images, so this loader pairs the model with the
PIL-based image processor and the tokenizer, and expands the image placeholder itself.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders.sentence_transformers import _model_kwargs
from model_registry.spec import ModelSpec

__all__ = ("VlmReader", "load")

INSTRUCTION = (
    "Extract the text from the above document as if you were reading it naturally. Keep the reading "
    "order and line breaks. Return tables as HTML and equations as LaTeX."
)
MAX_NEW_TOKENS = 4096


class VlmReader:
    """``read(image)`` -> one block: the model's transcription of the page."""

    def __init__(self, model, tokenizer, image_processor, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.max_new_tokens = max_new_tokens

    def prompt_inputs(self, image, language: str | None):
        import torch

        pixels = self.image_processor(images=[image.convert("RGB")], return_tensors="pt")
        grid = pixels["image_grid_thw"]
        merge = int(getattr(self.image_processor, "merge_size", 2))
        placeholders = int(grid[0].prod()) // (merge * merge)
        instruction = INSTRUCTION + (f" The document is in {language}." if language else "")
        text = (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|>{'<|image_pad|>' * placeholders}<|vision_end|>{instruction}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        ids = self.tokenizer(text, return_tensors="pt")
        device = self.model.device
        return {
            "input_ids": ids["input_ids"].to(device),
            "attention_mask": ids["attention_mask"].to(device),
            "pixel_values": pixels["pixel_values"].to(device, dtype=self.model.dtype),
            "image_grid_thw": grid.to(device),
        }, torch

    def read(self, image, language: str | None = None) -> list[dict]:
        inputs, torch = self.prompt_inputs(image, language)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [{"text": line} for line in text.strip().splitlines()]


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs, precision = _model_kwargs(spec, device)
    with measured_load(device) as measured:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        image_processor = Qwen2VLImageProcessor.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True, **kwargs)
        if "quantization_config" not in kwargs:
            model.to(device)
        model.eval()
    memory = measured["cuda_bytes"] or module_bytes(model)
    limit = int(spec.info.defaults.get("max_new_tokens", MAX_NEW_TOKENS))
    return LoadedModel(
        spec=spec,
        handle=VlmReader(model, tokenizer, image_processor, limit),
        device=device,
        memory_bytes=memory,
        precision=precision,
        extras={"weights_path": str(path)},
    )
