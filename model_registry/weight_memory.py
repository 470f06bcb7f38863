"""Weight memory of catalog models, computed: each component built on the meta device from its
full-size config (model_registry/configs/) with the real diffusers, transformers or project class, its
parameters and buffers counted at the precision its loader gives it on a GPU. No weight is allocated.

The byte rules, per tensor (parameters and buffers, tied tensors once):

- bf16 / fp16: 2 bytes a floating-point element; fp32: 4; integer buffers keep their own size.
- NF4 (bitsandbytes ``Linear4bit``, on the Linear layers the library's own quantizer replaces):
  4 bits a weight plus one fp32 absmax per block of 64 weights (0.5625 byte a weight) and the 16-entry
  fp32 code of each layer; with double quantization the absmax is one byte a block plus one fp32 absmax
  per 256 blocks. The loaders leave double quantization off.
- INT8 (bitsandbytes ``Linear8bitLt``, LLM.int8, same replaced layers): 1 byte a weight plus one fp32
  scale per output row.
- In both, biases and every module the quantizer leaves alone (norms, embeddings, convolutions, the
  layers it skips) stay in the compute dtype, or fp32 where the class keeps a module in fp32.
- FP8 storage (diffusers' layerwise casting): 1 byte a weight in the layers diffusers casts; the ones
  its skip patterns name (norms, position embeddings) stay bf16.
- CTranslate2 float16 (Whisper through faster-whisper): 2 bytes a weight.

The precision comes from the loaders themselves (the diffusers loader's ``_options``, the transformers
loaders' ``_model_kwargs``, faster-whisper's ``compute_type``), so a change there moves these figures.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from model_registry.spec import ModelSpec

__all__ = (
    "COMPONENTS", "CONFIGS", "RESERVING_BACKENDS", "ComponentMemory", "Part", "as_loaded", "build_on_meta",
    "component_bytes", "component_memory", "computed_slugs", "read_config", "sized_tensors",
)

CONFIGS = Path(__file__).parent / "configs"

# Loaders that reserve max(measured weights, vram_bytes): their row's vram_bytes is the weights plus the
# working memory they run in (RRDBNet even sizes its tiles to the difference), so it stays above the sum
# of ``memory`` instead of equal to it.
RESERVING_BACKENDS = frozenset({"ben2", "briarmbg", "chatterbox", "kokoro", "qwen3-tts", "rrdbnet"})


class Part(NamedTuple):
    """One network of a component: its config file under CONFIGS, and where the loader decides so, the
    class it is loaded as (instead of the config's own) and a dtype it is pinned to."""

    config: str
    cls: str | None = None
    dtype: str | None = None


# slug -> component (the diffusers pipeline's name where there is one) -> the networks it is made of.
COMPONENTS: dict[str, dict[str, tuple[Part, ...]]] = {
    "Flux1schnell": {
        "transformer": (Part("flux1_schnell/transformer.json"),),
        "text_encoder": (Part("clip_vit_large_patch14/text_model.json"),),
        "text_encoder_2": (Part("t5_v1_1_xxl/encoder.json"),),
        "vae": (Part("flux1_schnell/vae.json"),),
    },
    "Ltx2_19B_Dist_FP8": {
        "transformer": (Part("ltx2/transformer.json"),),
        "connectors": (Part("ltx2/connectors.json"),),
        "text_encoder": (Part("gemma_3_12b_it/model.json"),),
        "vae": (Part("ltx2/vae.json"),),
        "audio_vae": (Part("ltx2/audio_vae.json"),),
        "vocoder": (Part("ltx2/vocoder.json"),),
    },
    "Ltx2_3_19B_Dist_INT8": {
        "transformer": (Part("ltx2_3/transformer.json"),),
        "connectors": (Part("ltx2_3/connectors.json"),),
        "text_encoder": (Part("gemma_3_12b_it/model.json"),),
        "vae": (Part("ltx2_3/vae.json"),),
        "audio_vae": (Part("ltx2_3/audio_vae.json"),),
        "vocoder": (Part("ltx2_3/vocoder.json"),),
    },
    "QwenImageEdit_Plus_NF4": {
        "transformer": (Part("qwen_image_edit_2509/transformer.json"),),
        "text_encoder": (Part("qwen2_5_vl_7b_instruct/model.json"),),
        "vae": (Part("qwen_image_edit_2509/vae.json"),),
    },
    "Ltxv_13B_0_9_8_Distilled_FP8": {
        "transformer": (Part("ltx_video_0_9_8_13b/transformer.json"),),
        "text_encoder": (Part("t5_v1_1_xxl/encoder.json"),),
        "vae": (Part("ltx_video_0_9_8_13b/vae.json"),),
    },
    "ZImageTurbo_INT8": {
        "transformer": (Part("z_image_turbo/transformer.json"),),
        "text_encoder": (Part("qwen3_4b/model.json", cls="Qwen3Model"),),
        "vae": (Part("flux1_schnell/vae.json"),),
    },
    "Flux_2_Klein_4B_BF16": {
        "transformer": (Part("flux2_klein_4b/transformer.json"),),
        "text_encoder": (Part("qwen3_4b/model.json"),),
        "vae": (Part("flux2_klein_4b/vae.json"),),
    },
    "Nanonets_Ocr_S_F16": {"model": (Part("qwen2_5_vl_3b_instruct/model.json"),)},
    "Bge_M3_INT8": {"model": (Part("bge_m3/model.json"),)},
    "WhisperLargeV3": {"model": (Part("whisper_large_v3/model.json"),)},
    # One checkpoint is resident at a time; the voice_clone one adds the speaker encoder, so it is the largest.
    "Qwen3_TTS": {
        "talker": (Part("qwen3_tts_12hz_1_7b/talker.json"),),
        "speech_tokenizer": (Part("qwen3_tts_12hz_1_7b/speech_tokenizer.json", dtype="fp32"),),
        "speaker_encoder": (Part("qwen3_tts_12hz_1_7b/speaker_encoder.json"),),
    },
    "Chatterbox": {
        "t3": (Part("chatterbox_multilingual/t3.json"),),
        "s3gen": (
            Part("chatterbox_multilingual/s3tokenizer.json"),
            Part("chatterbox_multilingual/campplus.json", dtype="fp32"),
            Part("chatterbox_multilingual/flow.json"),
            Part("chatterbox_multilingual/hift.json"),
        ),
        "voice_encoder": (Part("chatterbox_multilingual/voice_encoder.json", dtype="fp32"),),
    },
    "ACE-Step-v1.5-turbo": {
        "transformer": (Part("ace_step_v1_5_turbo/transformer.json"),),
        "condition_encoder": (Part("ace_step_v1_5_turbo/condition_encoder.json"),),
        "text_encoder": (Part("qwen3_embedding_0_6b/model.json"),),
        "vae": (Part("ace_step_v1_5_turbo/vae.json"),),
        "audio_tokenizer": (Part("ace_step_v1_5_turbo/audio_tokenizer.json"),),
        "audio_token_detokenizer": (Part("ace_step_v1_5_turbo/audio_token_detokenizer.json"),),
    },
    "Kokoro": {"model": (Part("kokoro_82m/model.json"),)},
    "MiniLM_L6_v2": {"model": (Part("all_minilm_l6_v2/model.json"),)},
    "WhisperBase": {"model": (Part("whisper_base/model.json"),)},
    "Qwen2_5_0_5B_Instruct": {"model": (Part("qwen2_5_0_5b_instruct/model.json"),)},
    "SmolLM2_135M_Instruct": {"model": (Part("smollm2_135m_instruct/model.json"),)},
    "Ben2": {"model": (Part("small_networks/ben2.json"),)},
    "RMBG-1.4": {"model": (Part("small_networks/rmbg_1_4.json"),)},
    "RealESRGAN_x4plus": {"model": (Part("small_networks/realesrgan_x4plus.json"),)},
    "Wan2_2_Animate_14B_INT8": {
        "transformer": (Part("wan2_2_animate_14b/transformer.json"),),
        "text_encoder": (Part("umt5_xxl/encoder.json"),),
        "image_encoder": (Part("clip_vit_h_14_laion2b/vision_model.json"),),
        "vae": (Part("wan2_2_animate_14b/vae.json"),),
    },
}


@dataclass(frozen=True)
class ComponentMemory:
    """One component's weights as loaded: element counts and bytes."""

    component: str
    params: int
    buffers: int
    precision: str
    bytes: int


class _Precision(NamedTuple):
    dtype: Any  # torch.dtype the loader asks for
    quantization: Any = None  # a bitsandbytes config (diffusers' or transformers') or None
    fp8: bool = False  # diffusers' layerwise casting to float8 storage
    label: str = ""


_DIFFUSERS_BACKENDS = frozenset({"diffusers", "diffusers-ltx", "diffusers-ltx2", "ace-step"})
_TRANSFORMERS_BACKENDS = frozenset({"sentence-transformers", "transformers-vlm", "transformers-llm"})

# The project's own loaders pick one dtype for all their networks, as their load() does (the parts a
# loader pins to fp32 whatever the row says carry ``dtype`` in COMPONENTS).
_NETWORK_DTYPES = {
    "qwen3-tts": lambda spec: "bf16" if spec.quantization == "bf16" else "fp32",
    "chatterbox": lambda spec: "bf16" if spec.quantization == "bf16" else "fp32",
    "kokoro": lambda spec: "fp32",
    "ben2": lambda spec: "bf16" if spec.quantization in ("bf16", "fp16") else "fp32",
    "briarmbg": lambda spec: spec.quantization if spec.quantization in ("bf16", "fp16") else "fp32",
    "rrdbnet": lambda spec: spec.quantization if spec.quantization in ("bf16", "fp16") else "fp32",
}


def computed_slugs() -> tuple[str, ...]:
    return tuple(COMPONENTS)


def read_config(name: str) -> dict[str, Any]:
    """A config file under CONFIGS, by its relative path."""
    return json.loads((CONFIGS / name).read_text())


def _library(config: dict[str, Any]) -> str:
    if ":" in config.get("_class_name", ""):
        return "project"  # "module:callable" of this project (or a builder for a package's class)
    return "transformers" if "architectures" in config else "diffusers"


def _precision(
    spec: ModelSpec, component: str, library: str, pinned: str | None, encoders: tuple[str, ...] = ()
) -> _Precision:
    """What the slug's loader does to this component on a CUDA device; ``encoders``: the text encoders a
    placement has it quantize like the transformer."""
    import torch

    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if pinned is not None:
        return _Precision(names[pinned], label=pinned)
    if spec.backend in _DIFFUSERS_BACKENDS:
        from model_registry.loaders.diffusers import _options

        options, _ = _options(spec, "cuda", encoders)
        dtype = options["dtype"]
        label = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        pipeline_quantization = options.get("quantization_config")
        quantization = None
        if pipeline_quantization is not None:
            quantization = pipeline_quantization._resolve_quant_config(
                is_diffusers=library == "diffusers", module_name=component
            )
        if quantization is not None:
            label = f"{spec.quantization} + {label}"
        fp8 = spec.quantization == "fp8" and component in ("transformer", *encoders)
        return _Precision(dtype, quantization, fp8, f"fp8 + {label}" if fp8 else label)
    if spec.backend in _TRANSFORMERS_BACKENDS:
        from model_registry.loaders.sentence_transformers import _model_kwargs

        kwargs, _ = _model_kwargs(spec, "cuda")
        dtype = kwargs["dtype"]
        label = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]
        quantization = kwargs.get("quantization_config")
        return _Precision(dtype, quantization, label=f"{spec.quantization} + {label}" if quantization else label)
    if spec.backend == "faster-whisper":
        from model_registry.loaders.faster_whisper import compute_type

        kind = compute_type(spec, "cuda")
        if kind != "float16":
            raise NotImplementedError(f"{spec.slug}: CTranslate2 {kind} is not modelled")
        return _Precision(torch.float16, label="ct2 float16")
    label = _NETWORK_DTYPES[spec.backend](spec)
    return _Precision(names[label], label=label)


def _own_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The config without this folder's bookkeeping (``_source``, ``_published_params``, ...)."""
    return {k: v for k, v in config.items() if k not in ("_source", "_published_params", "_module", "_init")}


def build_on_meta(part: Part):
    """The network of ``part`` on the meta device (float32, as the classes create it)."""
    import importlib

    import torch

    config = read_config(part.config)
    library = _library(config)
    with torch.device("meta"):
        if library == "diffusers":
            module = importlib.import_module(config.get("_module", "diffusers"))
            cls = getattr(module, part.cls or config["_class_name"])
            return cls.from_config({k: v for k, v in _own_keys(config).items() if not k.startswith("_")})
        if library == "transformers":
            import transformers

            fields = {k: v for k, v in _own_keys(config).items() if k != "architectures"}
            hf_config = transformers.AutoConfig.for_model(**fields)
            cls = getattr(transformers, part.cls or config["architectures"][0])
            return cls(hf_config)
        module_name, _, name = config["_class_name"].partition(":")
        cls = getattr(importlib.import_module(module_name), name)
        fields = {k: v for k, v in _own_keys(config).items() if k != "_class_name"}
        return cls(fields) if config.get("_init") == "dict" else cls(**fields)


def _quantize_on_meta(model, library: str, quantization, dtype) -> None:
    """Replace the Linear layers the library's bitsandbytes quantizer would replace, as from_pretrained does."""
    if library == "diffusers":
        from diffusers.quantizers import DiffusersAutoQuantizer

        quantizer = DiffusersAutoQuantizer.from_config(quantization, pre_quantized=False)
        keep = list(type(model)._keep_in_fp32_modules or [])
        quantizer.preprocess_model(model=model, device_map=None, keep_in_fp32_modules=keep)
    else:
        from transformers.quantizers import AutoHfQuantizer

        quantizer = AutoHfQuantizer.from_config(quantization, pre_quantized=False)
        quantizer.preprocess_model(model=model, dtype=dtype, device_map=None)


def _fp32_patterns(model, library: str, dtype) -> list[re.Pattern]:
    """Modules the class keeps in fp32 whatever dtype the load asks for."""
    if library == "transformers":
        names = list(model._get_dtype_plan(dtype))
        return [re.compile(rf"(^|\.){re.escape(n)}(\.|$)") for n in names]
    if library == "diffusers":
        return [re.compile(re.escape(n)) for n in (type(model)._keep_in_fp32_modules or [])]
    return []


def _nf4_bytes(numel: int, blocksize: int, double_quant: bool) -> int:
    blocks = -(-numel // blocksize)
    absmax = blocks + 4 * -(-blocks // 256) + 4 if double_quant else 4 * blocks
    return -(-numel // 2) + absmax + 16 * 4


def as_loaded(model, precision: _Precision, library: str):
    """``model`` (on meta) converted as its loader converts it: quantized layers, float8 storage."""
    import torch

    if precision.quantization is not None:
        _quantize_on_meta(model, library, precision.quantization, precision.dtype)
    if precision.fp8:
        from diffusers import hooks

        # As the loader's _cast_to_fp8: a transformers text encoder takes the hook without the method.
        cast = getattr(model, "enable_layerwise_casting", None) or partial(hooks.apply_layerwise_casting, model)
        cast(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return model


def sized_tensors(model, precision: _Precision, library: str) -> Iterator[tuple[str, bool, int, int]]:
    """(owning module's name, is a parameter, elements, bytes) of every tensor of ``model`` (already
    ``as_loaded``), tied tensors once, each at the bytes the rules above give it."""
    import torch

    fp32 = _fp32_patterns(model, library, precision.dtype)
    size = torch.tensor([], dtype=precision.dtype).element_size()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        kind = type(module).__name__ if type(module).__module__.startswith("bitsandbytes") else ""
        tensors = [(n, t, True) for n, t in module.named_parameters(recurse=False)]
        tensors += [(n, t, False) for n, t in module.named_buffers(recurse=False)]
        for name, tensor, is_param in tensors:
            if tensor is None or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            numel = tensor.numel()
            full_name = f"{module_name}.{name}" if module_name else name
            if kind == "Linear4bit" and name == "weight":
                nbytes = _nf4_bytes(numel, tensor.blocksize, bool(tensor.compress_statistics))
            elif kind == "Linear8bitLt" and name == "weight":
                nbytes = numel + 4 * tensor.shape[0]
            elif not tensor.is_floating_point():
                nbytes = numel * tensor.element_size()
            elif tensor.dtype == torch.float8_e4m3fn:
                nbytes = numel
            elif any(p.search(full_name) for p in fp32):
                nbytes = numel * 4
            else:
                nbytes = numel * size
            yield module_name, is_param, numel, nbytes


def _count(model, precision: _Precision, library: str) -> tuple[int, int, int]:
    """(parameters, buffer elements, bytes) of ``model`` loaded at ``precision``."""
    params = buffers = total = 0
    for _, is_param, numel, nbytes in sized_tensors(as_loaded(model, precision, library), precision, library):
        params, buffers = (params + numel, buffers) if is_param else (params, buffers + numel)
        total += nbytes
    return params, buffers, total


def component_memory(spec: ModelSpec, quantized_encoders: bool = False) -> list[ComponentMemory]:
    """Every component of ``spec`` (a slug in COMPONENTS) with its weight elements and bytes; with
    ``quantized_encoders``, only the text encoders, quantized as the slug's quantization implies
    (footprint.encoders_to_quantize: what a placement's ``quantized_encoders`` loads)."""
    from model_registry.footprint import encoders_to_quantize

    encoders = encoders_to_quantize(spec) if quantized_encoders else ()
    rows = []
    for component, parts in COMPONENTS[spec.slug].items():
        if quantized_encoders and component not in encoders:
            continue
        params = buffers = total = 0
        labels = []
        for part in parts:
            library = _library(read_config(part.config))
            precision = _precision(spec, component, library, part.dtype, encoders)
            p, b, t = _count(build_on_meta(part), precision, library)
            params, buffers, total = params + p, buffers + b, total + t
            labels.append(precision.label)
        rows.append(ComponentMemory(component, params, buffers, " / ".join(dict.fromkeys(labels)), total))
    return rows


def component_bytes(slug: str) -> dict[str, int]:
    """Weight bytes per component of the built-in catalog's ``slug`` at its loaded precision."""
    from model_registry.catalog import builtin_specs

    spec = next((s for s in builtin_specs() if s.slug == slug or slug in s.aliases), None)
    if spec is None or spec.slug not in COMPONENTS:
        raise KeyError(f"no configs for {slug!r}; computed: {', '.join(COMPONENTS)}")
    return {row.component: row.bytes for row in component_memory(spec)}


def kokoro_on_meta(config: dict[str, Any]):
    """Kokoro's KModel from its config.json alone: KModel always reads a weights file, so it is given an
    empty one (the weights would be loaded into the meta tensors anyway)."""
    import tempfile

    import torch
    from kokoro.model import KModel

    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.pth"
        with torch.device("cpu"):
            torch.save({}, empty)
        return KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty))
