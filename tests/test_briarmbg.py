"""BRIA RMBG-1.4: upstream's key names and geometry, strict loading, pinned numbers on a seeded tiny
network, and img-rmbg through the HTTP API with the catalog's RMBG-1.4 row on a tiny checkpoint."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from model_registry.networks.briarmbg import BriaRMBG, load_briarmbg, predict_mask
from tests.conftest import removed_background, running_api

TINY = {"widths": [4, 4, 8, 8, 16, 16, 16], "encoder_mids": [4, 4, 4, 8, 8, 8], "decoder_mids": [4, 4, 4, 8, 8]}

# Upstream's BriaRMBG (briaai/RMBG-1.4 briarmbg.py), counted from that reference at its only geometry.
RELEASED_PARAMETERS = 44_046_790
RELEASED_STATE_ENTRIES = 798  # parameters plus 112 BatchNorms' running_mean, running_var, num_batches_tracked


def _seeded(seed: int = 0) -> BriaRMBG:
    """A tiny network whose every tensor comes from one seeded generator (not torch's init, which may
    change between releases), with BatchNorm statistics far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    model = BriaRMBG(**TINY).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            u = torch.rand(tensor.shape, generator=generator)
            if name.endswith(("running_var", "bn_s1.weight")):
                tensor.copy_(u + 0.5)
            elif tensor.ndim == 4:  # convolutions: variance 1/fan_in
                tensor.copy_((2 * u - 1) * math.sqrt(3 / tensor[0].numel()))
            else:
                tensor.copy_(0.2 * (u - 0.5))
    return model


def _image(width: int = 53, height: int = 37) -> Image.Image:
    pixels = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(1)) * 255
    return Image.fromarray(pixels.to(torch.uint8).numpy(), "RGB")


def _save(model: BriaRMBG, folder, working_size: int | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), folder / "model.safetensors")
    # Upstream's config.json names only in_ch/out_ch; the working size is this project's addition.
    config = {"in_ch": 3, "out_ch": 1} | ({"working_size": working_size} if working_size else {})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_default_layout_is_the_released_checkpoint():
    with torch.device("meta"):
        model = BriaRMBG()
    state = model.state_dict()
    assert len(state) == RELEASED_STATE_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    released_shapes = {
        "conv_in.weight": (64, 3, 3, 3),
        "stage1.rebnconvin.conv_s1.weight": (64, 64, 3, 3),
        "stage1.rebnconv7.conv_s1.weight": (32, 32, 3, 3),
        "stage1.rebnconv6d.conv_s1.weight": (32, 64, 3, 3),
        "stage1.rebnconv1d.bn_s1.running_var": (64,),
        "stage2.rebnconv1.conv_s1.weight": (32, 128, 3, 3),
        "stage3.rebnconvin.bn_s1.num_batches_tracked": (),
        "stage4.rebnconv4.conv_s1.weight": (128, 128, 3, 3),
        "stage5.rebnconv3d.conv_s1.weight": (256, 512, 3, 3),
        "stage6.rebnconv1d.conv_s1.weight": (512, 512, 3, 3),
        "stage5d.rebnconvin.conv_s1.weight": (512, 1024, 3, 3),
        "stage4d.rebnconvin.conv_s1.weight": (256, 1024, 3, 3),
        "stage1d.rebnconv1.conv_s1.weight": (16, 64, 3, 3),
        "stage1d.rebnconv1d.conv_s1.weight": (64, 32, 3, 3),
        "side1.weight": (1, 64, 3, 3),
        "side6.weight": (1, 512, 3, 3),
    }
    for key, shape in released_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert list(state)[:3] == ["conv_in.weight", "conv_in.bias", "stage1.rebnconvin.conv_s1.weight"]
    assert list(state)[-1] == "side6.bias"
    assert {key.split(".")[0] for key in state} == {
        "conv_in", *(f"stage{k}" for k in range(1, 7)), *(f"stage{k}d" for k in range(1, 6)),
        *(f"side{k}" for k in range(1, 7)),
    }  # fmt: skip
    assert {key.split(".")[1] for key in state if key.startswith("stage5d.")} == {
        "rebnconvin", "rebnconv1", "rebnconv2", "rebnconv3", "rebnconv4", "rebnconv3d", "rebnconv2d", "rebnconv1d",
    }  # fmt: skip
    # Dilations are not in the checkpoint, so they are checked here: RSU-L dilates its bottom by 2,
    # RSU-4F runs 1/2/4/8 down and 4/2/1 back up.
    dilations = {
        "stage1.rebnconv6": 1, "stage1.rebnconv7": 2, "stage4.rebnconv4": 2,
        "stage5.rebnconv2": 2, "stage5.rebnconv3": 4, "stage5.rebnconv4": 8,
        "stage5d.rebnconv3d": 4, "stage5d.rebnconv2d": 2, "stage5d.rebnconv1d": 1,
    }  # fmt: skip
    for name, dilation in dilations.items():
        conv = model.get_submodule(name).conv_s1
        assert conv.dilation == (dilation, dilation) and conv.padding == (dilation, dilation), name


def test_safetensors_round_trip_is_exact(tmp_path):
    model = _seeded()
    loaded = load_briarmbg(_save(model, tmp_path / "rmbg"))
    assert not loaded.training
    assert list(loaded.state_dict()) == list(model.state_dict())
    x = torch.rand(1, 3, 72, 104)
    with torch.inference_mode():
        expected, got = model(x), loaded(x)
    assert got.shape == (1, 1, 72, 104)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_folder_prefers_safetensors_and_a_pth_without_batch_counters_loads(tmp_path):
    folder = _save(_seeded(0), tmp_path / "both")
    torch.save(_seeded(1).state_dict(), folder / "model.pth")
    assert torch.equal(load_briarmbg(folder).conv_in.weight, _seeded(0).conv_in.weight)

    state = {k: v for k, v in _seeded(1).state_dict().items() if not k.endswith("num_batches_tracked")}
    (tmp_path / "pth").mkdir()
    torch.save(state, tmp_path / "pth" / "model.pth")
    loaded = load_briarmbg(tmp_path / "pth")
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_strict_loading_names_every_mismatch(tmp_path):
    state = _seeded().state_dict()
    del state["stage3d.rebnconv2.conv_s1.weight"]
    state["side7.weight"] = torch.zeros(1, 4, 3, 3)
    state["side2.bias"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as failure:
        load_briarmbg(tmp_path)
    message = str(failure.value)
    assert "missing 1: stage3d.rebnconv2.conv_s1.weight" in message
    assert "unexpected 1: side7.weight" in message
    assert "side2.bias (2,) != (1,)" in message


def test_seeded_tiny_network_gives_the_pinned_mask():
    """Numbers recorded from this module, which matched upstream's briarmbg.py + utilities.py exactly at
    the released geometry (see the network's docstring). A changed constant, upsampling mode, pooling or
    preprocessing step moves them: e.g. nearest upsampling by up to 0.10, mean 0.485 for 0.5 by 0.005,
    dropping upstream's uint8 truncation of the resized input moves the mask's sum by 280."""
    model = _seeded()
    x = torch.rand(1, 3, 224, 320, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        y = model(x)[0, 0]
    points = [(0, 0), (13, 41), (100, 200), (223, 319)]
    got = torch.stack([y[i, j] for i, j in points])
    torch.testing.assert_close(got, torch.tensor([0.464068, 0.452471, 0.510531, 0.510481]), rtol=0, atol=2e-6)
    torch.testing.assert_close(float(y.mean()), 0.4927035, rtol=0, atol=2e-6)

    mask = np.asarray(predict_mask(model, _image(), size=96))
    assert mask.shape == (37, 53) and (mask.min(), mask.max()) == (0, 255)
    # 8-bit truncation can flip a pixel by one on another CPU's rounding; a real change moves many.
    assert abs(int(mask.sum()) - 289_608) <= 3
    pixels = np.array([mask[0, 0], mask[10, 20], mask[18, 26], mask[36, 52]], dtype=int)
    assert np.abs(pixels - [120, 195, 104, 209]).max() <= 1


def test_img_rmbg_with_rmbg_gives_a_transparent_png_with_its_mask(settings):
    model = _seeded()
    _save(model, settings.models_dir / "RMBG-1.4", working_size=96)
    source = _image(61, 43)
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    with running_api(settings) as api:
        cut = removed_background(api, buffer.getvalue(), "RMBG-1.4", timeout=60)
    assert cut.format == "PNG" and cut.mode == "RGBA" and cut.size == (61, 43)
    assert np.array_equal(np.asarray(cut)[..., :3], np.asarray(source))
    expected = predict_mask(model, source, size=96)
    assert np.array_equal(np.asarray(cut.getchannel("A")), np.asarray(expected))
