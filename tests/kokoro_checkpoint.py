"""A random-weight Kokoro checkpoint in hexgrad/Kokoro-82M's layout: config.json, kokoro-v1_0.pth, voices/.

The decoder's widths are fixed in kokoro's code, so the smallest working model is still ~58M parameters
(~234 MB); what can shrink (PL-BERT, one layer, one resblock) is shrunk. ``max_dur`` is 4 (the real
model: 50) so random duration predictions stay short and synthesis takes about a second per sentence.
The vocabulary is the real one, so espeak-ng's phonemes map to the ids the real model uses.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

__all__ = ("KOKORO_VOICES", "KOKORO_VOCAB", "build_tiny_kokoro")

# Kokoro-82M's config.json "vocab": 114 phoneme symbols (misaki's) and their token ids.
_SYMBOLS = (
    ';:,.!?—…"()“” \u0303ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ'
)
_IDS = (
    1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 31, 33, 35, 36, 39, 41, 42,
    43, 44, 45, 46, 47, 48, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
    72, 75, 76, 77, 78, 80, 81, 82, 83, 85, 86, 87, 90, 92, 99, 101, 102, 103, 110, 111, 112, 113, 114, 115, 116,
    118, 119, 120, 123, 125, 126, 128, 129, 130, 131, 132, 133, 135, 136, 138, 139, 140, 142, 143, 147, 148, 156,
    157, 158, 162, 164, 169, 171, 172, 173, 177,
)
assert len(_SYMBOLS) == len(_IDS) == 114
KOKORO_VOCAB: dict[str, int] = dict(zip(_SYMBOLS, _IDS))

# Voices from the catalog's Kokoro entry: US English, British English, Spanish.
KOKORO_VOICES = ("af_heart", "bf_emma", "ef_dora")


def tiny_kokoro_config() -> dict:
    return {
        "istftnet": {
            "upsample_kernel_sizes": [20, 12],
            "upsample_rates": [10, 6],
            "gen_istft_hop_size": 5,
            "gen_istft_n_fft": 20,
            "resblock_dilation_sizes": [[1, 3, 5]],
            "resblock_kernel_sizes": [3],
            "upsample_initial_channel": 512,
        },
        "dim_in": 64,
        "dropout": 0.2,
        "hidden_dim": 512,
        "max_conv_dim": 512,
        "max_dur": 4,
        "multispeaker": True,
        "n_layer": 1,
        "n_mels": 80,
        "n_token": 178,
        "style_dim": 128,
        "text_encoder_kernel_size": 5,
        "plbert": {
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 512,
            "num_hidden_layers": 1,
            "dropout": 0.1,
            "embedding_size": 16,
        },
        "vocab": KOKORO_VOCAB,
    }


def build_tiny_kokoro(target: Path, seed: int = 0) -> Path:
    """Write the checkpoint into ``target`` (once: an existing one is reused) and return ``target``."""
    if (target / "kokoro-v1_0.pth").is_file() and all((target / "voices" / f"{v}.pt").is_file() for v in KOKORO_VOICES):
        return target
    import torch
    from kokoro.model import KModel

    target.mkdir(parents=True, exist_ok=True)
    config = target / "config.json"
    config.write_text(json.dumps(tiny_kokoro_config(), ensure_ascii=False, indent=1), encoding="utf-8")
    torch.manual_seed(seed)
    # KModel always loads a state file; an empty one leaves every module at its random init.
    empty = target / "_empty.pth"
    torch.save({}, empty)
    try:
        with warnings.catch_warnings():  # kokoro's one-layer LSTM with dropout, and its old weight_norm
            warnings.simplefilter("ignore", (UserWarning, FutureWarning))
            model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(config), model=str(empty))
    finally:
        empty.unlink()
    parts = {name: getattr(model, name).state_dict() for name in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")}
    partial = target / "kokoro-v1_0.pth.partial"
    torch.save(parts, partial)
    (target / "voices").mkdir(exist_ok=True)
    for voice in KOKORO_VOICES:
        # A voice pack: one 256-wide style (128 decoder + 128 prosody) per phoneme-string length.
        torch.save(torch.randn(510, 1, 256) * 0.1, target / "voices" / f"{voice}.pt")
    partial.rename(target / "kokoro-v1_0.pth")
    return target
