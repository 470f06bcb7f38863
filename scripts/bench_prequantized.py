"""Load time of an NF4 diffusers model: quantized at load (first load) against read back pre-quantized
(every later load), through drylocal's own loader, side by side.

    .venv/bin/python scripts/bench_prequantized.py [--layers 4 --single-layers 8 --width 1024] [--runs 3]

A FLUX transformer with random weights, of the size asked (speed does not depend on the values). On
a machine without CUDA, diffusers' GPU-only guards on bitsandbytes are lifted (bitsandbytes runs NF4
on the CPU); on a GPU nothing is patched.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_pipeline(target: Path, layers: int, single_layers: int, width: int) -> Path:
    import torch
    from diffusers import FluxTransformer2DModel

    from tests import flux_checkpoint

    flux_checkpoint.build_tiny_flux(target)
    heads, head_dim = width // 128, 128
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=layers, num_single_layers=single_layers, attention_head_dim=head_dim,
        num_attention_heads=heads, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[16, 56, 56],
    )
    shutil.rmtree(target / "transformer")
    transformer.save_pretrained(target / "transformer")
    return target


def allow_nf4_on_cpu() -> None:
    from tests.nf4_on_cpu import nf4_patches

    for owner, name, replacement in nf4_patches():
        setattr(owner, name, replacement)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--single-layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024, help="attention width (heads x 128)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import torch

    from engine import Settings
    from model_registry import ModelRegistry, WeightsLocator
    from tests.user_models import model_entry, register_models

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        allow_nf4_on_cpu()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        settings = Settings.load(home=root / "home")
        path = build_pipeline(root / "flux", args.layers, args.single_layers, args.width)
        register_models(settings, model_entry("BenchFlux", ["txt2img"], "diffusers", path,
                                              {"formula": "image_steps", "rates": {"per_step_512": 0.0003}},
                                              quantization="nf4"))
        registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
        spec = registry.get("BenchFlux")
        cache = settings.models_dir / ".converted" / "BenchFlux"
        params = sum(p.numel() for p in registry.load(spec, device).handle.transformer.parameters())
        quantizing, reading = [], []
        for _ in range(args.runs):
            shutil.rmtree(cache, ignore_errors=True)
            started = time.perf_counter()
            first = registry.load(spec, device)
            quantizing.append(time.perf_counter() - started)
            assert first.extras["prequantized"] is False
            started = time.perf_counter()
            again = registry.load(spec, device)
            reading.append(time.perf_counter() - started)
            assert again.extras["prequantized"] is True
        q, r = min(quantizing), min(reading)
        print(f"device {device}; FLUX transformer {args.layers}+{args.single_layers} blocks, width {args.width}: "
              f"{params / 1e6:.0f}M parameters (as stored)")
        print(f"load, quantizing the full-precision weights: {q:.2f} s (best of {args.runs})")
        print(f"load, reading the saved NF4 transformer:     {r:.2f} s (best of {args.runs})")
        print(f"ratio (pre-quantized / quantizing): {r / q:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
