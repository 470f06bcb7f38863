"""BEN2 against outputs of upstream's own code (PramaLLC/BEN2's ``BEN2.py``, commit 41efc69), stored in
``tests/golden/ben2/`` by ``scripts/golden_ben2.py``.

Both sides build the same geometry, draw the same weights by the golden rule and feed the same 8-bit
images; the fingerprints in ``golden.json`` are checked first, so a failure below means the
arithmetic differs, not the set-up. Each forward case is compared stage by stage, in the order the
network computes them (backbone input, its five features, their projections to the decoder's width,
the bottleneck, the four decoder steps, the mask head, the logits, the mask): the first stage that
fails is where a change lies. Tolerances are what the port reached when this was written (torch 2.13
on both sides), with headroom.

The released geometry (94M weights) runs at 384 x 384: about 10 s of the module's 18 s on one thread.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.networks.ben2 import BEN2, predict_mask

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "ben2"
MANIFEST = json.loads((GOLDEN / "golden.json").read_text())


def _load_rule():
    # The script's rule, inputs and hooks, imported by path: it is a script, not a package module.
    spec = importlib.util.spec_from_file_location("golden_ben2", ROOT / "scripts" / "golden_ben2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rule = _load_rule()

# Largest difference when written, tiny / released, in brackets.
BACKBONE_ATOL = 1e-5  # Swin stages (1.8e-6 / 1.8e-6): window attention by SDPA here, by an explicit softmax upstream
# Projections to logits (4.9e-6 / 1.8e-5): the features' differences through InstanceNorm over few
# positions, and nn.MultiheadAttention without weights (SDPA) here, with them upstream.
DECODER_ATOL = 5e-5
ATOL = {
    "views": 0.0,  # bit-equal: the same float32 normalization, quadrant split and bilinear halving
    "feature0": 1e-6,  # bit-equal when written (one convolution and a LayerNorm); the bound allows other kernels
    **{f"feature{i}": BACKBONE_ATOL for i in range(1, 5)},
    **{name: DECODER_ATOL for name in rule.DECODER_STAGES},
    "mask": 1e-5,  # (1.0e-6 / 1.3e-6)
}
# Sums (of x, |x| and x^2) relative to the sum of |x|: 3.6e-8 at most when written, 0 for the views.
SUMMARY_RTOL = {"views": 1e-12, "feature0": 1e-9}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _golden(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(GOLDEN / f"{case}.npz") as arrays:
        return MANIFEST["cases"][case], dict(arrays)


def _with_golden_weights(meta: dict) -> BEN2:
    model = BEN2(**meta["geometry"])
    rule.draw_weights(model, MANIFEST["weight_seed"])
    fingerprints = rule.weight_fingerprints(model)
    assert fingerprints["keys"] == meta["weights"]["keys"], "drawn keys or shapes differ from upstream's"
    assert fingerprints["values"] == meta["weights"]["values"], "the rule drew other values than upstream's side"
    return model.eval()


def _inputs(meta: dict) -> np.ndarray:
    pictures = rule.images(**meta["image"])
    assert rule.array_fingerprint(pictures) == meta["inputs"], "inputs differ from those upstream was given"
    return pictures


@pytest.fixture(scope="module")
def forward():
    """Each forward case's recorded stages, computed once, when a test first asks for the case."""
    runs: dict[str, tuple[dict, dict[str, torch.Tensor], dict[str, np.ndarray]]] = {}

    def run(case: str):
        if case not in runs:
            meta, golden = _golden(case)
            model = _with_golden_weights(meta)
            # [0, 1] RGB, as predict_mask hands the network a decoded picture.
            x = torch.from_numpy(_inputs(meta)).permute(0, 3, 1, 2).float().div(255)
            with torch.inference_mode(), rule.recording(model) as seen:
                mask = model(x)
            runs[case] = meta, rule.stages(seen, mask), golden
        return runs[case]

    return run


FORWARD = [(case, stage) for case in ("tiny", "released") for stage in rule.STAGES]


@pytest.mark.parametrize(("case", "stage"), FORWARD, ids=[f"{case}-{stage}" for case, stage in FORWARD])
def test_forward_stage_matches_upstream(forward, case, stage):
    meta, stages, golden = forward(case)
    actual = stages[stage]
    assert list(actual.shape) == golden[f"{stage}_shape"].tolist()
    np.testing.assert_allclose(
        rule.strided(actual, meta["strides"][stage]), golden[f"{stage}_strided"], rtol=0, atol=ATOL[stage]
    )
    expected = golden[f"{stage}_summary"]
    rtol = SUMMARY_RTOL.get(stage, 1e-6)
    np.testing.assert_allclose(rule.summary(actual), expected, rtol=0, atol=rtol * max(1.0, abs(expected[1])))


def test_predict_mask_matches_upstream_inference():
    # Upstream's BEN_Base.inference end to end: Lanczos to 1024 x 1024, forward, bilinear back to the
    # picture's size, min-max stretch, truncation to 8 bits. Equal when written; a last-bit difference
    # in the network may move a pixel that lies on a level boundary by one.
    meta, golden = _golden("inference_tiny")
    model = _with_golden_weights(meta)
    picture = Image.fromarray(_inputs(meta)[0], "RGB")
    alpha = np.asarray(predict_mask(model, picture, size=meta["size"])).astype(int)
    difference = np.abs(alpha - golden["alpha"].astype(int))
    assert alpha.shape == golden["alpha"].shape
    assert difference.max() <= 1 and (difference > 0).mean() <= 1e-3, f"{(difference > 0).sum()} pixels differ"
