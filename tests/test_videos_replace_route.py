"""videos/replace through the API as the SDK calls it (multipart, ``/price`` beside it), on a tiny
random-weight Wan2.2-Animate pipeline served under the catalog's own backend."""

from __future__ import annotations

import io
from decimal import ROUND_CEILING, Decimal

import av
import pytest

from tests.conftest import first_message, running_api
from tests.test_wan_animate import build_tiny_wan_animate, moving_square, portrait, write_video

PER_SECOND_256 = 0.0068


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    return build_tiny_wan_animate(tmp_path_factory.mktemp("tiny-wan-route") / "wan")


@pytest.fixture
def api_replace(settings, tiny_wan):
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(
        f"""
[[models]]
slug = "TinyWanAnimate"
name = "TinyWanAnimate"
inference_types = ["video-replace"]
backend = "diffusers"
vram_bytes = 50_000_000
source = {{ path = "{tiny_wan}" }}
price = {{ formula = "video_seconds", rates = {{ per_second_256 = {PER_SECOND_256}, reference_steps = 4 }} }}
[models.info.limits]
min_width = 16
max_width = 64
min_height = 16
max_height = 64
resolution_step = 16
min_steps = 1
max_steps = 8
max_video_duration_seconds = 10
[models.info.features]
supports_guidance = false
supports_negative_prompt = false
[models.info.defaults]
steps = 2
"""
    )
    with running_api(settings) as api:
        yield api


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_video(tmp_path_factory.mktemp("replace-clip") / "clip.mp4", moving_square(5), 24, sound=True).read_bytes()


def png(color) -> bytes:
    buffer = io.BytesIO()
    portrait(color).save(buffer, "PNG")
    return buffer.getvalue()


def files(clip: bytes) -> dict:
    return {"video": ("clip.mp4", clip, "video/mp4"), "ref_image": ("ref.png", png((220, 30, 30)), "image/png")}


def test_the_sdk_call_gives_an_mp4_of_the_clip_with_the_character(api_replace, clip):
    # The SDK sends everything as multipart strings, width and height together, seed -1 for "any".
    data = {"model": "TinyWanAnimate", "prompt": "a person walking", "width": "32", "height": "32", "seed": "-1"}
    response = api_replace.post("videos/replace", files=files(clip), data=data)
    assert response.status_code == 200, response.json()
    status = api_replace.wait(response.json()["data"]["request_id"], timeout=300)
    assert status["status"] == "done", status
    video = api_replace.client.get(status["result_url"].split("127.0.0.1:8000", 1)[1])
    assert video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert len(frames) == 5 and (frames[0].width, frames[0].height) == (32, 32)
        assert container.streams.audio  # the clip's sound is kept


def test_width_and_height_come_together(api_replace, clip):
    response = api_replace.post("videos/replace", files=files(clip), data={"model": "TinyWanAnimate", "width": "32"})
    assert response.status_code == 422
    assert first_message(response) == "The height field is required when width is present."


def test_the_price_route_is_price_and_takes_the_video_or_its_duration(api_replace, clip):
    def expected(seconds: float, side: int, steps: int = 2) -> float:
        exact = Decimal(str(PER_SECOND_256)) * side * side / (256 * 256) * Decimal(str(seconds)) * steps / 4
        return float(exact.quantize(Decimal("0.000001"), rounding=ROUND_CEILING))

    by_duration = api_replace.post("videos/replace/price", data={"model": "TinyWanAnimate", "duration": "4", "width": "64", "height": "64"})
    assert by_duration.status_code == 200, by_duration.json()
    assert by_duration.json()["data"]["price"] == expected(4, 64)
    by_video = api_replace.post("videos/replace/price", files={"video": ("clip.mp4", clip, "video/mp4")},
                                data={"model": "TinyWanAnimate", "width": "32", "height": "32"})
    assert by_video.json()["data"]["price"] == pytest.approx(expected(5 / 24, 32), abs=2e-6)
    neither = api_replace.post("videos/replace/price", data={"model": "TinyWanAnimate"})
    assert neither.status_code == 422 and "duration" in first_message(neither)
    assert api_replace.post("videos/replace/price-calculation", data={"model": "TinyWanAnimate"}).status_code == 404


def test_a_video_longer_than_the_model_takes_is_refused(api_replace):
    response = api_replace.post("videos/replace/price", data={"model": "TinyWanAnimate", "duration": "11"})
    assert response.status_code == 422 and "at most 10 seconds" in first_message(response)


def test_a_video_smaller_than_the_model_takes_is_generated_at_its_smallest_size(api_replace, tmp_path):
    small = write_video(tmp_path / "small.mp4", [frame.resize((8, 6)) for frame in moving_square(3)], 24).read_bytes()
    response = api_replace.post("videos/replace/price", files={"video": ("small.mp4", small, "video/mp4")},
                                data={"model": "TinyWanAnimate"})
    assert response.status_code == 200, response.json()
    # 8x6 scaled up to the 16-pixel minimum: 21x16, rounded to the 16-pixel step.
    job = api_replace.post("videos/replace", files={"video": ("small.mp4", small, "video/mp4"),
                                                    "ref_image": ("r.png", png((1, 2, 3)), "image/png")},
                           data={"model": "TinyWanAnimate"})
    assert job.status_code == 200, job.json()
    params = api_replace.engine.jobs.get(job.json()["data"]["request_id"]).params
    assert (params["width"], params["height"]) == (16, 16)
