"""An in-memory byte-level BPE tokenizer with Qwen's special tokens and ChatML template: what the tiny
Qwen-family checkpoints (chat LLM, FLUX.2 and Z-Image encoders, Qwen2.5-VL) use instead of the real,
hub-hosted tokenizers."""

from __future__ import annotations

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VISION_SPECIALS = [*CHAT_SPECIALS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def qwen_tokenizer(corpus: list[str], specials: list[str] = CHAT_SPECIALS, model_max_length: int = 2048):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus * 20, vocab_size=400, min_frequency=1, special_tokens=specials)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, model_max_length=model_max_length)
    tokenizer.chat_template = CHATML
    return tokenizer


def special_ids(tokenizer, specials: list[str] = VISION_SPECIALS) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
