"""Regenerate ``tests/golden/ben2/``: BEN2 run by UPSTREAM's own code (PramaLLC/BEN2's ``BEN2.py``,
class ``BEN_Base``) on seeded weights and inputs, for ``tests/test_ben2_golden.py`` to hold this
project's port (``model_registry/networks/ben2.py``) to.

Nothing of upstream is copied here: ``BEN2.py`` is imported from a checkout named on the command line,
in a virtual environment of its own (never this project's, never committed):

    python3 -m venv /tmp/golden-ben2
    /tmp/golden-ben2/bin/pip install torch==2.13.0
    /tmp/golden-ben2/bin/pip install -c <(echo torch==2.13.0) torchvision einops timm pillow numpy \\
        opencv-python-headless
    git clone https://github.com/PramaLLC/BEN2 /tmp/ben2-upstream
    git -C /tmp/ben2-upstream checkout 41efc69   # the newest commit (2025-04-08); BEN2.py is what the port follows
    /tmp/golden-ben2/bin/python scripts/golden_ben2.py /tmp/ben2-upstream

It takes about half a minute on one thread and rewrites every file in that folder: ``golden.json``
(provenance, versions, per case the geometry, input size, seeds, strides and fingerprints) and one
``.npz`` per case (every n-th value and sums of each compared tensor; the 8-bit mask of the
end-to-end case whole). Everything runs on one thread, as the test does, so that summation order does
not hang on the core count. Upstream's own requirements.txt asks for torch, torchvision, einops, timm,
Pillow, numpy and huggingface_hub (timm brings it), and ``BEN2.py`` imports cv2 at the top (its video
helpers); the committed files were made with torch 2.13.0+cpu, torchvision 0.28.0, timm 1.0.31,
einops 0.8.2, numpy 2.4.6, Pillow 13.0.0 and opencv-python-headless 5.1.0.95 (``golden.json`` records
them).

One stand-in, touching nothing that is compared: the torchvision wheel that pip finds for torch 2.13
is built for CUDA, so its compiled operators (``torchvision/_C.so``: nms, roi_align and the like)
cannot load beside the CPU build of torch, and ``import torchvision`` then stops where it registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms``. Their schemas are declared here,
without kernels, before upstream is imported. BEN2 uses none of them: only ``torchvision.transforms``
(ToTensor, ConvertImageDtype, Normalize, ToPILImage), which are plain torch code.

Three cases:

- ``tiny``: upstream hard-codes the released sizes as literals in ``BEN_Base.__init__`` (Swin width
  128, depths 2/2/18/2, window 12; decoder width 128, mask head 384). For a small network that
  ``__init__`` runs with those literals swapped in its code object (:data:`TINY_LITERALS`) and is
  restored after, so every module is still built by upstream's own code. Two images of 384 x 640:
  non-square, window 7 pads every stage, and the pooled sizes reach 2.5, where Python's round (half
  to even, as upstream pools) and rounding half up differ.
- ``released``: ``BEN_Base()`` as it is (94,134,658 parameters) at 384 x 384, the smallest input the
  port takes (upstream also runs 256 x 256, where the bottleneck's coarsest pool is empty); 1024 x
  1024, the working size, takes over a minute a side on one thread.
- ``inference_tiny``: upstream's end-to-end ``BEN_Base.inference`` (Lanczos to 1024 x 1024, its
  float32 transform, forward, bilinear back, min-max stretch, 8 bits) on the small network and a
  non-square image; the 8-bit alpha is kept whole and compared with the port's ``predict_mask``.

Each forward case keeps, besides the mask, what upstream's modules hand on (recorded by hooks on the
module names, which the port shares): the backbone's input views and its five features, their
projections to the decoder's width (``output5`` .. ``output1``), the bottleneck
(``multifieldcrossatt``), the four decoder steps (``dec_blk4`` .. ``dec_blk1``), the mask head and
the last convolution's logits; so a failing test names the first stage that drifts.

Weights are never stored: both sides draw them by ``draw_weights`` of ``scripts/golden_chatterbox.py``
(the project's one golden rule: per state-dict key, from the key's name, so key order does not matter),
and ``golden.json`` keeps fingerprints of the keys, shapes and values, which the test checks before it
compares any output. Inputs are seeded 8-bit images, also fingerprinted.

This module imports only torch and numpy at the top: the test imports its rule, inputs and hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

SCRIPTS = Path(__file__).resolve().parent
GOLDEN = SCRIPTS.parent / "tests" / "golden" / "ben2"


def _load_shared_rule():
    # The chatterbox script holds the golden rule (weights, fingerprints, strided samples, sums);
    # imported by path because scripts/ is not a package.
    spec = importlib.util.spec_from_file_location("golden_chatterbox", SCRIPTS / "golden_chatterbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_rule = _load_shared_rule()
WEIGHT_SEED = _rule.WEIGHT_SEED
draw_weights = _rule.draw_weights
weight_fingerprints = _rule.weight_fingerprints
array_fingerprint = _rule.array_fingerprint
strided = _rule.strided
summary = _rule.summary

# --------------------------------------------------------------------------------------------------
# Case definitions: geometry, inputs and what is recorded, shared by both sides.
# --------------------------------------------------------------------------------------------------

# The small network as the port's constructor arguments; four heads per 16 channels, so every stage
# splits heads (head width 4), and an odd depth in the third stage.
TINY = dict(
    embed_dim=16, depths=[2, 2, 3, 2], num_heads=[4, 8, 16, 32], window_size=7, decoder_dim=16, mask_head_dim=24
)
# The same network on upstream's side: BEN_Base.__init__'s literals and what replaces each. 128 is both
# the Swin width and the decoder width (and the input width of output1/output2); 1024/512/256 are the
# widths of the deeper backbone stages that output5..output3 take.
TINY_LITERALS = {128: 16, (2, 2, 18, 2): (2, 2, 3, 2), 12: 7, 1024: 128, 512: 64, 256: 32, 384: 24}

TINY_CASE = dict(count=2, height=384, width=640, seed=11)
RELEASED_CASE = dict(count=1, height=384, width=384, seed=12)
INFERENCE_IMAGE = dict(count=1, height=80, width=120, seed=13)
INFERENCE_SIZE = 1024  # upstream's inference resizes to this, hard-coded

# What each forward case compares, in the order the network computes it: the backbone's input (four
# normalized quadrants and the half-size whole, per image) and features (the patch embedding, then
# each Swin stage, normalized); the decoder's modules, each called once per image: the projections of
# the five features to the decoder's width (output5 of the last stage .. output1 of the patch
# embedding), the bottleneck, the four decoder steps, the mask head and the last convolution (the
# logits before the sigmoid); the mask.
BACKBONE_STAGES = ("views", "feature0", "feature1", "feature2", "feature3", "feature4")
DECODER_STAGES = (
    *(f"output{i}" for i in range(5, 0, -1)),
    "multifieldcrossatt",
    *(f"dec_blk{i}" for i in range(4, 0, -1)),
    "insmask_head",
    "output",
)
STAGES = (*BACKBONE_STAGES, *DECODER_STAGES, "mask")
SAMPLES = 256  # about this many values of each stage are stored


def images(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Seeded 8-bit RGB images, (count, height, width, 3): what a decoded picture hands either side."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), generator=generator, dtype=torch.uint8).numpy()


def stride_for(numel: int) -> int:
    """A prime step that keeps about :data:`SAMPLES` values: prime, so that it does not walk one
    column or one channel of an (N, C, H, W) layout."""
    step = max(2, numel // SAMPLES)
    while any(step % d == 0 for d in range(2, int(step**0.5) + 1)):
        step += 1
    return step


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each stage of :data:`STAGES` (but the mask) while ``model`` runs, by the module names
    that upstream and the port share. Decoder modules run once per image: their calls are listed in
    order, to be concatenated along the batch."""
    seen: dict[str, list[torch.Tensor]] = defaultdict(list)

    def backbone_in(module, args):
        seen["views"].append(args[0].detach().clone())

    def backbone_out(module, args, out):
        for i, feature in enumerate(out):
            seen[f"feature{i}"].append(feature.detach().clone())

    def decoder_out(name):
        def hook(module, args, out):
            # Upstream's dec_blk* also return their gate map; the refreshed features come first.
            seen[name].append((out[0] if isinstance(out, tuple) else out).detach().clone())

        return hook

    handles = [
        model.backbone.register_forward_pre_hook(backbone_in),
        model.backbone.register_forward_hook(backbone_out),
    ]
    for name in DECODER_STAGES:
        handles.append(getattr(model, name).register_forward_hook(decoder_out(name)))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def stages(seen: Mapping[str, list[torch.Tensor]], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The recorded stages, each one tensor over the batch, and the mask: keyed as :data:`STAGES`."""
    return {**{name: torch.cat(seen[name]) for name in (*BACKBONE_STAGES, *DECODER_STAGES)}, "mask": mask}


# --------------------------------------------------------------------------------------------------
# Upstream side.
# --------------------------------------------------------------------------------------------------


def _import_upstream(checkout: Path):
    source = checkout / "BEN2.py"
    if not source.is_file():
        sys.exit(f"{checkout} is not a PramaLLC/BEN2 checkout (no BEN2.py)")
    # See the module docstring: the CUDA build of torchvision's operators cannot load here.
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    spec = importlib.util.spec_from_file_location("BEN2", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["BEN2"] = module
    spec.loader.exec_module(module)
    module._golden_library = library  # keep the declarations alive
    return module


@contextlib.contextmanager
def _literals(function, swaps: Mapping) -> Iterator[None]:
    """Run ``function`` with some of its literal constants replaced, then restore it."""
    code = function.__code__
    missing = [value for value in swaps if value not in code.co_consts]
    if missing:
        sys.exit(f"BEN_Base.__init__ has none of the literals {missing}: upstream changed, revisit TINY_LITERALS")
    function.__code__ = code.replace(co_consts=tuple(swaps.get(c, c) for c in code.co_consts))
    try:
        yield
    finally:
        function.__code__ = code


def _build(ben2, released: bool) -> torch.nn.Module:
    if released:
        model = ben2.BEN_Base()
    else:
        with _literals(ben2.BEN_Base.__init__, TINY_LITERALS):
            model = ben2.BEN_Base()
    draw_weights(model)
    return model.eval()


def _forward(ben2, model, out: dict, meta: dict, case: dict) -> None:
    pictures = images(**case)
    # Upstream's CPU preprocessing (inference's img_transform32: ToTensor, float32, ImageNet
    # normalization), image by image; the network then takes the batch.
    x = torch.stack([ben2.img_transform32(picture) for picture in pictures])
    with recording(model) as seen:
        mask = model(x)
    recorded = stages(seen, mask)
    strides = {}
    for name, tensor in recorded.items():
        strides[name] = stride_for(tensor.numel())
        out[f"{name}_shape"] = np.array(tensor.shape)
        out[f"{name}_strided"] = strided(tensor, strides[name])
        out[f"{name}_summary"] = summary(tensor)
    meta.update(
        image=case,
        inputs=array_fingerprint(pictures),
        weights=weight_fingerprints(model),
        strides=strides,
        mask_range=[float(mask.min()), float(mask.max())],
    )


def _inference(ben2, model, out: dict, meta: dict) -> None:
    from PIL import Image

    pictures = images(**INFERENCE_IMAGE)
    rgba = model.inference(Image.fromarray(pictures[0], "RGB"))
    alpha = np.asarray(rgba.getchannel("A"))
    out["alpha"] = alpha
    meta.update(
        image=INFERENCE_IMAGE,
        size=INFERENCE_SIZE,
        inputs=array_fingerprint(pictures),
        weights=weight_fingerprints(model),
        alpha_levels=int(len(np.unique(alpha))),
    )


# --------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = "torch torchvision timm einops numpy pillow opencv-python-headless".split()
    return {name: version(name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a git checkout of PramaLLC/BEN2 (commit 41efc69)")
    args = parser.parse_args()
    ben2 = _import_upstream(args.checkout)
    commit = subprocess.run(
        ["git", "-C", str(args.checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    torch.set_num_threads(1)  # as the test runs: results then do not hang on the core count
    GOLDEN.mkdir(parents=True, exist_ok=True)

    manifest: dict = {
        "upstream": {"repository": "PramaLLC/BEN2", "commit": commit or "unknown", "file": "BEN2.py"},
        "versions": _versions(),
        "weight_seed": WEIGHT_SEED,
        "cases": {},
    }
    tiny = _build(ben2, released=False)
    released = _build(ben2, released=True)
    cases = {
        "tiny": lambda o, m: _forward(ben2, tiny, o, m, TINY_CASE),
        "released": lambda o, m: _forward(ben2, released, o, m, RELEASED_CASE),
        "inference_tiny": lambda o, m: _inference(ben2, tiny, o, m),
    }
    geometry = {"tiny": TINY, "released": {}, "inference_tiny": TINY}
    for name, run in cases.items():
        out: dict[str, np.ndarray] = {}
        meta: dict = {"geometry": geometry[name]}
        run(out, meta)
        np.savez_compressed(GOLDEN / f"{name}.npz", **out)
        manifest["cases"][name] = meta
        print(f"{name}: {len(out)} arrays, {sum(v.size for v in out.values())} values")
    (GOLDEN / "golden.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
