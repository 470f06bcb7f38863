"""A tiny random-weight Qwen2.5-VL (the Nanonets-OCR-s architecture) with an in-memory tokenizer that
knows Qwen's chat and vision tokens, and the PIL image processor, saved in the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build_tiny_qwen25_vl(target: Path, seed: int = 0) -> Path:
    if (target / "config.json").is_file():
        return target
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2TokenizerFast, Qwen2VLImageProcessor

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["Extract the text from the above document. Invoice total 318.50 USD"] * 20,
                            vocab_size=400, min_frequency=1, special_tokens=SPECIALS)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, model_max_length=4096)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                     "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "fullatt_block_indexes": [1], "window_size": 56},
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    # Small pages: at most 64 patches of 28 px, so a random model's forward pass stays quick.
    Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64).save_pretrained(target)
    return target
