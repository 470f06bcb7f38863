"""txt2img and img2img end to end on tiny random-weight diffusers pipelines of every served family."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

# Imported, not tried: a builder that fails to import fails this module, never drops its family's cases.
from tests import flux_checkpoint, image_checkpoints
from tests.conftest import eventually, running_api

FAMILIES = {
    # slug: (builder, inference types, features, extra limits)
    "TinyFlux": (flux_checkpoint.build_tiny_flux, ["txt2img"], {"supports_guidance": False, "supports_negative_prompt": False}, {}),
    "TinyKlein": (image_checkpoints.build_tiny_flux2_klein, ["txt2img", "img2img"], {"supports_guidance": False, "supports_negative_prompt": False}, {"max_input_images": 3}),
    "TinyZImage": (image_checkpoints.build_tiny_zimage, ["txt2img"], {"supports_guidance": True, "supports_negative_prompt": True}, {}),
    "TinyQwenEdit": (image_checkpoints.build_tiny_qwen_image_edit_plus, ["img2img"], {"supports_guidance": True, "supports_negative_prompt": True}, {"max_input_images": 1}),
}
TXT2IMG = [slug for slug, family in FAMILIES.items() if "txt2img" in family[1]]
IMG2IMG = [slug for slug, family in FAMILIES.items() if "img2img" in family[1]]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.fixture(scope="session")
def image_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-models")
    paths = {slug: builder(root / slug) for slug, (builder, *_) in FAMILIES.items()}
    paths["lora"] = flux_checkpoint.build_tiny_flux_lora(paths["TinyFlux"], root / "loras" / "style.safetensors")
    return paths


@pytest.fixture
def api_images(settings, image_models):
    lines = []
    for slug, (_, types, features, limits) in FAMILIES.items():
        lines += [
            "[[models]]",
            f'slug = "{slug}"',
            f'name = "{slug}"',
            f"inference_types = {toml_value(types)}",
            'backend = "diffusers"',
            "vram_bytes = 10_000_000",
            f'source = {{ path = "{image_models[slug]}" }}',
            'price = { formula = "image_steps", rates = { per_step_512 = 0.00034 } }',
        ]
        if slug == "TinyFlux":
            lines.append(f'loras = [{{ name = "style", display_name = "Style", source = {{ path = "{image_models["lora"]}" }} }}]')
        lines += ["[models.info.limits]", "min_width = 32", "max_width = 256", "min_height = 32", "max_height = 256",
                  "resolution_step = 16", "min_steps = 1", "max_steps = 8"]
        lines += [f"{k} = {toml_value(v)}" for k, v in limits.items()]
        lines += ["[models.info.features]", *[f"{k} = {toml_value(v)}" for k, v in features.items()]]
        lines += ["[models.info.defaults]", "steps = 2", "guidance = 1.0"]
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text("\n".join(lines) + "\n")
    with running_api(settings) as api:
        yield api


def png_bytes(width=48, height=40, color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def fetch(api, url: str) -> bytes:
    response = api.client.get(url.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 200
    return response.content


def run(api, route: str, **kwargs) -> dict:
    response = api.post(route, **kwargs)
    assert response.status_code == 200, response.json()
    return api.wait(response.json()["data"]["request_id"], timeout=120)


def txt2img(api, model, **params) -> dict:
    body = {"prompt": "a red cat", "model": model, "width": 64, "height": 48, "seed": 7, "steps": 2, **params}
    return run(api, "txt2img", json=body)


@pytest.mark.parametrize("model", TXT2IMG)
def test_txt2img_returns_a_png_of_the_requested_size(api_images, model):
    status = txt2img(api_images, model, width=70, height=50)  # rounded to resolution_step 16: 64x48
    assert status["status"] == "done", status
    image = Image.open(io.BytesIO(fetch(api_images, status["result_url"])))
    assert image.format == "PNG" and image.size == (64, 48)
    assert set(status["results_alt_formats"]) == {"jpg", "webp"}
    assert Image.open(io.BytesIO(fetch(api_images, status["results_alt_formats"]["webp"]))).format == "WEBP"


@pytest.mark.parametrize("model", TXT2IMG)
def test_same_seed_same_image_other_seed_other_image(api_images, model):
    first = fetch(api_images, txt2img(api_images, model, seed=11)["result_url"])
    again = fetch(api_images, txt2img(api_images, model, seed=11)["result_url"])
    other = fetch(api_images, txt2img(api_images, model, seed=12)["result_url"])
    assert first == again and first != other


def test_random_seed_is_recorded_and_reproduces_the_image(api_images):
    status = txt2img(api_images, "TinyFlux", seed=-1)
    request_id = status["result_url"].split("/results/", 1)[1].split("/", 1)[0]
    job = api_images.engine.jobs.get(request_id)
    seed = job.params["seed"]
    assert 0 <= seed < 2**32 and job.meta["seed"] == seed
    again = txt2img(api_images, "TinyFlux", seed=seed)
    assert fetch(api_images, status["result_url"]) == fetch(api_images, again["result_url"])


def test_progress_and_previews_are_reported(api_images):
    events = []

    async def record(event):
        events.append(event)

    api_images.engine.events.subscribe(record)
    status = txt2img(api_images, "TinyFlux", steps=4)
    eventually(lambda: any(e.status == "done" for e in events))
    progress = [e.progress for e in events if e.status == "in_progress"]
    assert len(progress) == 4 and progress == sorted(progress)
    previews = [e.preview for e in events if e.preview]
    assert previews
    preview = Image.open(io.BytesIO(base64.b64decode(previews[-1])))
    assert preview.format == "JPEG" and max(preview.size) <= 256
    assert status["preview"]


def test_lora_is_applied_and_removed(api_images):
    base = fetch(api_images, txt2img(api_images, "TinyFlux")["result_url"])
    transformer = api_images.engine.worker._resident["TinyFlux"].loaded.handle.transformer
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    styled = txt2img(api_images, "TinyFlux", loras=[{"name": "style", "weight": 1.0}])
    assert styled["status"] == "done", styled
    assert fetch(api_images, styled["result_url"]) != base
    after = transformer.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert fetch(api_images, txt2img(api_images, "TinyFlux")["result_url"]) == base


def test_unknown_lora_is_422(api_images):
    response = api_images.post("txt2img", json={"prompt": "x", "model": "TinyFlux", "width": 64, "height": 64,
                                                "seed": 1, "loras": [{"name": "nope", "weight": 1}]})
    assert response.status_code == 422 and "loras" in response.json()["errors"]


def test_models_endpoint_lists_loras(api_images):
    models = {m["slug"]: m for m in api_images.get("models", params={"per_page": 50}).json()["data"]}
    assert models["TinyFlux"]["loras"] == [{"display_name": "Style", "name": "style"}]


@pytest.mark.parametrize("model", IMG2IMG)
def test_img2img_edits_one_image_at_its_size(api_images, model):
    status = run(api_images, "img2img", data={"prompt": "make it blue", "model": model, "steps": 2, "seed": 3},
                 files={"image": ("in.png", png_bytes(64, 48))})
    assert status["status"] == "done", status
    assert Image.open(io.BytesIO(fetch(api_images, status["result_url"]))).size == (64, 48)


@pytest.mark.skipif("TinyKlein" not in FAMILIES, reason="needs the FLUX.2 klein builder")
def test_img2img_takes_several_images_and_an_explicit_size(api_images):
    files = [("images[]", ("a.png", png_bytes(64, 64))), ("images[]", ("b.png", png_bytes(32, 32, (0, 0, 255))))]
    status = run(api_images, "img2img", data={"prompt": "combine", "model": "TinyKlein", "steps": 2, "seed": 3,
                                              "width": 96, "height": 64}, files=files)
    assert status["status"] == "done", status
    assert Image.open(io.BytesIO(fetch(api_images, status["result_url"]))).size == (96, 64)


@pytest.mark.parametrize(
    ("model", "files", "field"),
    [
        ("QwenImageEdit_Plus_NF4", [("images[]", ("a.png", png_bytes())), ("images[]", ("b.png", png_bytes()))], "images"),
        ("Flux_2_Klein_4B_BF16", [("image", ("a.png", png_bytes())), ("images[]", ("b.png", png_bytes()))], "image"),
        ("Flux_2_Klein_4B_BF16", [("images[]", ("a.png", png_bytes()))] * 4, "images"),
        ("Flux_2_Klein_4B_BF16", [], "image"),
        ("Flux_2_Klein_4B_BF16", [("image", ("a.gif", b"GIF89a-not-really"))], "image"),
        ("Flux_2_Klein_4B_BF16", [("image", ("a.png", b"0" * (10 * 1024 * 1024 + 1)))], "image"),
        ("TinyFlux", [("image", ("a.png", png_bytes()))], "model"),
    ],
)
def test_img2img_bad_inputs_are_422(api_images, model, files, field):
    response = api_images.post("img2img", data={"prompt": "x", "model": model, "steps": 4, "seed": 1}, files=files or None)
    assert response.status_code == 422
    assert field in set(response.json()["errors"])


# ---------------------------------------------------------------- on a GPU (DRYLOCAL_TEST_GPU=1)
@pytest.mark.gpu
def test_tiny_flux_runs_on_cuda_in_bf16_through_the_api(settings, tmp_path):
    from tests.user_models import register_models, tiny_flux_entry

    register_models(settings, tiny_flux_entry(flux_checkpoint.build_tiny_flux(tmp_path / "flux")))
    with running_api(settings) as api:
        assert api.engine.worker.budget.device == "cuda:0"
        status = txt2img(api, "TinyFlux", width=64, height=48, steps=2)
        assert status["status"] == "done", status
        image = Image.open(io.BytesIO(fetch(api, status["result_url"])))
        assert image.size == (64, 48) and image.getextrema() != ((0, 0), (0, 0), (0, 0))
        (loaded,) = [r.loaded for slug, r in api.engine.worker._resident.items() if slug == "TinyFlux"]
        assert loaded.device == "cuda:0" and loaded.precision == "bf16"
        transformer = loaded.handle.transformer
        assert next(transformer.parameters()).device == torch.device("cuda", 0)
        assert next(transformer.parameters()).dtype == torch.bfloat16
        again = fetch(api, txt2img(api, "TinyFlux", width=64, height=48, steps=2)["result_url"])
        assert again == fetch(api, status["result_url"])  # same seed, same image on the GPU too
