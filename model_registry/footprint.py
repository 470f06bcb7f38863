"""What a model needs in memory, per component and per phase of a job: the facts placement decides on.

Pure (JSON and TOML reads, no torch). Where each figure comes from:

- Weights per component: the row's ``memory`` (computed on the meta device, weight_memory.py), else its
  ``vram_bytes`` as one component.
- How a component splits when offloaded (``group``, ``layer``): model_registry/offload_layout.toml, computed
  on the meta device (offload_layout.py). A model without it (a user's own) counts each component whole, so
  splitting saves nothing on paper and it is only ever resident or model-offloaded.
- Working memory: an ESTIMATE per family, at the largest request the row's limits allow (so one placement
  holds for every job the model accepts), until the worker measures ``max_memory_allocated`` per request
  shape. One denoiser step takes ``DENOISER_BYTES_PER_TOKEN_CHANNEL`` x tokens x model width, twice that where
  guidance runs both passes as one batch. A diffusers family this table does not know: a tenth of its largest
  component. Other backends: their row's ``vram_bytes`` beyond the weights (the reserves of their loaders).
- Load peak: a bitsandbytes-quantized transformer is quantized on the GPU and sits there whole until the
  placement moves it, whatever the placement.
- Quantized text encoders: where the slug's quantization is NF4, INT8 or FP8, its text encoders can be loaded
  the same way (``encoders_to_quantize``); the row's ``quantized_memory`` gives their bytes so, computed on the
  meta device. ``Footprint.encoders_quantized`` is the model so loaded, for placement to try after resident.
- VAE decode peak: an ESTIMATE per decoder class, bytes per output pixel (per pixel-frame for video), whole or
  tiled at the VAE's own default tile, plus 25 % for the tiles' overlap (InvokeAI's rule).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping, NamedTuple

from model_registry.spec import ModelSpec

__all__ = (
    "DENOISER_BYTES_PER_TOKEN_CHANNEL",
    "LAYOUT_FILE",
    "OFFLOADABLE_BACKENDS",
    "QUANTIZED_ON_GPU",
    "ComponentFootprint",
    "Footprint",
    "Request",
    "encoders_to_quantize",
    "footprint",
    "job_working_bytes",
    "largest_request",
    "read_layout",
)

LAYOUT_FILE = Path(__file__).with_name("offload_layout.toml")

OFFLOADABLE_BACKENDS = frozenset({"diffusers", "diffusers-ltx", "diffusers-ltx2", "ace-step"})
"""Backends whose loader (loaders/diffusers.py) applies a placement; every other loader is resident only."""

QUANTIZED_ON_GPU = frozenset({"nf4", "int8"})
"""Quantizations bitsandbytes applies at load, on the GPU, where each quantized component then sits until the
placement moves it. FP8 storage is a cast wherever the weights are."""

DENOISER_BYTES_PER_TOKEN_CHANNEL = 35
"""Activation bytes of one denoiser step at batch 1 (bf16, SDPA), per token per channel of the model's width.
From diffusers' own benchmarks (huggingface.co/datasets/diffusers/benchmarks; benchmarks/benchmarking_flux.py
and benchmarking_ltx.py): FLUX.1-dev at 1024² with 512 text tokens (4,608 tokens x 3,072) peaks 0.46 GiB above
its 22.17 GiB of weights, 35 B; LTX-Video 0.9.7 13B at 512x704x161 with 256 text tokens (7,648 x 4,096) 0.93 GiB
above 24.29 GiB, 32 B."""


@dataclass(frozen=True)
class _Denoiser:
    pixels_per_token: int = 16
    """VAE downscale x patch size; 0 for audio."""
    frames_per_token: int = 0
    """Video: latent frames = (frames - 1) // this + 1; 0 for images."""
    text_tokens: int = 512
    batched_guidance: bool = False
    """Guidance above 1 runs the conditional and unconditional passes as one batch of two."""
    references: bool = False
    """Input images join the token sequence (FLUX.2, Qwen-Image-Edit), each as large as the output at most."""
    tokens_per_second: int = 0
    """Audio: latent frames a second."""


# By the denoiser's class (its config's _class_name); text tokens and guidance as the diffusers pipelines run them.
_DENOISERS = {
    "FluxTransformer2DModel": _Denoiser(),
    "Flux2Transformer2DModel": _Denoiser(references=True),
    "ZImageTransformer2DModel": _Denoiser(batched_guidance=True),
    # QwenImageEditPlusPipeline runs true CFG's two passes one after the other.
    "QwenImageTransformer2DModel": _Denoiser(text_tokens=1024, references=True),
    "LTXVideoTransformer3DModel": _Denoiser(32, 8, text_tokens=256, batched_guidance=True),
    "LTX2VideoTransformer3DModel": _Denoiser(32, 8, text_tokens=1024, batched_guidance=True),
    # 48 kHz over a 1,920-fold downsampling VAE; the turbo checkpoint has guidance distilled in (the pipeline
    # ignores guidance_scale), so one pass.
    "AceStepTransformer1DModel": _Denoiser(0, text_tokens=256 + 2048, tokens_per_second=25),
    # Wan2.2-Animate runs a clip in 77-frame segments (plus one reference latent frame), so one segment
    # bounds the working memory, not the clip.
    "WanAnimateTransformer3DModel": _Denoiser(16, 4, text_tokens=512),
}


@dataclass(frozen=True)
class _Decoder:
    bytes_per_pixel: int
    """Peak bytes per output pixel (per pixel-frame for video), bf16, allocated plus the allocator's reserve."""
    tile: int
    """The VAE's default tile edge in pixels once tiling is on."""
    tile_frames: int = 0
    """Video: frames per temporal tile."""


# Decode peaks (untiled decode scales with the output's pixels):
# - AutoencoderKL (FLUX.1, Z-Image) and FLUX.2's: InvokeAI's estimate_vae_working_memory_flux, 2,200 per pixel
#   per element byte (invokeai/backend/util/vae_working_memory.py, calibrated in invoke-ai/InvokeAI#8414).
#   Their tile is the config's sample_size, 1024.
# - Qwen-Image's: InvokeAI's CUDA calibration on an RTX 4090, 2,900 per pixel per element byte (same file,
#   invoke-ai/InvokeAI#9305: 16.75 GiB allocated at 2048²); 256-pixel tiles.
# - LTX-Video's and LTX-2's causal 3D decoders: 750 B per output pixel-frame, measured on LTX's conv decoder
#   (dgrauet/ltx-2-mlx#146, on Apple silicon: an estimate for CUDA); 512-pixel, 16-frame tiles. The decoded
#   clip itself (3 channels, 2 bytes) stays on the GPU as well.
_DECODERS = {
    "AutoencoderKL": _Decoder(4_400, 1024),
    "AutoencoderKLFlux2": _Decoder(4_400, 1024),
    "AutoencoderKLQwenImage": _Decoder(5_800, 256),
    "AutoencoderKLLTXVideo": _Decoder(750, 512, 16),
    "AutoencoderKLLTX2Video": _Decoder(750, 512, 16),
}
_TILE_OVERLAP = 1.25


@dataclass(frozen=True)
class ComponentFootprint:
    name: str
    weight_bytes: int
    group_bytes: int
    """GPU bytes while it runs group-offloaded (see offload_layout.py); its weights where not known."""
    layer_bytes: int
    """Its largest single layer, what sequential offload moves at once; its weights where not known."""
    sixteen_bit: bool = True
    """Stored in bf16/fp16/fp32, so a 4-bit quantization would shrink it (the loader quantizes only the
    diffusers transformer, as the row's ``quantization`` says)."""


@dataclass(frozen=True)
class Footprint:
    slug: str
    components: tuple[ComponentFootprint, ...]
    working_bytes: int
    """Activations of a job at the largest request the row allows (all but the VAE decode)."""
    decode_bytes: int = 0
    """VAE decode peak at that request, untiled; 0 where there is no VAE or no estimate."""
    tiled_decode_bytes: int = 0
    """The same with VAE tiling; 0 where the VAE cannot tile."""
    offloadable: bool = False
    """Its loader applies offloaded placements."""
    load_bytes: int = 0
    """GPU bytes the load itself takes before the placement moves anything: diffusers' bitsandbytes quantizer
    quantizes the NF4/INT8 transformer on (and leaves it on) the GPU."""
    quantized_encoders: tuple[str, ...] = ()
    """The text encoders this footprint has quantized like the transformer (empty: as the row stores them)."""
    encoders_quantized: Footprint | None = None
    """The same model with its text encoders quantized as the slug's quantization implies; None where it does
    not, or the row has no computed figures for them."""

    @property
    def weight_bytes(self) -> int:
        return sum(c.weight_bytes for c in self.components)

    def component(self, name: str) -> ComponentFootprint | None:
        return next((c for c in self.components if c.name == name), None)


def encoders_to_quantize(spec: ModelSpec) -> tuple[str, ...]:
    """The text encoders an NF4, INT8 or FP8 slug may load quantized the same way, when resident in 16 bits
    they would not fit: the slug promises that precision, and quantizing them beats offloading."""
    if spec.backend not in OFFLOADABLE_BACKENDS or spec.quantization not in ("nf4", "int8", "fp8"):
        return ()
    return tuple(name for name in spec.memory if name.startswith("text_encoder"))


def _with_quantized_encoders(spec: ModelSpec, fp: Footprint) -> Footprint | None:
    names = tuple(n for n in encoders_to_quantize(spec) if n in spec.quantized_memory)
    if not names:
        return None
    components = []
    for c in fp.components:
        if c.name in names:
            # Offloaded, its groups and layers shrink as its weights do.
            ratio = spec.quantized_memory[c.name] / c.weight_bytes
            c = ComponentFootprint(
                c.name, spec.quantized_memory[c.name], int(c.group_bytes * ratio), int(c.layer_bytes * ratio), False
            )
        components.append(c)
    load = fp.load_bytes
    if spec.quantization in QUANTIZED_ON_GPU:
        load += sum(spec.quantized_memory[n] for n in names)
    return replace(fp, components=tuple(components), load_bytes=load, quantized_encoders=names)


def read_layout(path: Path = LAYOUT_FILE) -> dict[str, dict[str, tuple[int, int]]]:
    """slug -> component -> (group bytes, layer bytes), from offload_layout.toml."""
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text())
    return {slug: {c: (v["group"], v["layer"]) for c, v in parts.items()} for slug, parts in data.items()}


@lru_cache(maxsize=None)
def _configs(slug: str) -> dict[str, dict]:
    """component -> its config (the first network of it), for catalog slugs with configs."""
    from model_registry.weight_memory import COMPONENTS, read_config

    return {name: read_config(parts[0].config) for name, parts in COMPONENTS.get(slug, {}).items()}


def _width(config: dict) -> int:
    if "num_attention_heads" in config and "attention_head_dim" in config:
        return int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return int(next((config[k] for k in ("dim", "hidden_size", "inner_dim") if k in config), 0))


def _guided(spec: ModelSpec) -> bool:
    return spec.feature("supports_guidance") and float(spec.limit("max_guidance", 0) or 0) > 1


class Request(NamedTuple):
    """What a job's working memory depends on."""

    width: int
    height: int
    frames: int = 1
    seconds: float = 0.0
    """Audio: the clip's length."""
    images: int = 0
    """Input images that join the denoiser's tokens (references)."""


def largest_request(spec: ModelSpec) -> Request:
    """The largest request the row's limits allow: what a placement is sized for, so it holds for every job."""
    default = spec.default("width", 1024)
    width = int(spec.limit("max_width", default) or default)
    height = int(spec.limit("max_height", spec.default("height", width)) or width)
    frames = int(spec.limit("max_frames", spec.default("frames", 1)) or 1)
    seconds = float(spec.limit("max_duration", spec.default("duration", 30)) or 30)
    return Request(width, height, frames, seconds, int(spec.limit("max_input_images", 1) or 1))


def _denoiser_working(spec: ModelSpec, family: _Denoiser, width: int, request: Request) -> int:
    w, h, frames = request.width, request.height, request.frames
    if family.tokens_per_second:
        tokens = int(request.seconds * family.tokens_per_second)
    else:
        tokens = (w // family.pixels_per_token) * (h // family.pixels_per_token)
        if family.frames_per_token:
            tokens *= (max(frames, 1) - 1) // family.frames_per_token + 1
        if family.references:
            tokens *= 1 + request.images
    batch = 2 if family.batched_guidance and _guided(spec) else 1
    return DENOISER_BYTES_PER_TOKEN_CHANNEL * (tokens + family.text_tokens) * width * batch


def _decode(decoder: _Decoder, request: Request) -> tuple[int, int]:
    """(whole, tiled) decode peaks at ``request``."""
    w, h, frames = request.width, request.height, request.frames
    tile = decoder.tile
    if decoder.tile_frames:
        clip = 3 * 2 * w * h * frames
        whole = decoder.bytes_per_pixel * w * h * frames + clip
        tiled = decoder.bytes_per_pixel * min(tile, w) * min(tile, h) * min(decoder.tile_frames, frames)
        return whole, int(tiled * _TILE_OVERLAP) + clip
    whole = decoder.bytes_per_pixel * w * h
    return whole, int(decoder.bytes_per_pixel * min(tile, w) * min(tile, h) * _TILE_OVERLAP)


def _job_peaks(spec: ModelSpec, request: Request) -> tuple[int, int, int]:
    """(denoising, whole decode, tiled decode) working memory of an offloadable model's job at ``request``."""
    configs = _configs(spec.slug)
    denoiser = configs.get("transformer", {})
    family = _DENOISERS.get(denoiser.get("_class_name", ""))
    if family is None or not _width(denoiser):
        working = max((dict(spec.memory) or {"model": spec.vram_bytes}).values()) // 10  # not modelled: a guess
    else:
        working = _denoiser_working(spec, family, _width(denoiser), request)
    decoder = _DECODERS.get(configs.get("vae", {}).get("_class_name", ""))
    decode, tiled = _decode(decoder, request) if decoder else (0, 0)
    return working, decode, tiled


def job_working_bytes(spec: ModelSpec, request: Request, vae_tiling: bool) -> int | None:
    """The ESTIMATED peak working memory of one job of a resident offloadable model at ``request`` (denoising
    or decoding, whichever is larger); None for other backends, whose loaders reserve what they run in."""
    if spec.backend not in OFFLOADABLE_BACKENDS:
        return None
    working, decode, tiled = _job_peaks(spec, request)
    return max(working, tiled if vae_tiling and tiled else decode)


def footprint(spec: ModelSpec, layout: Mapping[str, Mapping[str, tuple[int, int]]] | None = None) -> Footprint:
    """``layout``: read_layout()'s answer, when a caller places many models; read from the file otherwise."""
    weights = dict(spec.memory) or {"model": spec.vram_bytes}
    offloadable = spec.backend in OFFLOADABLE_BACKENDS
    if not offloadable:
        # These loaders reserve vram_bytes (weights plus what they run in) and are resident only.
        components = tuple(ComponentFootprint(n, b, b, b) for n, b in weights.items())
        return Footprint(spec.slug, components, max(0, spec.vram_bytes - sum(weights.values())))

    split = (read_layout() if layout is None else layout).get(spec.slug, {})
    quantized = spec.quantization in ("nf4", "int8", "fp8")
    components = tuple(
        ComponentFootprint(name, size, *split.get(name, (size, size)), sixteen_bit=not (quantized and name == "transformer"))
        for name, size in weights.items()
    )
    working, decode, tiled = _job_peaks(spec, largest_request(spec))
    load = weights.get("transformer", 0) if spec.quantization in QUANTIZED_ON_GPU else 0
    whole = Footprint(spec.slug, components, working, decode, tiled, offloadable=True, load_bytes=load)
    return replace(whole, encoders_quantized=_with_quantized_encoders(spec, whole))
