"""Qwen3-TTS 12 Hz on drylocal's own implementation (model_registry.networks.qwen3_tts).

Qwen ships one checkpoint per mode, each in the same layout: ``config.json`` (its ``tts_model_type``
says which mode it serves), ``model.safetensors`` (``talker.*``, and ``speaker_encoder.*`` in the Base
checkpoint), ``generation_config.json``, the Qwen2 text tokenizer files, and ``speech_tokenizer/``
(the 12 Hz codec). The catalog entry's own source and its components point at the three; whichever
are installed decide the modes a job can use. One checkpoint is resident at a time: a job in another
mode swaps it, since two 1.7B talkers would double the memory the scheduler planned for.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.spec import ModelSpec

__all__ = ("Qwen3Voices", "load", "checkpoint_modes")

SAMPLE_RATE = 24000
MODE_OF_TYPE = {"custom_voice": "custom_voice", "voice_design": "voice_design", "base": "voice_clone"}
# Upstream's defaults per mode: the preset and designed voices are read whole before speaking;
# cloning feeds the text alongside the frames.
NON_STREAMING = {"custom_voice": True, "voice_design": True, "voice_clone": False}


def checkpoint_modes(folders: list[Path]) -> dict[str, Path]:
    """Mode -> checkpoint folder, from each folder's config.json (the first folder serving a mode wins)."""
    modes: dict[str, Path] = {}
    for folder in folders:
        config = folder / "config.json"
        if not config.is_file():
            continue
        kind = json.loads(config.read_text()).get("tts_model_type")
        mode = MODE_OF_TYPE.get(str(kind))
        if mode and mode not in modes:
            modes[mode] = folder
    return modes


def _read_weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model.safetensors in {folder}")
    weights: dict[str, Any] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


@dataclass
class Bundle:
    """One checkpoint, loaded: everything a job in its mode needs."""

    mode: str
    folder: Path
    config: dict[str, Any]
    talker: Any
    codec: Any
    speaker: Any
    tokenizer: Any
    sampling: Any

    def modules(self) -> list:
        return [m for m in (self.talker, self.codec, self.speaker) if m is not None]


def load_bundle(folder: Path, mode: str, device: str, dtype) -> Bundle:
    import torch
    from transformers import AutoTokenizer

    from model_registry.networks.qwen3_tts.codec import SpeechCodec
    from model_registry.networks.qwen3_tts.speaker import SpeakerEncoder
    from model_registry.networks.qwen3_tts.synthesis import Sampling
    from model_registry.networks.qwen3_tts.talker import Talker

    config = json.loads((folder / "config.json").read_text())
    weights = _read_weights(folder)
    talker = Talker(config.get("talker_config") or {})
    own = {key[len("talker."):]: value for key, value in weights.items() if key.startswith("talker.")}
    missing, unexpected = talker.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{folder} is not a Qwen3-TTS 12 Hz checkpoint this build reads: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    talker = talker.to(device=device, dtype=dtype).eval()
    speaker = None
    if mode == "voice_clone":
        speaker = SpeakerEncoder.from_state_dict(config.get("speaker_encoder_config") or {}, weights)
        speaker = speaker.to(device=device, dtype=dtype).eval()
    del weights
    # The codec is small and its output is what the user hears: it stays in float32.
    codec = SpeechCodec.from_pretrained(folder / "speech_tokenizer", device=device, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    generation = folder / "generation_config.json"
    sampling = Sampling.from_generation_config(json.loads(generation.read_text()) if generation.is_file() else {})
    return Bundle(mode, folder, config, talker, codec, speaker, tokenizer, sampling)


class Qwen3Voices:
    """What txt2audio calls: ``synthesize`` in any mode an installed checkpoint serves."""

    native_speed = False  # no speed control in the model: txt2audio changes the tempo afterwards
    sample_rate = SAMPLE_RATE

    def __init__(self, checkpoints: dict[str, Path], device: str, dtype, first: Bundle) -> None:
        self.checkpoints = checkpoints
        self.device = device
        self.dtype = dtype
        self.bundle: Bundle | None = first
        self._lock = threading.Lock()

    def modes(self) -> list[str]:
        return sorted(self.checkpoints)

    def close(self) -> None:
        self.bundle = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _use(self, mode: str) -> Bundle:
        if self.bundle is not None and self.bundle.mode == mode:
            return self.bundle
        folder = self.checkpoints.get(mode)
        if folder is None:
            have = ", ".join(self.modes()) or "none"
            raise ModeNotInstalled(
                f"The {mode} mode needs its own Qwen3-TTS checkpoint, which is not installed (installed modes: {have}). "
                "`drylocal pull Qwen3_TTS` fetches all three."
            )
        self.close()
        self.bundle = load_bundle(folder, mode, self.device, self.dtype)
        return self.bundle

    def _ids(self, bundle: Bundle, text: str):
        import torch

        ids = bundle.tokenizer(text, return_tensors="pt")["input_ids"]
        return torch.as_tensor(ids, dtype=torch.long).view(1, -1).to(self.device)

    def _language(self, bundle: Bundle, lang: str | None, speaker: str | None) -> int | None:
        talker = bundle.config.get("talker_config") or {}
        languages: dict[str, int] = talker.get("codec_language_id") or {}
        key = (lang or "auto").strip().lower()
        if key != "auto" and key not in languages:
            names = ", ".join(sorted(k for k in languages if "dialect" not in k))
            raise ValueError(f"Qwen3-TTS does not speak {lang!r}; it speaks: auto, {names}.")
        dialects = talker.get("spk_is_dialect") or {}
        dialect = dialects.get(speaker.lower()) if speaker else None
        if dialect and key in ("auto", "chinese") and dialect in languages:
            return int(languages[dialect])  # a dialect speaker speaks its dialect where Chinese is asked for
        return None if key == "auto" else int(languages[key])

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

        from model_registry.networks.qwen3_tts.synthesis import VoicePrompt, build_prompt, frame_budget, generate_frames

        mode = mode or "custom_voice"
        if mode not in MODE_OF_TYPE.values():
            raise ValueError(f"Qwen3-TTS has no {mode} mode (custom_voice, voice_clone, voice_design).")
        if not text or not text.strip():
            raise ValueError("The text has nothing to speak.")
        with self._lock:
            bundle = self._use(mode)
            top = bundle.config
            voice_prompt = VoicePrompt()
            speaker = None
            if mode == "custom_voice":
                speakers: dict[str, int] = (top.get("talker_config") or {}).get("spk_id") or {}
                speaker = (voice or "").strip()
                if speaker.lower() not in speakers:
                    raise ValueError(f"Qwen3-TTS has no preset voice {voice!r}; it has: {', '.join(sorted(speakers))}.")
                voice_prompt.speaker_id = int(speakers[speaker.lower()])
                if instruct and top.get("tts_model_size") != "0b6":  # the 0.6B preset model takes no instruction
                    voice_prompt.instruct_ids = self._ids(bundle, f"<|im_start|>user\n{instruct}<|im_end|>\n")
            elif mode == "voice_design":
                if not instruct or not instruct.strip():
                    raise ValueError("voice_design describes the voice in `instruct`, which is empty.")
                voice_prompt.instruct_ids = self._ids(bundle, f"<|im_start|>user\n{instruct}<|im_end|>\n")
            language_id = self._language(bundle, lang, speaker)
            text_ids = self._ids(bundle, f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n")
            tokens = {"tts_bos": top.get("tts_bos_token_id", 151672), "tts_eos": top.get("tts_eos_token_id", 151673),
                      "tts_pad": top.get("tts_pad_token_id", 151671)}

            devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
            forked = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
            with forked, torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(int(seed))
                if mode == "voice_clone":
                    if ref_audio is None:
                        raise ValueError("voice_clone needs ref_audio.")
                    samples, rate = ref_audio
                    if rate != SAMPLE_RATE:
                        raise ValueError(f"ref_audio must be given at {SAMPLE_RATE} Hz, not {rate}.")
                    voice_prompt.speaker_embedding = bundle.speaker.embed(np.asarray(samples, dtype=np.float32))
                    if ref_text and ref_text.strip():
                        # With its transcript the reference is continued in context, not only its timbre copied.
                        voice_prompt.ref_frames = bundle.codec.encode(np.asarray(samples, dtype=np.float32)).to(self.device)
                        voice_prompt.ref_ids = self._ids(bundle, f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")
                prompt = build_prompt(bundle.talker, tokens, text_ids, language_id, voice_prompt, NON_STREAMING[mode])
                budget = frame_budget(text, bundle.sampling.max_new_tokens)
                report = (lambda n: progress(min(90.0, 90.0 * n / budget))) if progress else None
                frames = generate_frames(bundle.talker, prompt, bundle.sampling, budget, report)
                if len(frames) == 0:
                    raise ValueError("Qwen3-TTS ended the speech before saying anything.")
                reference = voice_prompt.ref_frames
                codes = frames if reference is None else torch.cat([reference, frames], dim=0)
                wave = bundle.codec.decode(codes.unsqueeze(0).to(torch.long))[0].float().cpu().numpy()
                if reference is not None:  # drop the reference's own audio, as upstream cuts it
                    wave = wave[int(len(reference) / len(codes) * len(wave)) :]
        if progress is not None:
            progress(100.0)
        return np.clip(wave, -1.0, 1.0).astype(np.float32), bundle.codec.output_sample_rate


class ModeNotInstalled(ValueError):
    """A job asked for a mode whose checkpoint is not installed: the caller's to fix, like bad input."""


def load(spec: ModelSpec, path: Path, device: str, components: dict[str, Path | None] | None = None) -> LoadedModel:
    import torch

    folder = path if path.is_dir() else path.parent
    folders = [folder, *(p for p in (components or {}).values() if p is not None)]
    checkpoints = checkpoint_modes([p if p.is_dir() else p.parent for p in folders])
    if not checkpoints:
        raise FileNotFoundError(f"no Qwen3-TTS checkpoint (config.json with tts_model_type) in {folder}")
    dtype = torch.bfloat16 if device.startswith("cuda") and spec.quantization == "bf16" else torch.float32
    own_mode = checkpoint_modes([folder])
    first_mode = next(iter(own_mode)) if own_mode else next(iter(checkpoints))
    with measured_load(device) as measured:
        bundle = load_bundle(checkpoints[first_mode], first_mode, device, dtype)
    memory = measured["cuda_bytes"] or sum(module_bytes(m) for m in bundle.modules())
    handle = Qwen3Voices(checkpoints, device, dtype, bundle)
    return LoadedModel(
        spec=spec,
        handle=handle,
        device=device,
        memory_bytes=max(memory, spec.vram_bytes),
        precision="bf16" if dtype == torch.bfloat16 else "fp32",
        extras={"sample_rate": SAMPLE_RATE, "modes": handle.modes(), "checkpoints": {m: str(p) for m, p in checkpoints.items()}},
        close=handle.close,
    )
