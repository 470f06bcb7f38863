"""vid-upscale and vid-rmbg through the API, as the SDK and the MCP server call them, on tiny
random-weight RRDBNet and BEN2 checkpoints: the job, its price, its progress and what it refuses."""

from __future__ import annotations

import io

import av
import pytest

from tests.conftest import eventually, first_message, running_api
from tests.test_transforms import tiny_models_config, transform_models  # noqa: F401  (the session fixture)
from tests.test_video_transform import FRAMES, HEIGHT, WIDTH, make_video

PER_MEGAPIXEL = 0.002


@pytest.fixture
def api_videos(settings, transform_models):  # noqa: F811
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(tiny_models_config(transform_models, ("vid-upscale",), ("vid-rmbg",)))
    with running_api(settings) as api:
        yield api


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4").read_bytes()


def submit(api, route: str, video: bytes, model: str, name: str = "clip.mp4") -> dict:
    response = api.post(route, files={"video": (name, video, "video/mp4")}, data={"model": model})
    assert response.status_code == 200, response.json()
    status = api.wait(response.json()["data"]["request_id"], timeout=180)
    assert status["status"] == "done", status
    return status


def download(api, url: str) -> tuple[bytes, str]:
    response = api.client.get(url.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 200
    return response.content, response.headers["content-type"]


def streams(data: bytes) -> dict[str, tuple]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "size": (video.codec_context.width, video.codec_context.height),
            "frames": frames,
            "audio": bool(container.streams.audio),
            "codec": video.codec_context.name,
        }


def test_vid_upscale_gives_a_four_times_larger_mp4_with_every_frame_and_the_sound(api_videos, clip):
    seen = []

    async def record(event):
        seen.append(event)

    api_videos.engine.events.subscribe(record)
    status = submit(api_videos, "vid-upscale", clip, "TinyESRGAN")
    data, content_type = download(api_videos, status["result_url"])
    assert content_type == "video/mp4"
    found = streams(data)
    assert found["size"] == (WIDTH * 4, HEIGHT * 4) and found["frames"] == FRAMES and found["audio"]
    assert found["codec"] == "h264"
    # Progress comes frame by frame, never backwards.
    eventually(lambda: any(e.status == "done" for e in seen))
    progress = [e.progress for e in seen if e.status == "in_progress"]
    assert len(progress) == FRAMES and progress == sorted(progress)


def test_vid_upscale_is_priced_per_frame_as_its_image_task_per_megapixel(api_videos, clip):
    from decimal import ROUND_CEILING, Decimal

    def expected(frames: int, width: int = WIDTH, height: int = HEIGHT) -> float:
        exact = Decimal(str(PER_MEGAPIXEL)) * width * height / 1_000_000 * frames
        return float(exact.quantize(Decimal("0.000001"), rounding=ROUND_CEILING))

    by_file = api_videos.post("vid-upscale/price-calculation", files={"video": ("clip.mp4", clip, "video/mp4")},
                              data={"model": "TinyESRGAN"})
    assert by_file.json()["data"]["price"] == expected(FRAMES)
    # The SDK's and the MCP server's quote: width and height alone price one second at 24 frames.
    by_size = api_videos.post("vid-upscale/price-calculation", json={"model": "TinyESRGAN", "width": 1920, "height": 1080})
    assert by_size.json()["data"]["price"] == expected(24, 1920, 1080)
    longer = api_videos.post("vid-upscale/price-calculation",
                             json={"model": "TinyESRGAN", "width": 1920, "height": 1080, "duration": 10})
    assert longer.json()["data"]["price"] == expected(240, 1920, 1080)
    neither = api_videos.post("vid-upscale/price-calculation", json={"model": "TinyESRGAN"})
    assert neither.status_code == 422 and "video" in neither.json()["errors"]


def test_vid_upscale_refuses_what_it_could_not_encode_with_the_numbers(api_videos, tmp_path):
    wide = make_video(tmp_path / "wide.mp4", audio=None, width=2100, height=16, frames=2).read_bytes()
    response = api_videos.post("vid-upscale", files={"video": ("wide.mp4", wide, "video/mp4")}, data={"model": "TinyESRGAN"})
    assert response.status_code == 422
    message = first_message(response)
    assert "2100x16" in message and "8400x64" in message and "8192" in message


def test_vid_upscale_refuses_what_is_not_a_video_and_what_is_too_large(api_videos):
    junk = api_videos.post("vid-upscale", files={"video": ("clip.mp4", b"not a video", "video/mp4")},
                           data={"model": "TinyESRGAN"})
    assert junk.status_code == 422 and "decoded" in first_message(junk)
    huge = api_videos.post("vid-upscale", files={"video": ("clip.mp4", b"\0" * (10 * 1024 * 1024 + 1), "video/mp4")},
                           data={"model": "TinyESRGAN"})
    assert huge.status_code == 422 and "10240 kilobytes" in first_message(huge)
    wrong_model = api_videos.post("vid-upscale", files={"video": ("clip.mp4", b"x", "video/mp4")}, data={"model": "TinyBen2"})
    assert wrong_model.status_code == 422 and "does not support Video Upscale" in first_message(wrong_model)


def test_vid_rmbg_gives_a_webm_with_alpha_and_the_matte_as_an_mp4(api_videos, clip):
    status = submit(api_videos, "vid-rmbg", clip, "TinyBen2")
    data, content_type = download(api_videos, status["result_url"])
    assert content_type == "video/webm"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        # FFmpeg's native VP9 decoder drops alpha; libvpx keeps it.
        context = av.CodecContext.create("libvpx-vp9", "r")
        context.extradata = stream.codec_context.extradata
        first = next(frame for packet in container.demux(stream) for frame in context.decode(packet))
        assert first.format.name == "yuva420p"
        assert bool(container.streams.audio)
    matte, matte_type = download(api_videos, status["results_alt_formats"]["matte.mp4"])
    assert matte_type == "video/mp4"
    found = streams(matte)
    assert found["frames"] == FRAMES and found["codec"] == "h264" and not found["audio"]


def test_the_new_video_routes_are_mcp_tools(api_videos):
    from server.mcp import TOOLS

    assert TOOLS["video_upscale"].name == "vid-upscale" and TOOLS["video_remove_background"].name == "vid-rmbg"
