"""Chatterbox Multilingual (ResembleAI/chatterbox) on drylocal's own networks (model_registry.networks.chatterbox).

The folder is the hub repository's layout: ``ve.safetensors`` (or ``ve.pt``), ``t3_mtl23ls_v2.safetensors``,
``s3gen.safetensors`` (or ``s3gen.pt``), ``grapheme_mtl_merged_expanded_v1.json``, optionally ``conds.pt``
(the built-in "default" voice: upstream's saved T3Cond and S3Gen reference dict) and ``Cangjie5_TC.json``
(needed for Chinese). A job runs upstream's ``generate``: T3 draws speech tokens for the text in the voice,
S3Gen turns them into 24 kHz audio. Upstream's defaults throughout (exaggeration 0.5, cfg 0.5,
temperature 0.8); the model has no speed control, so txt2audio changes the tempo afterwards.

The networks are built at the released geometry. A folder holding other sizes (tiny test checkpoints,
say) carries ``drylocal_geometry.json``: ``{"t3": {T3Config fields}, "voice_encoder": {...},
"s3tokenizer": {...}, "campplus": {...}, "flow": {..., "encoder": {...}, "decoder": {...}},
"hift": {...}}``, each the constructor's keyword arguments; the weights are then checked against it as
strictly as against the release. Upstream watermarks its output with Resemble's ``perth``; that package
is not installed here, so drylocal's audio carries no watermark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import threading
from pathlib import Path
from typing import Any, Callable

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.spec import ModelSpec

__all__ = ("ChatterboxVoice", "load")

SAMPLE_RATE = 24000
TOKENIZER_RATE = 16000
GEOMETRY_FILE = "drylocal_geometry.json"
# prepare_conditionals: T3 hears the first 6 s of the reference, S3Gen the first 10 s.
T3_REFERENCE_SECONDS = 6
S3GEN_REFERENCE_SECONDS = 10
# Upstream's generate() defaults.
EXAGGERATION, CFG_WEIGHT, TEMPERATURE = 0.5, 0.5, 0.8
REPETITION_PENALTY, MIN_P, TOP_P = 2.0, 0.05, 1.0
MAX_NEW_TOKENS = 1000


def token_budget(text_ids: int) -> int:
    """Most speech tokens a text may take: upstream's 1000, but no more than 40 + 5 per text token.

    Speech runs at 25 tokens a second and graphemes at about 1.5 tokens each, so the bound is never
    reached by a model that says stop; it ends a model that does not (random test weights) quickly."""
    return min(MAX_NEW_TOKENS, 40 + 5 * text_ids)


def _read(folder: Path, stem: str) -> dict[str, Any]:
    import torch

    safetensors, pickled = folder / f"{stem}.safetensors", folder / f"{stem}.pt"
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    if pickled.is_file():
        return torch.load(pickled, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no Chatterbox {stem}.safetensors or {stem}.pt in {folder}")


def _t3_config(fields: dict[str, Any]):
    from model_registry.networks.chatterbox.t3 import T3Config

    if "alignment_heads" in fields:
        fields = {**fields, "alignment_heads": tuple(tuple(pair) for pair in fields["alignment_heads"])}
    return T3Config(**fields)


class ChatterboxVoice:
    """What txt2audio calls: ``synthesize`` with the built-in voice or one cloned from ``ref_audio``."""

    native_speed = False  # no speed control in the model: txt2audio changes the tempo afterwards
    sample_rate = SAMPLE_RATE

    def __init__(self, t3, s3gen, voice_encoder, tokenizer, default_voice: tuple | None, device: str) -> None:
        self.t3 = t3
        self.s3gen = s3gen
        self.voice_encoder = voice_encoder
        self.tokenizer = tokenizer
        self.default_voice = default_voice  # (T3Cond, S3Gen reference dict) from conds.pt, or None
        self.device = device
        self._lock = threading.Lock()

    def modules(self) -> list:
        return [m for m in (self.t3, self.s3gen, self.voice_encoder) if m is not None]

    def close(self) -> None:
        self.t3 = self.s3gen = self.voice_encoder = self.default_voice = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def clone(self, samples, rate: int) -> tuple:
        """(T3Cond, S3Gen reference dict) from a mono reference clip, as ``prepare_conditionals``."""
        import numpy as np
        import torch
        from scipy.signal import resample_poly

        from model_registry.networks.chatterbox.t3_conditioning import T3Cond

        if rate != SAMPLE_RATE:
            raise ValueError(f"ref_audio must be given at {SAMPLE_RATE} Hz, not {rate}.")
        wave_24k = np.asarray(samples, dtype=np.float32).reshape(-1)
        if wave_24k.size == 0:
            raise ValueError("ref_audio holds no samples.")
        wave_16k = resample_poly(wave_24k, 2, 3).astype(np.float32)
        head_24k = wave_24k[: S3GEN_REFERENCE_SECONDS * SAMPLE_RATE]
        gen = self.s3gen.embed_ref(head_24k, resample_poly(head_24k, 2, 3).astype(np.float32))
        prompt_length = self.t3.config.speech_cond_prompt_len
        prompt = None
        if prompt_length:
            tokens, _ = self.s3gen.tokenizer.tokenize([wave_16k[: T3_REFERENCE_SECONDS * TOKENIZER_RATE]],
                                                      max_len=prompt_length)
            prompt = torch.atleast_2d(tokens).to(self.device)
        speaker = self.voice_encoder.embed(wave_16k).reshape(1, -1).to(self.device)
        return T3Cond(speaker_emb=speaker, cond_prompt_speech_tokens=prompt, emotion_adv=EXAGGERATION), gen

    def _language(self, lang: str | None) -> str:
        from model_registry.networks.chatterbox.text import SUPPORTED_LANGUAGES

        key = (lang or "en").strip().lower()
        if key not in SUPPORTED_LANGUAGES:
            raise ValueError(f"Chatterbox does not speak {lang!r}; it speaks: {', '.join(sorted(SUPPORTED_LANGUAGES))}.")
        return key

    def synthesize(
        self,
        text: str,
        *,
        mode: str | None = "custom_voice",
        voice: str | None = None,
        lang: str | None = None,
        speed: float = 1.0,
        ref_audio: tuple | None = None,
        ref_text: str | None = None,
        instruct: str | None = None,
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        import numpy as np
        import torch

        from model_registry.networks.chatterbox.text import punc_norm

        mode = mode or "custom_voice"
        if mode not in ("custom_voice", "voice_clone"):
            raise ValueError(f"Chatterbox has no {mode} mode (custom_voice, voice_clone).")
        if not text or not text.strip():
            raise ValueError("The text has nothing to speak.")
        language = self._language(lang)
        if mode == "custom_voice" and (voice or "default").strip().lower() != "default":
            raise ValueError(f"Chatterbox has no preset voice {voice!r}; it has: default.")
        with self._lock:
            ids = torch.tensor(self.tokenizer.t3_text_ids(punc_norm(text), language), device=self.device)
            devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
            forked = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
            with forked, torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(int(seed))
                if mode == "voice_clone":
                    if ref_audio is None:
                        raise ValueError("voice_clone needs ref_audio.")
                    cond, gen = self.clone(*ref_audio)
                else:
                    if self.default_voice is None:
                        raise ValueError("Chatterbox's default voice needs conds.pt, which this installation lacks; "
                                         "use voice_clone with ref_audio, or `drylocal pull Chatterbox`.")
                    cond, gen = self.default_voice
                    # Upstream's generate() sets the exaggeration on the saved voice to the requested one.
                    cond = dataclasses.replace(cond, emotion_adv=EXAGGERATION)
                if progress is not None:
                    progress(5.0)
                tokens = self.t3.generate(
                    ids, cond, max_new_tokens=token_budget(len(ids)), temperature=TEMPERATURE, cfg_weight=CFG_WEIGHT,
                    min_p=MIN_P, top_p=TOP_P, repetition_penalty=REPETITION_PENALTY,
                )
                tokens = tokens[tokens < self.s3gen.vocab_size]  # upstream's drop_invalid_tokens
                if tokens.numel() == 0:
                    raise ValueError("Chatterbox ended the speech before saying anything.")
                if progress is not None:
                    progress(70.0)
                wave = self.s3gen.inference(tokens, gen).cpu().numpy()
        if progress is not None:
            progress(100.0)
        return np.clip(wave, -1.0, 1.0).astype(np.float32), SAMPLE_RATE


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.chatterbox.s3gen import S3Gen
    from model_registry.networks.chatterbox.t3 import load_t3
    from model_registry.networks.chatterbox.t3_conditioning import T3Cond
    from model_registry.networks.chatterbox.text import MultilingualTokenizer
    from model_registry.networks.chatterbox.voice_encoder import load_voice_encoder

    folder = path if path.is_dir() else path.parent
    geometry_file = folder / GEOMETRY_FILE
    geometry: dict[str, Any] = json.loads(geometry_file.read_text()) if geometry_file.is_file() else {}
    vocabulary = folder / "grapheme_mtl_merged_expanded_v1.json"
    if not vocabulary.is_file():
        raise FileNotFoundError(f"no Chatterbox grapheme_mtl_merged_expanded_v1.json in {folder}")
    cangjie = folder / "Cangjie5_TC.json"
    # The weights are fp32 in the release; bf16 only where the catalog entry asks for it on a GPU.
    dtype = torch.bfloat16 if device.startswith("cuda") and spec.quantization == "bf16" else torch.float32
    with measured_load(device) as measured:
        t3_state = _read(folder, "t3_mtl23ls_v2")
        if "model" in t3_state:  # some upstream saves nest the state dict, as from_local allows
            t3_state = t3_state["model"][0]
        t3 = load_t3(t3_state, "", dtype, _t3_config(dict(geometry.get("t3") or {}))).to(device)
        del t3_state
        s3gen = S3Gen.from_state_dict(_read(folder, "s3gen"), dtype, geometry).to(device)
        voice_encoder = load_voice_encoder(_read(folder, "ve"), "", torch.float32,
                                           **(geometry.get("voice_encoder") or {})).to(device)
    tokenizer = MultilingualTokenizer.from_file(vocabulary, cangjie if cangjie.is_file() else None)
    default_voice = None
    if (folder / "conds.pt").is_file():
        saved = torch.load(folder / "conds.pt", map_location="cpu", weights_only=True)
        cond = T3Cond.from_upstream(saved["t3"])
        cond = dataclasses.replace(
            cond,
            speaker_emb=cond.speaker_emb.to(device),
            cond_prompt_speech_tokens=None if cond.cond_prompt_speech_tokens is None
            else cond.cond_prompt_speech_tokens.to(device),
        )
        default_voice = (cond, dict(saved["gen"]))
    handle = ChatterboxVoice(t3, s3gen, voice_encoder, tokenizer, default_voice, device)
    memory = measured["cuda_bytes"] or sum(module_bytes(m) for m in handle.modules())
    return LoadedModel(
        spec=spec,
        handle=handle,
        device=device,
        memory_bytes=max(memory, spec.vram_bytes),
        precision="bf16" if dtype == torch.bfloat16 else "fp32",
        extras={"sample_rate": SAMPLE_RATE, "default_voice": default_voice is not None,
                "geometry": "custom" if geometry else "released"},
        close=handle.close,
    )
