"""Where a model's weights live while it serves: the fastest placement that fits the GPU and host-RAM budgets.

``place(footprint, gpu_budget, host_budget)`` is a pure function, like engine/scheduler.py's ``plan``: the
worker asks it once per model and budget and plans with its ``gpu_bytes``; the diffusers loader applies it
(loaders/_offload.py). Fastest first:

- ``resident``: everything on the GPU. Needs every weight + working memory. Where the slug is NF4, INT8 or FP8
  and its 16-bit text encoders keep it from fitting, next comes resident with those encoders quantized the same
  way (``quantized_encoders``); the offloaded kinds then try them quantized first (less to move and to hold).
- ``model_offload`` (diffusers ``enable_model_cpu_offload``): a component goes to the GPU when it is called
  and the previous one leaves. Needs the largest component + working memory.
- ``group_offload`` (diffusers group offloading with CUDA streams): the denoiser block by block, the other
  components layer by layer, the next group copied while one computes. Needs the largest group + working.
- ``sequential_offload`` (``enable_sequential_cpu_offload``): one layer at a time, nothing prefetched, the
  slowest. Needs the largest layer + working memory.
- ``too_big``: none fits; ``reason`` says what would (a card of N GB, more host RAM, a 4-bit quantization).

An offloaded placement keeps every weight in host RAM (the loader stages them there and a component returns
there after use), so it fits only where the host budget holds them all; and it needs at least what the load
itself puts on the GPU (a bitsandbytes-quantized transformer, quantized there). Each kind is tried with the VAE
decoding whole, then tiled, before the next, slower kind. The decode comes after the denoising, so in an
offloaded placement the VAE is then the only component on the GPU. Working memory and decode peaks are
estimates (model_registry/footprint.py) until the worker measures them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from model_registry.footprint import Footprint

__all__ = ("CARD_SIZES_GB", "KINDS", "Placement", "card_budget", "place")

KINDS = ("resident", "model_offload", "group_offload", "sequential_offload")
"""Fastest first."""

CARD_SIZES_GB = (8, 12, 16, 24, 32, 48, 80, 96, 141)
"""GPU memory sizes people own (GiB, as sold), for saying which card a model would fit."""

DEFAULT_GPU_RESERVE = 1_500_000_000
"""engine/settings.py's default ``gpu_reserve_bytes``."""

_NF4_RATIO = 0.5625 / 2
"""4-bit NF4 bytes per 16-bit byte: half a byte a weight plus an fp32 absmax per 64 (weight_memory.py)."""


@dataclass(frozen=True)
class Placement:
    kind: str
    """One of KINDS, or ``too_big``."""
    gpu_bytes: int
    """Peak GPU memory of a job in this placement: what the scheduler reserves. For too_big, what resident
    would take."""
    host_bytes: int
    """Weights kept in host RAM (0 when resident)."""
    working_bytes: int = 0
    """The part of gpu_bytes that is not weights (activations, the decode), estimated at the largest request."""
    vae_tiling: bool = False
    """The VAE decodes in tiles: decoding whole would not fit."""
    quantized_encoders: tuple[str, ...] = ()
    """Text encoders loaded quantized as the slug's transformer is (footprint.encoders_to_quantize)."""
    reason: str = ""
    """For too_big: why, and what would fit."""

    @property
    def offloaded(self) -> bool:
        return self.kind in KINDS[1:]

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "gpu_bytes": self.gpu_bytes,
            "host_bytes": self.host_bytes,
            "vae_tiling": self.vae_tiling,
            "quantized_encoders": list(self.quantized_encoders),
            "reason": self.reason or None,
        }


def card_budget(size_gb: float, gpu_reserve: int = DEFAULT_GPU_RESERVE) -> int:
    """The memory budget on a card sold as ``size_gb`` GB, as engine/devices.py computes it (total - reserve)."""
    return max(0, int(size_gb * 2**30) - gpu_reserve)


def _needs(fp: Footprint, kind: str, tiling: bool) -> tuple[int, int]:
    """(GPU bytes, host bytes) of ``fp`` placed as ``kind``."""
    decode = fp.tiled_decode_bytes if tiling else fp.decode_bytes
    if kind == "resident":
        return fp.weight_bytes + max(fp.working_bytes, decode), 0
    piece = {
        "model_offload": lambda c: c.weight_bytes,
        "group_offload": lambda c: c.group_bytes,
        "sequential_offload": lambda c: c.layer_bytes,
    }[kind]
    vae = fp.component("vae")
    decoding = (piece(vae) if vae else 0) + decode
    denoising = max(piece(c) for c in fp.components) + fp.working_bytes
    return max(denoising, decoding, fp.load_bytes), fp.weight_bytes


def _candidates(fp: Footprint, offload: bool):
    """(footprint, kind), fastest first. Quantized encoders only where the loader quantizes: on a GPU."""
    quantized = fp.encoders_quantized if offload else None
    yield fp, "resident"
    if quantized is not None:
        yield quantized, "resident"
    if not (offload and fp.offloadable):
        return
    for kind in KINDS[1:]:
        # Quantized, they need less GPU and host memory; but bitsandbytes loads them on the GPU first, which a
        # small card may not hold, while 16-bit encoders load in RAM.
        if quantized is not None:
            yield quantized, kind
        yield fp, kind


def _first_fit(fp: Footprint, gpu_budget: int, host_budget: int, offload: bool) -> Placement | None:
    for candidate, kind in _candidates(fp, offload):
        can_tile = 0 < candidate.tiled_decode_bytes < candidate.decode_bytes
        for tiling in (False, True) if can_tile else (False,):
            gpu, host = _needs(candidate, kind, tiling)
            if gpu <= gpu_budget and host <= host_budget:
                # Offloaded, the weights on the GPU come and go like the activations.
                working = gpu - candidate.weight_bytes if kind == "resident" else gpu
                return Placement(kind, gpu, host, working, tiling, candidate.quantized_encoders)
    return None


def place(
    fp: Footprint,
    gpu_budget: int,
    host_budget: int,
    *,
    device: str = "cuda",
    gpu_reserve: int = DEFAULT_GPU_RESERVE,
) -> Placement:
    """The fastest placement of ``fp`` within ``gpu_budget`` (the device's) and ``host_budget`` (RAM for
    offloaded weights). On the CPU there is nothing to offload to: resident, or too_big. ``gpu_reserve`` only
    words the suggestion of a card size."""
    offload = device.startswith("cuda")
    found = _first_fit(fp, gpu_budget, host_budget, offload)
    if found is not None:
        return found
    resident, _ = _needs(fp, "resident", fp.tiled_decode_bytes > 0)
    return Placement("too_big", resident, 0, reason=_refusal(fp, gpu_budget, host_budget, offload, gpu_reserve))


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _quantized(fp: Footprint) -> tuple[Footprint, tuple[str, ...]]:
    """``fp`` with its 16-bit transformer and text encoders in 4-bit NF4 (quantized on the GPU at load, like the
    loader's NF4 transformer), and their names."""
    names = tuple(
        c.name for c in fp.components if c.sixteen_bit and (c.name == "transformer" or "text_encoder" in c.name)
    )
    shrunk = tuple(
        replace(c, weight_bytes=int(c.weight_bytes * _NF4_RATIO), group_bytes=int(c.group_bytes * _NF4_RATIO),
                layer_bytes=int(c.layer_bytes * _NF4_RATIO)) if c.name in names else c
        for c in fp.components
    )
    # Each bitsandbytes component stays on the GPU from its load until the placement moves them all.
    load = fp.load_bytes + sum(c.weight_bytes for c in shrunk if c.name in names)
    return replace(fp, components=shrunk, load_bytes=load), names


def _refusal(fp: Footprint, gpu_budget: int, host_budget: int, offload: bool, reserve: int) -> str:
    resident, _ = _needs(fp, "resident", fp.tiled_decode_bytes > 0)
    words = f"Model {fp.slug} needs about {_gb(resident)}, more than the whole memory budget of {_gb(gpu_budget)}"
    if not offload:
        return words + " on this machine."
    if not fp.offloadable:
        return words + " on this GPU, and its loader cannot offload it. " + _would_fit(fp, gpu_budget, host_budget, reserve)
    if fp.weight_bytes > host_budget:
        words += (
            f" on this GPU, and offloaded it keeps {_gb(fp.weight_bytes)} of weights in host RAM, more than the host "
            f"memory budget of {_gb(host_budget)}."
        )
    else:
        smallest, _ = _needs(fp, "sequential_offload", fp.tiled_decode_bytes > 0)
        if fp.load_bytes >= smallest:
            words += (
                f" on this GPU; its load alone puts its {_gb(fp.load_bytes)} quantized transformer there "
                "(bitsandbytes quantizes on the GPU)."
            )
        else:
            words += f" on this GPU; even offloaded layer by layer it needs {_gb(smallest)}."
    return words + " " + _would_fit(fp, gpu_budget, host_budget, reserve)


def _would_fit(fp: Footprint, gpu_budget: int, host_budget: int, reserve: int) -> str:
    options = []
    card = next(
        (
            (size, found)
            for size in CARD_SIZES_GB
            if card_budget(size, reserve) > gpu_budget
            and (found := _first_fit(fp, card_budget(size, reserve), host_budget, True)) is not None
        ),
        None,
    )
    if card is not None:
        options.append(f"on a card of {card[0]} GB ({card[1].kind.replace('_', ' ')})")
    if fp.offloadable and fp.weight_bytes > host_budget:
        roomy = _first_fit(fp, gpu_budget, fp.weight_bytes, True)
        if roomy is not None:
            options.append(
                f"on this GPU with {_gb(fp.weight_bytes)} of host RAM for its weights ({roomy.kind.replace('_', ' ')})"
            )
    smaller, names = _quantized(fp)
    if names:
        here = _first_fit(smaller, gpu_budget, host_budget, True)
        if here is not None:
            options.append(
                f"here with its {', '.join(names)} quantized to 4 bits (NF4, about {_gb(smaller.weight_bytes)} of weights; "
                f"{here.kind.replace('_', ' ')})"
            )
    if not options:
        return f"No card up to {CARD_SIZES_GB[-1]} GB fits it with this much host RAM."
    return "It would fit " + ", or ".join(options) + "."
