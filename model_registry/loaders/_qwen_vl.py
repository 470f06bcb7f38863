"""Qwen2-VL's processor (text plus images) without torchvision.

transformers builds Qwen2VLProcessor with a video half that needs torchvision, and no torchvision
matches every torch drylocal runs on. Images are all drylocal sends, so this pairs the PIL image
processor with the tokenizer and expands each ``<|image_pad|>`` to the image's token count, as the
real processor does.
"""

from __future__ import annotations

from pathlib import Path

from transformers.processing_utils import ProcessorMixin

__all__ = ("IMAGE_PAD", "ImageTextProcessor", "needs_torchvision_free_processor")

IMAGE_PAD = "<|image_pad|>"


def needs_torchvision_free_processor() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is None


class ImageTextProcessor(ProcessorMixin):
    """A ProcessorMixin only so diffusers accepts it as the pipeline's processor: its own __init__
    skips the base class's, whose sub-processor checks are what need torchvision."""

    def __init__(self, tokenizer, image_processor) -> None:  # noqa: D107 - no super().__init__ on purpose
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(cls, folder: Path) -> "ImageTextProcessor":
        from transformers import AutoTokenizer, Qwen2VLImageProcessor

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return cls(tokenizer, Qwen2VLImageProcessor.from_pretrained(str(folder), local_files_only=True))

    def save_pretrained(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))

    def __repr__(self) -> str:
        return f"ImageTextProcessor({type(self.tokenizer).__name__}, {type(self.image_processor).__name__})"

    def __call__(self, text, images=None, padding=True, return_tensors="pt", **_):
        from transformers import BatchFeature

        texts = [text] if isinstance(text, str) else list(text)
        extra = {}
        if images is not None:
            pictures = [image.convert("RGB") for image in (images if isinstance(images, list) else [images])]
            encoded = self.image_processor(images=pictures, return_tensors=return_tensors)
            merge = int(getattr(self.image_processor, "merge_size", 2))
            counts = iter(int(grid.prod()) // (merge * merge) for grid in encoded["image_grid_thw"])
            marker = "\0image\0"
            expanded = []
            for piece in texts:
                while IMAGE_PAD in piece:
                    piece = piece.replace(IMAGE_PAD, marker * next(counts), 1)
                expanded.append(piece.replace(marker, IMAGE_PAD))
            texts = expanded
            extra = dict(encoded)
        tokens = self.tokenizer(texts, padding=padding, return_tensors=return_tensors)
        return BatchFeature({**tokens, **extra})
