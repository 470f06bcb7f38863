"""A tiny random-weight chat LLM (Qwen2 architecture) with an in-memory byte-level BPE tokenizer and
the ChatML template the Qwen instruct models use, saved in the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

from tests.qwen_tokenizer import qwen_tokenizer


def build_tiny_chat_llm(target: Path, seed: int = 0) -> Path:
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen_tokenizer(["a red cat on a blue sky", "cinematic light, sharp focus", '{"prompt": "x", "negative_prompt": "y"}'])
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
