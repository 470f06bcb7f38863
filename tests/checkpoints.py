"""Tiny random-weight checkpoints built from configs with the real library classes, saved to disk.

They load back through the same loaders that load real weights; only their size differs.
"""

from __future__ import annotations

import string
from pathlib import Path

__all__ = ("build_tiny_xlmr_sentence_transformer", "place_in_hf_cache")


def _unigram_tokenizer():
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [f"\u2581{c}" for c in string.ascii_lowercase] + list(string.ascii_lowercase + string.digits)
    pieces += [f"\u2581{w}" for w in ("the", "cat", "dog", "sat", "on", "mat", "a", "is", "kitten", "stock")]
    vocab = [(t, 0.0) for t in specials] + [(p, -float(i % 7) - 1.0) for i, p in enumerate(pieces)] + [("<mask>", 0.0)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=3))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    return tokenizer


def build_tiny_xlmr_sentence_transformer(target: Path, seed: int = 0) -> Path:
    """An XLM-RoBERTa encoder with CLS pooling and normalization: BGE-M3's architecture, tiny."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    torch.manual_seed(seed)
    raw = target.parent / (target.name + "-hf")
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=_unigram_tokenizer(), bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                        mask_token="<mask>")
    from tokenizers.processors import TemplateProcessing

    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    XLMRobertaModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    transformer = models.Transformer(str(raw), max_seq_length=128)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(target))
    return target


def place_in_hf_cache(folder: Path, hub_cache: Path, repo_id: str, revision: str = "0" * 40) -> Path:
    """Lay ``folder`` out as the Hugging Face hub cache does: blobs, snapshots/<rev>, refs/main."""
    import shutil

    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for file in folder.rglob("*"):
        if file.is_file():
            relative = file.relative_to(folder)
            blob = blobs / f"{abs(hash(str(relative))):x}"
            shutil.copyfile(file, blob)
            link = snapshot / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("../" * (len(relative.parts) + 1)) / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
