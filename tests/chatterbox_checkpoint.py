"""A tiny random-weight Chatterbox Multilingual checkpoint in the release's layout.

Every network is the project's own class at a few-thousand-parameter geometry, saved under the release's
file and key names, with ``drylocal_geometry.json`` telling the loader those sizes; token ids (text,
speech, start and stop) keep the release's values so the same loading and synthesis code runs. The mel
stays 80 bins and the vocoder keeps its 480-sample hop, so audio lengths are the release's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models

from model_registry.networks.chatterbox.campplus import CAMPPlus
from model_registry.networks.chatterbox.conformer import UpsampleConformerEncoder
from model_registry.networks.chatterbox.flow import CausalConditionalCFM, CausalMaskedDiffWithXvec
from model_registry.networks.chatterbox.flow_estimator import ConditionalDecoder
from model_registry.networks.chatterbox.hift import HiFTGenerator
from model_registry.networks.chatterbox.s3tokenizer import S3Tokenizer
from model_registry.networks.chatterbox.t3 import T3, T3Config
from model_registry.networks.chatterbox.text import SUPPORTED_LANGUAGES
from model_registry.networks.chatterbox.voice_encoder import VoiceEncoder

__all__ = ("GEOMETRY", "write_tiny_chatterbox")

GEOMETRY = {
    "t3": {
        "speech_cond_prompt_len": 12, "speaker_embed_size": 12, "perceiver_queries": 4, "perceiver_heads": 2,
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "head_dim": 8, "alignment_heads": [[1, 0], [0, 3]],
    },
    "voice_encoder": {"num_mels": 8, "hidden_size": 16, "embed_size": 12, "num_layers": 2, "partial_frames": 80},
    "s3tokenizer": {"n_mels": 16, "width": 32, "heads": 2, "layers": 2},
    "campplus": {"embedding_size": 24, "growth_rate": 8, "bn_size": 2, "init_channels": 16, "m_channels": 4,
                 "block_layers": [2, 3, 2]},
    "flow": {
        "input_size": 16, "spk_embed_dim": 24,
        "encoder": {"input_size": 16, "output_size": 16, "attention_heads": 2, "linear_units": 32,
                    "num_blocks": 1, "num_up_blocks": 1},
        "decoder": {"in_channels": 320, "out_channels": 80, "channels": 16, "attention_head_dim": 8,
                    "num_heads": 2, "n_blocks": 1, "num_mid_blocks": 1},
    },
    "hift": {
        "base_channels": 16, "nb_harmonics": 2, "resblock_kernel_sizes": [3, 5],
        "resblock_dilation_sizes": [[1, 3], [1, 3]], "source_resblock_dilation_sizes": [[1, 3], [1, 3], [1, 3]],
        "f0_channels": 8,
    },
}
SPECIAL = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
LETTERS = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-") | {chr(c) for c in range(0x0300, 0x0370)})


def _vocabulary(path: Path) -> None:
    vocab: dict[str, int] = {}
    for token in [*SPECIAL, *LETTERS]:
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab, [], unk_token="[UNK]"))
    tokenizer.add_special_tokens([*SPECIAL, *(f"[{tag}]" for tag in SUPPORTED_LANGUAGES)])
    tokenizer.save(str(path))


def _state(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def write_tiny_chatterbox(folder: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    geometry = GEOMETRY
    t3_fields = {**geometry["t3"], "alignment_heads": tuple(map(tuple, geometry["t3"]["alignment_heads"]))}
    t3 = T3(T3Config(**t3_fields))
    save_file(_state(t3), str(folder / "t3_mtl23ls_v2.safetensors"))
    torch.save(_state(VoiceEncoder(**geometry["voice_encoder"])), folder / "ve.pt")

    flow_args = dict(geometry["flow"])
    flow = CausalMaskedDiffWithXvec(
        input_size=flow_args["input_size"], spk_embed_dim=flow_args["spk_embed_dim"],
        encoder=UpsampleConformerEncoder(**flow_args["encoder"]),
        decoder=CausalConditionalCFM(ConditionalDecoder(**flow_args["decoder"])),
    )
    hift_args = geometry["hift"]
    hift = HiFTGenerator(**{k: tuple(map(tuple, v)) if k.endswith("dilation_sizes") else
                            (tuple(v) if isinstance(v, list) else v) for k, v in hift_args.items()})
    campplus_args = {k: tuple(v) if isinstance(v, list) else v for k, v in geometry["campplus"].items()}
    s3gen = {
        **_state(S3Tokenizer(**geometry["s3tokenizer"]), "tokenizer."),
        **_state(CAMPPlus(**campplus_args), "speaker_encoder."),
        **_state(flow, "flow."),
        **_state(hift, "mel2wav."),
    }
    save_file(s3gen, str(folder / "s3gen.safetensors"))

    _vocabulary(folder / "grapheme_mtl_merged_expanded_v1.json")
    (folder / "drylocal_geometry.json").write_text(json.dumps(geometry, indent=1))

    # The built-in voice as upstream's Conditionals.save writes it: T3Cond's fields and S3Gen's ref dict.
    prompt_tokens = 10
    conds = {
        "t3": {
            "speaker_emb": torch.nn.functional.normalize(torch.randn(1, geometry["t3"]["speaker_embed_size"]), dim=1),
            "clap_emb": None,
            "cond_prompt_speech_tokens": torch.randint(0, 6561, (1, geometry["t3"]["speech_cond_prompt_len"])),
            "cond_prompt_speech_emb": None,
            "emotion_adv": 0.5 * torch.ones(1, 1, 1),
        },
        "gen": {
            "prompt_token": torch.randint(0, 6561, (1, prompt_tokens)),
            "prompt_token_len": torch.tensor([prompt_tokens]),
            "prompt_feat": torch.randn(1, 2 * prompt_tokens, 80) - 5.0,
            "prompt_feat_len": None,
            "embedding": torch.randn(1, geometry["campplus"]["embedding_size"]),
        },
    }
    torch.save(conds, folder / "conds.pt")
    return folder
