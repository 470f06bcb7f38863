"""img-upscale and img-rmbg end to end on tiny random-weight RRDBNet and BEN2 checkpoints."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_registry.networks.ben2 import BEN2
from model_registry.networks.rrdbnet import RRDBNet
from tests.conftest import eventually, first_message, running_api

BEN2_TINY = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8], "window_size": 7, "decoder_dim": 16, "mask_head_dim": 24}
TILE_RESERVE = 40_000_000
"""A memory reserve small enough that the upscaler must cut even small inputs into 32 px tiles."""


@pytest.fixture(scope="session")
def transform_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transform-models")
    torch.manual_seed(0)
    esrgan = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4).eval()
    (root / "esrgan").mkdir()
    torch.save({"params_ema": esrgan.state_dict()}, root / "esrgan" / "RealESRGAN_tiny.pth")
    ben2 = BEN2(**BEN2_TINY).eval()
    (root / "ben2").mkdir()
    torch.save({"model_state_dict": ben2.state_dict()}, root / "ben2" / "BEN2_Base.pth")
    (root / "ben2" / "config.json").write_text(json.dumps({**ben2.config, "working_size": 384}))
    return {"esrgan": root / "esrgan" / "RealESRGAN_tiny.pth", "ben2": root / "ben2" / "BEN2_Base.pth"}


def tiny_models_config(
    transform_models: dict[str, Path], esrgan_types: tuple[str, ...] = ("img-upscale",), ben2_types: tuple[str, ...] = ("img-rmbg",)
) -> str:
    """config.toml serving the tiny RRDBNet as TinyESRGAN and the tiny BEN2 as TinyBen2 for the given tasks."""
    return f"""
[[models]]
slug = "TinyESRGAN"
name = "TinyESRGAN"
inference_types = {list(esrgan_types)}
backend = "rrdbnet"
vram_bytes = {TILE_RESERVE}
source = {{ path = "{transform_models['esrgan']}" }}
price = {{ formula = "megapixels", rates = {{ per_megapixel = 0.002 }} }}
[models.info.limits]
max_width = 256
max_height = 256

[[models]]
slug = "TinyBen2"
name = "TinyBen2"
inference_types = {list(ben2_types)}
backend = "ben2"
vram_bytes = 10_000_000
source = {{ path = "{transform_models['ben2']}" }}
price = {{ formula = "megapixels", rates = {{ per_megapixel = 0.0005 }} }}
[models.info.limits]
max_width = 512
max_height = 512
"""


@pytest.fixture
def api_transforms(settings, transform_models):
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(tiny_models_config(transform_models))
    with running_api(settings) as api:
        yield api


def image_bytes(width: int, height: int, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(3)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def run(api, route: str, data: bytes, model: str, filename: str = "in.png") -> dict:
    response = api.post(route, files={"image": (filename, data, "image/png")}, data={"model": model})
    assert response.status_code == 200, response.json()
    return api.wait(response.json()["data"]["request_id"], timeout=120)


def result_image(api, status: dict) -> Image.Image:
    response = api.client.get(status["result_url"].split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------- img-upscale
def test_upscale_is_four_times_the_input_and_seamless(api_transforms, transform_models):
    source = image_bytes(80, 50)
    seen = []

    async def record(event):
        seen.append(event)

    api_transforms.engine.events.subscribe(record)
    status = run(api_transforms, "img-upscale", source, "TinyESRGAN")
    assert status["status"] == "done", status
    upscaled = result_image(api_transforms, status)
    assert upscaled.format == "PNG" and upscaled.size == (320, 200) and upscaled.mode == "RGB"
    # Six 32 px tiles, each reported; stitched with context margins they match one whole-image pass.
    eventually(lambda: any(e.status == "done" for e in seen))
    assert len([e for e in seen if e.status == "in_progress"]) == 6
    network = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    network.load_state_dict(torch.load(transform_models["esrgan"])["params_ema"])
    with torch.inference_mode():
        pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(source)))).permute(2, 0, 1)[None].float() / 255
        whole = (network(pixels).clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    assert psnr(np.asarray(upscaled), whole) > 45


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_upscale_keeps_alpha_and_greyscale(api_transforms, mode):
    status = run(api_transforms, "img-upscale", image_bytes(40, 24, mode), "TinyESRGAN")
    upscaled = result_image(api_transforms, status)
    assert upscaled.size == (160, 96) and upscaled.mode == mode


def test_upscale_422s(api_transforms):
    too_big = api_transforms.post("img-upscale", files={"image": ("big.png", image_bytes(300, 20), "image/png")}, data={"model": "TinyESRGAN"})
    assert too_big.status_code == 422 and "image" in too_big.json()["errors"]
    not_an_image = api_transforms.post("img-upscale", files={"image": ("x.png", b"not a png", "image/png")}, data={"model": "TinyESRGAN"})
    assert not_an_image.status_code == 422 and "image" in not_an_image.json()["errors"]
    missing = api_transforms.post("img-upscale", data={"model": "TinyESRGAN"})
    assert missing.status_code == 422 and "image" in missing.json()["errors"]


# ---------------------------------------------------------------- img-rmbg
def upstream_ben2_alpha(network: BEN2, image: Image.Image, size: int) -> np.ndarray:
    """The alpha channel as PramaLLC/BEN2's ``BEN2.py`` makes it (``rgb_loader_refiner``, ``img_transform32``,
    ``postprocess_image``), written out from upstream rather than taken from drylocal's ``predict_mask``.
    The one step not here, ImageNet normalization, is inside this port's ``forward``."""
    resized = image.convert("RGB").resize((size, size), resample=Image.LANCZOS)
    x = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float().div(255).unsqueeze(0)  # ToTensor
    with torch.no_grad():
        result = network(x)
    result = torch.squeeze(torch.nn.functional.interpolate(result, size=[image.height, image.width], mode="bilinear"), 0)
    ma, mi = torch.max(result), torch.min(result)
    result = (result - mi) / (ma - mi)
    return np.squeeze((result * 255).permute(1, 2, 0).numpy().astype(np.uint8)).astype(int)


def test_background_removal_gives_a_transparent_png_with_the_models_mask(api_transforms, transform_models):
    source = image_bytes(203, 131)
    status = run(api_transforms, "img-rmbg", source, "TinyBen2")
    assert status["status"] == "done", status
    cut = result_image(api_transforms, status)
    assert cut.mode == "RGBA" and cut.size == (203, 131)
    original = Image.open(io.BytesIO(source))
    assert np.array_equal(np.asarray(cut)[..., :3], np.asarray(original))
    network = BEN2(**BEN2_TINY)
    network.load_state_dict(torch.load(transform_models["ben2"])["model_state_dict"])
    alpha = np.asarray(cut.getchannel("A"))
    assert (alpha.min(), alpha.max()) == (0, 255)  # upstream stretches every mask to the full range
    # Off by one at most: the server and this recipe may round a pixel's float32 sum differently.
    assert np.abs(alpha.astype(int) - upstream_ben2_alpha(network.eval(), original, 384)).max() <= 1


def test_background_removal_422s(api_transforms):
    response = api_transforms.post("img-rmbg", files={"image": ("a.txt", b"hello", "text/plain")}, data={"model": "TinyBen2"})
    assert response.status_code == 422 and "image" in response.json()["errors"]


def test_ben2_without_weights_names_how_to_get_them(api_transforms):
    response = api_transforms.post("img-rmbg", files={"image": ("a.png", image_bytes(32, 32), "image/png")}, data={"model": "Ben2"})
    assert response.status_code == 422
    message = first_message(response)
    assert "Ben2" in message and "drylocal pull Ben2" in message


def test_packaged_realesrgan_upscales_for_real(settings, tmp_path_factory):
    from model_registry.embedded import provision_embedded

    store = tmp_path_factory.mktemp("packaged-esrgan")
    weights = provision_embedded(store, only=("RealESRGAN_x4plus",))["RealESRGAN_x4plus"]
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "RealESRGAN_x4plus").symlink_to(weights.parent)
    gradient = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    source = Image.fromarray(np.stack([gradient, gradient.T, np.full_like(gradient, 90)], -1), "RGB")
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    with running_api(settings) as api:
        models = {m["slug"]: m for m in api.get("models", params={"per_page": 100}).json()["data"]}
        assert models["RealESRGAN_x4plus"]["installed"] and models["RealESRGAN_x4plus"]["available"]
        status = run(api, "img-upscale", buffer.getvalue(), "RealESRGAN_x4plus")
        upscaled = result_image(api, status)
    assert upscaled.size == (192, 192)
    # Real weights reproduce a smooth gradient closely; random ones would not come near it.
    bicubic = source.resize((192, 192), Image.Resampling.BICUBIC)
    assert psnr(np.asarray(upscaled), np.asarray(bicubic)) > 25
