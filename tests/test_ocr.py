"""img2txt end to end on the embedded PP-OCRv4 models: a rendered invoice is read back."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from engine.tasks.img2txt import lines_of
from tests.conftest import first_message


def rendered(lines: list[str]) -> bytes:
    font = ImageFont.load_default(size=32)  # Pillow's built-in font: no system fonts needed
    image = Image.new("RGB", (640, 70 * len(lines) + 40), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((24, 24 + 70 * index), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def run(api, data: dict, image: bytes) -> dict:
    response = api.post("img2txt", files={"image": ("scan.png", image, "image/png")}, data=data)
    assert response.status_code == 200, response.json()
    return api.wait(response.json()["data"]["request_id"], timeout=120)


def squash(text: str) -> str:
    return "".join(text.split()).lower()


def test_text_is_read_line_by_line(api):
    status = run(api, {"model": "PP_OCRv4", "return_result_in_response": "1"}, rendered(["INVOICE 2041", "Total 318.50 USD"]))
    assert status["status"] == "done", status
    lines = status["result"].splitlines()
    assert len(lines) == 2
    assert squash(lines[0]) == "invoice2041" and squash(lines[1]) == "total318.50usd"


def test_json_format_has_blocks_with_boxes(api):
    status = run(api, {"model": "PP_OCRv4", "format": "json", "return_result_in_response": "1"}, rendered(["Hello drylocal"]))
    body = json.loads(status["result"])
    assert squash(body["text"]) == "hellodrylocal"
    (block,) = body["blocks"]
    left, top, right, bottom = block["box"]
    assert 0 <= left < right and 0 <= top < bottom and 0.5 < block["confidence"] <= 1


def test_result_url_serves_the_text(api):
    status = run(api, {"model": "PP_OCRv4", "return_result_in_response": "0"}, rendered(["plain words"]))
    assert status["result"] is None
    response = api.client.get(status["result_url"].split("127.0.0.1:8000", 1)[1])
    assert response.headers["content-type"].startswith("text/plain") and squash(response.text) == "plainwords"


@pytest.mark.parametrize("data, image, field", [
    ({"model": "PP_OCRv4", "format": "xml"}, rendered(["x"]), "format"),
    ({"model": "PP_OCRv4"}, b"not an image", "image"),
    ({"model": "PP_OCRv4"}, None, "image"),
])
def test_bad_ocr_requests_are_422(api, data, image, field):
    files = {"image": ("scan.png", image, "image/png")} if image is not None else None
    response = api.post("img2txt", files=files, data=data)
    assert response.status_code == 422 and field in response.json()["errors"]


def test_lines_are_grouped_by_vertical_overlap():
    blocks = [
        {"text": "world", "box": [60, 0, 100, 20]},
        {"text": "next", "box": [0, 30, 40, 50]},
        {"text": "hello", "box": [0, 2, 50, 22]},
    ]
    assert lines_of(blocks) == ["hello world", "next"]


# ---------------------------------------------------------------- a vision-language OCR model
@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory):
    from tests.vlm_checkpoint import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-vlm") / "vlm")


@pytest.fixture
def api_vlm(settings, tiny_vlm):
    from tests.conftest import running_api

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(
        f"""
[[models]]
slug = "TinyNanonets"
name = "TinyNanonets"
inference_types = ["img2txt"]
backend = "transformers-vlm"
vram_bytes = 10_000_000
source = {{ path = "{tiny_vlm}" }}
price = {{ formula = "ocr_characters", rates = {{ per_1k_chars_1024 = 0.00928 }} }}
[models.info.limits]
min_width = 32
max_width = 4096
min_height = 32
max_height = 4096
max_image_pixels = 25_088
[models.info.defaults]
format = "text"
max_new_tokens = 12
"""
    )
    with running_api(settings) as api:
        yield api


def noise_page(width: int = 300, height: int = 200) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_vision_language_model_reads_through_the_same_route(api_vlm):
    form = {"model": "TinyNanonets", "format": "json", "return_result_in_response": "1"}
    status = run(api_vlm, form, rendered(["Hello"]))
    assert status["status"] == "done", status
    body = json.loads(status["result"])
    # Random weights write random tokens, but some, within the budget, and as one block per line.
    assert body["text"].strip() and body["blocks"]
    assert all(set(block) == {"text"} and block["text"].strip() for block in body["blocks"])
    job = api_vlm.engine.jobs.get(status["result_url"].split("/results/", 1)[1].split("/", 1)[0])
    assert job.meta["characters"] == len(body["text"])
    # What random weights can show: the page conditions the answer (greedy decoding: same page, same
    # answer; another page, another answer).
    assert json.loads(run(api_vlm, form, rendered(["Hello"]))["result"])["text"] == body["text"]
    assert json.loads(run(api_vlm, form, noise_page())["result"])["text"] != body["text"]


def test_vision_language_pages_are_capped_in_pixels(api_vlm):
    """A 4096 x 4096 page would be 21,000 visual tokens at Qwen2.5-VL's own ceiling; the row's
    ``max_image_pixels`` (here half the tiny checkpoint's own ceiling) bounds what the tower sees."""
    from PIL import Image

    from model_registry.loaders.transformers_vlm import load

    spec = api_vlm.engine.registry.get("TinyNanonets")
    reader = load(spec, api_vlm.engine.registry.require_runnable(spec), "cpu").handle
    images = reader.processor.image_processor
    encoded = images(images=[Image.new("RGB", (4096, 4096), "white")], return_tensors="pt")
    pixels = int(encoded["image_grid_thw"][0].prod()) * images.patch_size**2
    assert 25_088 * 0.5 < pixels <= 25_088  # resized to multiples of 28 px a side


def test_nanonets_loads_in_bf16_on_a_gpu(api):
    """fp16 makes Qwen2.5-VL write garbage, whatever the F16 in the slug says."""
    from model_registry.loaders.sentence_transformers import _model_kwargs

    assert _model_kwargs(api.engine.registry.get("Nanonets_Ocr_S_F16"), "cuda:0")[1] == "bf16"


def test_nanonets_without_weights_names_how_to_get_them(api):
    response = api.post("img2txt", files={"image": ("scan.png", rendered(["x"]), "image/png")}, data={"model": "Nanonets_Ocr_S_F16"})
    assert response.status_code == 422
    assert "drylocal pull Nanonets_Ocr_S_F16" in first_message(response)
