"""BEN2 network: tiny checkpoints round-trip through load_ben2, and the default layout is the official one."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from model_registry.networks.ben2 import BEN2, load_ben2, predict_mask

# Smallest working size the default pooling allows: the bottleneck (size / 64) must be >= 6.
TINY_SIZE = 384
TINY = {
    "embed_dim": 16,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 4, 8],
    "window_size": 7,  # 48 / 24 / 12 / 6 tokens per side: every stage pads to whole windows
    "decoder_dim": 16,
    "mask_head_dim": 24,
}

# Official BEN_Base (PramaLLC/BEN2 BEN2.py): Swin embed 128, depths 2/2/18/2, heads 4/8/16/32, window 12,
# decoder width 128. Counted from that reference built at its defaults.
OFFICIAL_PARAMETERS = 94_134_658
OFFICIAL_STATE_ENTRIES = 535  # parameters plus the 24 relative_position_index buffers


def _tiny(seed: int = 0) -> BEN2:
    torch.manual_seed(seed)
    return BEN2(**TINY).eval()


def _image(width: int, height: int) -> Image.Image:
    gen = torch.Generator().manual_seed(1)
    pixels = (torch.rand(height, width, 3, generator=gen) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def test_tiny_safetensors_round_trip(tmp_path):
    model = _tiny()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(model.config))

    loaded = load_ben2(tmp_path)
    assert not loaded.training
    x = torch.rand(1, 3, TINY_SIZE, TINY_SIZE)
    with torch.inference_mode():
        expected, got = model(x), loaded(x)
    assert got.shape == (1, 1, TINY_SIZE, TINY_SIZE)
    assert 0.0 <= got.min() and got.max() <= 1.0
    torch.testing.assert_close(got, expected)

    image = _image(203, 131)  # odd, non-square: squashed to the working size and back
    mask = predict_mask(loaded, image, size=TINY_SIZE)
    assert mask.mode == "L" and mask.size == image.size
    lo, hi = mask.getextrema()
    assert (lo, hi) == (0, 255)  # upstream stretches the mask to the full 8-bit range


def test_official_style_pth_with_overrides(tmp_path):
    model = _tiny(seed=3)
    # BEN2_Base.pth wraps its weights as {"model_state_dict": ...}; no config.json, so args come as overrides.
    torch.save({"model_state_dict": model.state_dict()}, tmp_path / "BEN2_Base.pth")
    loaded = load_ben2(tmp_path / "BEN2_Base.pth", **TINY)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_strict_loading_and_metadata_only_config(tmp_path):
    model = _tiny()
    state = model.state_dict()
    # The hub's config.json is metadata, not constructor arguments: it must be ignored, not fail.
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": "PramaLLC/BEN2", "architectures": ["BEN_Base"]}))
    del state["dec_blk1.sal_conv.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match="dec_blk1.sal_conv.weight"):
        load_ben2(tmp_path, **TINY)


def test_batch_matches_single_images():
    model = _tiny()
    x = torch.rand(2, 3, TINY_SIZE, TINY_SIZE)
    with torch.inference_mode():
        batch = model(x)
        singles = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5)


def test_rejects_sizes_the_layout_cannot_split():
    model = _tiny()
    with torch.inference_mode(), pytest.raises(ValueError, match="multiples of 128"):
        model(torch.rand(1, 3, 400, 384))
    with torch.inference_mode(), pytest.raises(ValueError, match="too small"):
        model(torch.rand(1, 3, 256, 256))


def test_default_layout_is_the_official_checkpoint():
    with torch.device("meta"):
        model = BEN2()
    state = model.state_dict()
    assert len(state) == OFFICIAL_STATE_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    expected_shapes = {
        "backbone.patch_embed.proj.weight": (128, 3, 4, 4),
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table": (23 * 23, 4),
        "backbone.layers.0.blocks.1.attn.relative_position_index": (144, 144),
        "backbone.layers.2.blocks.17.mlp.fc2.weight": (512, 2048),
        "backbone.layers.2.downsample.reduction.weight": (1024, 2048),
        "backbone.norm3.weight": (1024,),
        "sideout5.0.weight": (1, 128, 3, 3),
        "output5.0.weight": (128, 1024, 3, 3),
        "output1.0.weight": (128, 128, 3, 3),
        "multifieldcrossatt.attention.4.in_proj_weight": (384, 128),
        "multifieldcrossatt.linear1.weight": (256, 128),
        "dec_blk4.attention.3.out_proj.weight": (128, 128),
        "dec_blk1.sal_conv.weight": (1, 128, 1, 1),
        "conv4.0.weight": (128, 128, 3, 3),
        "insmask_head.3.weight": (384, 384, 3, 3),
        "insmask_head.6.weight": (128, 384, 3, 3),
        "shallow.0.weight": (128, 3, 3, 3),
        "upsample2.0.weight": (128, 128, 3, 3),
        "output.0.weight": (1, 128, 3, 3),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    prefixes = {key.split(".")[0] for key in state}
    assert prefixes == {
        "backbone", "multifieldcrossatt", "insmask_head", "shallow", "upsample1", "upsample2", "output",
        *(f"sideout{i}" for i in range(1, 6)), *(f"output{i}" for i in range(1, 6)),
        *(f"conv{i}" for i in range(1, 5)), *(f"dec_blk{i}" for i in range(1, 5)),
    }  # fmt: skip
    assert not any(key.startswith(("mean", "std")) for key in state)  # normalization is not a weight
