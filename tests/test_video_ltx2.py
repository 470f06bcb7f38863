"""LTX-2 end to end on a tiny random-weight pipeline: video with its soundtrack (txt2video, img2video)
and aud2video, where a given soundtrack is held fixed and carried by the MP4."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch

from tests.conftest import running_api
from tests.ltx2_checkpoint import build_tiny_ltx2
from tests.test_video import assert_frames_follow_their_images, fetch, finished, png, video_facts
from tests.user_models import model_entry, register_models

BODY = {"prompt": "a robot dancing", "model": "TinyLtx2", "width": 64, "height": 32, "frames": 12, "fps": 24, "steps": 2, "seed": 4}


@pytest.fixture(scope="module")
def tiny_ltx2(tmp_path_factory) -> Path:
    return build_tiny_ltx2(tmp_path_factory.mktemp("tiny-ltx2") / "ltx2")


@pytest.fixture
def api_ltx2(settings, tiny_ltx2):
    register_models(
        settings,
        model_entry(
            "TinyLtx2", ["txt2video", "img2video", "aud2video"], "diffusers-ltx2", tiny_ltx2,
            {"formula": "video_seconds", "rates": {"per_second_256": 0.0017, "reference_steps": 8}},
            limits={"min_width": 32, "max_width": 128, "min_height": 32, "max_height": 128, "resolution_step": 32,
                    "min_steps": 1, "max_steps": 8, "min_frames": 5, "max_frames": 24, "min_fps": 24, "max_fps": 24},
            features={"supports_guidance": True, "supports_negative_prompt": True, "supports_steps": True,
                      "supports_last_frame": True},
            defaults={"fps": 24, "steps": 2, "guidance": 1.0},
        ),
    )
    with running_api(settings) as api:
        yield api


def frame_rate(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        return float(container.streams.video[0].average_rate)


def audio_track(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.audio, "the MP4 has no audio stream"
        stream = container.streams.audio[0]
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(stream)], axis=1)
        return samples, stream.rate


def tone(hz: float, seconds: float, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_txt2video_carries_the_generated_soundtrack(api_ltx2):
    status = finished(api_ltx2, api_ltx2.post("txt2video", json=BODY))
    data = fetch(api_ltx2, status["result_url"])
    assert video_facts(data) == ("h264", 64, 32, 12) and frame_rate(data) == 24
    samples, _ = audio_track(data)
    assert samples.shape[0] == 2 and samples.shape[1] > 0


def test_img2video_first_and_last_frames_steer_the_video_toward_their_images(api_ltx2):
    body = {**BODY, "frames": 9}
    finished(api_ltx2, api_ltx2.post("txt2video", json=body))  # loads the model the hooks attach to
    assert_frames_follow_their_images(api_ltx2, "TinyLtx2", body, keyframe_tokens_first=False)


def test_last_frame_is_placed_at_the_last_latent_frame(tiny_ltx2):
    """LTX-2 reads a condition's index in latent frames; a pixel index past them is silently dropped."""
    from diffusers import LTX2Pipeline
    from PIL import Image

    from engine.tasks._video_generation import _frame_conditions
    from model_registry import LoadedModel

    model = LoadedModel(spec=None, handle=LTX2Pipeline.from_pretrained(tiny_ltx2), device="cpu", memory_bytes=0, precision="fp32")
    image = Image.new("RGB", (64, 32))
    _, conditions = _frame_conditions(model, [image], [image], (64, 32), 17)
    assert [c.index for c in conditions] == [0, -1]


def test_aud2video_muxes_the_given_soundtrack_for_the_videos_length(api_ltx2):
    data = {k: str(v) for k, v in {**BODY, "frames": 24}.items()}
    files = {"audio": ("tone.wav", tone(440, 3.0), "audio/wav"), "first_frame_image": ("a.png", png((0, 255, 0)), "image/png")}
    status = finished(api_ltx2, api_ltx2.post("aud2video", data=data, files=files))
    result = fetch(api_ltx2, status["result_url"])
    assert video_facts(result) == ("h264", 64, 32, 24) and frame_rate(result) == 24
    samples, rate = audio_track(result)
    assert abs(samples.shape[1] / rate - 1.0) < 0.1  # one second of video: one second of its soundtrack
    spectrum = np.abs(np.fft.rfft(samples[0]))
    assert abs(np.argmax(spectrum) * rate / samples.shape[1] - 440) < 10  # the given tone, not generated sound


def test_aud2video_needs_audio_and_an_ltx2_model(api_ltx2):
    data = {k: str(v) for k, v in BODY.items()}
    response = api_ltx2.post("aud2video", data=data)
    assert response.status_code == 422 and "audio" in response.json()["errors"]


def test_the_soundtrack_stays_exactly_as_given_while_the_video_is_denoised(tiny_ltx2, tmp_path):
    from diffusers import LTX2Pipeline

    from engine.tasks._ltx2 import holding_audio_fixed, soundtrack_latents

    pipe = LTX2Pipeline.from_pretrained(tiny_ltx2)
    (tmp_path / "tone.wav").write_bytes(tone(300, 1.0))
    given, _ = soundtrack_latents(pipe, tmp_path / "tone.wav", 9 / 24)
    kwargs = dict(prompt="a cat", width=32, height=32, num_frames=9, frame_rate=24, num_inference_steps=3,
                  guidance_scale=1.0, max_sequence_length=16, output_type="latent", audio_latents=given,
                  generator=torch.Generator().manual_seed(0))
    with holding_audio_fixed(pipe):
        held = pipe(**kwargs).audio
    free = pipe(**kwargs).audio
    assert torch.allclose(held, given, atol=1e-5)
    assert not torch.allclose(free, given, atol=1e-3)  # without the hooks LTX-2 rewrites the audio


def test_mel_filters_are_slaney_normalized_triangles():
    from engine.tasks._ltx2 import mel_filters

    filters = mel_filters(16000, 1024, 64)
    assert filters.shape == (64, 513) and (filters >= 0).all()
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # ordered from low to high frequencies
    hz_per_bin = 8000 / 512
    areas = filters.sum(axis=1) * hz_per_bin
    assert np.allclose(areas[8:], 1.0, rtol=0.1)  # unit area (Slaney); the narrowest low filters are undersampled


def test_previews_read_the_middle_latent_frame_not_the_packed_tokens(tiny_ltx2):
    from diffusers import LTX2Pipeline

    from engine.tasks._video_generation import _video_latents

    pipe = LTX2Pipeline.from_pretrained(tiny_ltx2)
    frames, rows, cols = 3, 2, 4  # 17 frames of 128x64 under 8x time and 32x space compression
    packed = torch.randn(1, frames * rows * cols + 5, 8)  # 5 keyframe tokens appended by a condition
    unpacked = _video_latents(17, (128, 64))(pipe, packed)
    assert unpacked.shape == (1, 8, frames, rows, cols)
    assert torch.equal(unpacked[0, :, 0, 0, 0], packed[0, 0])


def test_a_distilled_model_runs_its_trained_sigmas_at_its_step_count(settings, tiny_ltx2):
    """LTX-2 distilled was trained on 8 given sigmas; the scheduler's own spacing at 8 steps is another schedule."""
    sigmas = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]
    register_models(
        settings,
        model_entry(
            "TinyLtx2Dist", ["txt2video"], "diffusers-ltx2", tiny_ltx2,
            {"formula": "video_seconds", "rates": {"per_second_256": 0.0017, "reference_steps": 8}},
            limits={"min_width": 32, "max_width": 128, "min_height": 32, "max_height": 128, "resolution_step": 32,
                    "min_steps": 1, "max_steps": 8, "min_frames": 5, "max_frames": 24, "min_fps": 24, "max_fps": 24},
            features={"supports_guidance": True, "supports_steps": True},
            defaults={"fps": 24, "steps": 8, "guidance": 1.0},
            sigmas=sigmas,
        ),
    )
    with running_api(settings) as api:
        body = {**BODY, "model": "TinyLtx2Dist", "steps": 8, "frames": 5}
        finished(api, api.post("txt2video", json=body))
        (resident,) = api.engine.worker._resident.values()
        scheduler = resident.loaded.handle.scheduler  # the schedule of its last run stays on it
        ran = [scheduler.sigmas[:-1].tolist()]
        finished(api, api.post("txt2video", json={**body, "steps": 4}))
        ran.append(scheduler.sigmas[:-1].tolist())
    assert ran[0] == pytest.approx(sigmas)
    assert ran[1] == pytest.approx([1.0, 0.75, 0.5, 0.25])  # 4 steps: the pipeline's own even spacing
