"""A tiny random-weight Qwen2.5-VL (the Nanonets-OCR-s architecture) with an in-memory tokenizer that
knows Qwen's chat and vision tokens, and the PIL image processor, saved in the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

from tests.qwen_tokenizer import VISION_SPECIALS, qwen_tokenizer, special_ids


def tiny_qwen25_vl(tokenizer, hidden: int, mrope_section: list[int], **vision):
    """A random Qwen2.5-VL whose special-token ids are the tokenizer's own."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = special_ids(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                     "rope_scaling": {"mrope_section": mrope_section, "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_heads": 2,
                       "out_hidden_size": hidden, **vision},
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_qwen25_vl(target: Path, seed: int = 0) -> Path:
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import Qwen2VLImageProcessor

    tokenizer = qwen_tokenizer(["Extract the text from the above document. Invoice total 318.50 USD"], VISION_SPECIALS, 4096)
    ids = special_ids(tokenizer)
    torch.manual_seed(seed)
    model = tiny_qwen25_vl(tokenizer, 32, [2, 2, 4], fullatt_block_indexes=[1], window_size=56).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    # Small pages: at most 64 patches of 28 px, so a random model's forward pass stays quick.
    Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64).save_pretrained(target)
    return target
