"""txt2video and img2video end to end on a tiny random-weight LTX-Video pipeline."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import eventually, running_api
from tests.video_checkpoint import build_tiny_ltx


@pytest.fixture(scope="session")
def tiny_ltx(tmp_path_factory) -> Path:
    return build_tiny_ltx(tmp_path_factory.mktemp("tiny-ltx") / "ltx")


@pytest.fixture
def api_video(settings, tiny_ltx):
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(
        f"""
[[models]]
slug = "TinyLtx"
name = "TinyLtx"
inference_types = ["txt2video", "img2video"]
backend = "diffusers-ltx"
vram_bytes = 10_000_000
source = {{ path = "{tiny_ltx}" }}
price = {{ formula = "video_seconds", rates = {{ per_second_256 = 0.0008685, reference_steps = 1 }} }}
[models.info.limits]
min_width = 32
max_width = 128
min_height = 32
max_height = 128
resolution_step = 32
min_steps = 1
max_steps = 8
min_frames = 5
max_frames = 24
min_fps = 24
max_fps = 24
[models.info.features]
supports_guidance = false
supports_negative_prompt = true
supports_steps = true
supports_last_frame = true
[models.info.defaults]
fps = 24
steps = 2
"""
    )
    with running_api(settings) as api:
        yield api


def png(color, size=(64, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def video_facts(data: bytes) -> tuple[str, int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, stream.width, stream.height, frames


def fetch(api, url: str) -> bytes:
    return api.client.get(url.split("127.0.0.1:8000", 1)[1]).content


def finished(api, response) -> dict:
    assert response.status_code == 200, response.json()
    status = api.wait(response.json()["data"]["request_id"], timeout=120)
    assert status["status"] == "done", (status.get("error_code"), status.get("error_message"))
    return status


def test_txt2video_is_an_h264_mp4_with_the_requested_frames_and_size(api_video):
    events = []

    async def record(event):
        events.append(event)

    api_video.engine.events.subscribe(record)
    body = {"prompt": "waves", "model": "TinyLtx", "width": 64, "height": 32, "frames": 12, "fps": 24, "steps": 2, "seed": 4}
    status = finished(api_video, api_video.post("txt2video", json=body))
    assert video_facts(fetch(api_video, status["result_url"])) == ("h264", 64, 32, 12)
    eventually(lambda: any(e.status == "done" for e in events))
    assert [e.progress for e in events if e.status == "in_progress"] == [49.5, 99.0]
    assert any(e.preview for e in events)


def test_a_model_without_guidance_runs_each_step_once(api_video):
    """LTX-Video distilled takes no guidance; the pipeline's default of 3 would double every step."""
    body = {"prompt": "waves", "model": "TinyLtx", "width": 32, "height": 32, "frames": 9, "fps": 24, "steps": 2, "seed": 8}
    finished(api_video, api_video.post("txt2video", json=body))  # loads the model
    (resident,) = [r for slug, r in api_video.engine.worker._resident.items() if slug == "TinyLtx"]
    batches = []
    hook = resident.loaded.handle.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        finished(api_video, api_video.post("txt2video", json=body))
    finally:
        hook.remove()
    assert batches == [1, 1]


def test_same_seed_same_video(api_video):
    body = {"prompt": "waves", "model": "TinyLtx", "width": 32, "height": 32, "frames": 9, "fps": 24, "steps": 1, "seed": 8}
    first = fetch(api_video, finished(api_video, api_video.post("txt2video", json=body))["result_url"])
    again = fetch(api_video, finished(api_video, api_video.post("txt2video", json=body))["result_url"])
    assert first == again


@dataclass
class Observed:
    """One generation seen from inside: the latents handed to the VAE decoder, the transformer's input at
    its last step, and the decoded frames."""

    latents: torch.Tensor
    tokens: torch.Tensor
    frames: list[np.ndarray]


def observe(api, slug: str, route: str, **request) -> Observed:
    (resident,) = [r for name, r in api.engine.worker._resident.items() if name == slug]
    pipe = resident.loaded.handle
    decoded, tokens = [], []
    hooks = [
        pipe.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].detach().clone())),
        pipe.transformer.register_forward_pre_hook(
            lambda module, args, kwargs: tokens.append(kwargs["hidden_states"].detach().clone()), with_kwargs=True
        ),
    ]
    try:
        status = finished(api, api.post(route, **request))
    finally:
        for hook in hooks:
            hook.remove()
    with av.open(io.BytesIO(fetch(api, status["result_url"]))) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]
    (latents,) = decoded
    return Observed(latents, tokens[-1], frames)


def still_latent(api, slug: str, color, size: tuple[int, int]) -> torch.Tensor:
    """The model's own VAE encoding of a still image of ``color``: (channels, height, width) latents."""
    (resident,) = [r for name, r in api.engine.worker._resident.items() if name == slug]
    width, height = size
    pixels = torch.tensor(color, dtype=torch.float32).div(127.5).sub(1).view(1, 3, 1, 1, 1).expand(1, 3, 1, height, width)
    with torch.no_grad():
        return resident.loaded.handle.vae.encode(pixels.contiguous()).latent_dist.mode()[0, :, 0]


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def assert_frames_follow_their_images(api, slug: str, body: dict, keyframe_tokens_first: bool) -> None:
    """First and last frames, each against the same request (same seed) without it.

    A first frame is hard-conditioned in place: the latent frame the VAE decodes first becomes the image's
    encoding. A last frame enters as keyframe tokens added to the transformer's input (before the video's
    tokens in LTX-Video, after them in LTX-2; only trained attention carries them into the video), so what
    random weights can show is that those tokens are the image's encoding and that the decoded last frame
    changes."""
    red, blue = (255, 0, 0), (0, 0, 255)
    data = {k: str(v) for k, v in body.items()}
    size = (body["width"], body["height"])
    free = observe(api, slug, "txt2video", json=body)
    first = observe(api, slug, "img2video", data=data, files={"first_frame_image": ("a.png", png(red, size), "image/png")})
    both = observe(api, slug, "img2video", data=data, files={
        "first_frame_image": ("a.png", png(red, size), "image/png"), "last_frame_image": ("b.png", png(blue, size), "image/png")})
    assert (len(both.frames), *both.frames[0].shape) == (body["frames"], body["height"], body["width"], 3)

    red_latent = still_latent(api, slug, red, size)
    assert distance(first.latents[0, :, 0], red_latent) < distance(free.latents[0, :, 0], red_latent) / 4
    assert not np.array_equal(first.frames[0], free.frames[0])

    blue_tokens = still_latent(api, slug, blue, size).flatten(1).T  # packed as the transformer reads them
    extra = both.tokens.shape[1] - first.tokens.shape[1]
    assert extra == blue_tokens.shape[0]  # one latent frame more: the keyframe
    keyframe = both.tokens[0, :extra] if keyframe_tokens_first else both.tokens[0, -extra:]
    generated = first.tokens[0, -extra:]  # the last latent frame, as the run without a last frame made it
    assert distance(keyframe, blue_tokens) < distance(generated, blue_tokens) / 4
    assert not np.array_equal(both.frames[-1], first.frames[-1])


def test_img2video_first_and_last_frames_steer_the_video_toward_their_images(api_video):
    body = {"prompt": "red to blue", "model": "TinyLtx", "width": 64, "height": 32, "frames": 9, "fps": 24, "steps": 2, "seed": 2}
    finished(api_video, api_video.post("txt2video", json=body))  # loads the model the hooks attach to
    assert_frames_follow_their_images(api_video, "TinyLtx", body, keyframe_tokens_first=True)


@pytest.mark.parametrize("extra, field", [({"frames": 200}, "frames"), ({"fps": 30}, "fps"), ({"width": 1000}, "width")])
def test_bad_video_requests_are_422(api_video, extra, field):
    body = {"prompt": "waves", "model": "TinyLtx", "width": 64, "height": 32, "frames": 9, "fps": 24, "steps": 2, "seed": 4, **extra}
    response = api_video.post("txt2video", json=body)
    assert response.status_code == 422 and field in response.json()["errors"]


def test_img2video_needs_a_first_frame(api_video):
    response = api_video.post("img2video", data={"prompt": "x y z", "model": "TinyLtx", "width": "64", "height": "32", "frames": "9", "fps": "24", "seed": "1"})
    assert response.status_code == 422 and "first_frame_image" in response.json()["errors"]


def test_a_condition_pipeline_run_resets_the_loaded_pipelines_offload_hooks(api_video):
    """Offloaded by component, the loaded pipeline's hooks send the last component it ran back to RAM at the end
    of a call; a first-frame job runs a condition pipeline over the same components, which must do the same."""
    body = {"prompt": "waves", "model": "TinyLtx", "width": 32, "height": 32, "frames": 9, "fps": 24, "steps": 1, "seed": 8}
    finished(api_video, api_video.post("txt2video", json=body))  # loads the model
    (resident,) = [r for slug, r in api_video.engine.worker._resident.items() if slug == "TinyLtx"]
    resets = []
    pipe = resident.loaded.handle
    pipe.maybe_free_model_hooks = lambda: resets.append("reset")
    try:
        finished(api_video, api_video.post("txt2video", json=body))
        assert resets == ["reset"]  # the loaded pipeline's own call ends with it
        files = {"first_frame_image": ("first.png", png((200, 30, 30)), "image/png")}
        finished(api_video, api_video.post("img2video", data={**body, "frames": "9"}, files=files))
        assert resets == ["reset", "reset"]
    finally:
        del pipe.maybe_free_model_hooks
