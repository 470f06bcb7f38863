"""Wan2.2-Animate's replacement mode on a tiny random-weight WanAnimatePipeline, loaded through the diffusers
loader with the catalog's own row: the MP4 it writes, and the inputs derived from the video."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.tasks._video import encode_mp4
from engine.tasks._video_frames import read_video
from engine.tasks._wan_animate import person_boxes, read_frames, replace_character, replacement_inputs
from model_registry.catalog import builtin_specs
from model_registry.loaders.diffusers import load
from tests.flux_checkpoint import _t5_tokenizer

SLUG = "Wan2_2_Animate_14B_INT8"


def build_tiny_wan_animate(target: Path, seed: int = 0) -> Path:
    """WanAnimatePipeline with the real classes, sized like diffusers' own pipeline test (two blocks, a 3-channel
    Wan VAE, a 16-pixel motion encoder), a tiny UMT5 encoder and CLIP vision tower."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanAnimatePipeline, WanAnimateTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    transformer = WanAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=12, in_channels=36, latent_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, image_dim=4, added_kv_proj_dim=24, rope_max_seq_len=32,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16}, motion_encoder_size=16, motion_style_dim=8,
        motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16, face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
    )
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=4, intermediate_size=16,
        patch_size=1,
    ))
    pipe = WanAnimatePipeline(
        tokenizer=_t5_tokenizer(), text_encoder=text_encoder, vae=vae, image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=4, size=4), transformer=transformer,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
    )
    pipe.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    """The tiny checkpoint loaded as the catalog row says, on the CPU."""
    folder = build_tiny_wan_animate(tmp_path_factory.mktemp("tiny-wan-animate") / "wan")
    spec = next(spec for spec in builtin_specs() if spec.slug == SLUG)
    return load(spec, folder, "cpu")


SIZE = (48, 32)
SIDE = 8


def square_at(index: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the moving square in frame ``index``."""
    return 4 + 3 * index, 12, 4 + 3 * index + SIDE, 12 + SIDE


def moving_square(frames: int):
    """A still, textured background with a bright square crossing it left to right."""
    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
    out = []
    for index in range(frames):
        frame = background.copy()
        left, top, right, bottom = square_at(index)
        frame[top:bottom, left:right] = (250, 240, 30)
        out.append(Image.fromarray(frame))
    return out


def write_video(path: Path, frames, fps: float, sound: bool = False) -> Path:
    """An H.264 MP4 of ``frames``; with ``sound``, a 440 Hz tone as long as the pictures beside them."""
    audio = None
    if sound:
        samples = np.arange(round(16_000 * len(frames) / fps)) / 16_000
        audio = (0.3 * np.sin(2 * np.pi * 440 * samples)).astype(np.float32)[None]
    path.write_bytes(encode_mp4(frames, fps, audio=audio, audio_rate=16_000 if sound else None))
    return path


def portrait(color) -> Image.Image:
    image = Image.new("RGB", (24, 32), color)
    image.paste((255 - color[0], 255 - color[1], 255 - color[2]), (6, 4, 18, 16))
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", moving_square(5), 24, sound=True)


@pytest.fixture(scope="module")
def ref_images(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("refs")
    red, blue = folder / "red.png", folder / "blue.png"
    portrait((220, 30, 30)).save(red)
    portrait((30, 30, 220)).save(blue)
    return red, blue


def decoded(data: bytes) -> tuple[list[np.ndarray], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate)


def has_sound(data: bytes) -> bool:
    with av.open(io.BytesIO(data)) as container:
        return bool(container.streams.audio)


def run(wan, clip: Path, ref: Path, seed: int = 7, progress=lambda *a: None, width=32, height=32):
    return replace_character(
        wan.handle, video=clip, ref_image=ref, prompt="a person walking", width=width, height=height, steps=2,
        seed=seed, progress=progress,
    )


@pytest.fixture(scope="module")
def red_run(wan, clip, ref_images):
    """One run with the red reference at 32 x 32, seed 7: (MP4 bytes, meta, progress reports)."""
    reports = []
    data, meta = run(wan, clip, ref_images[0], progress=lambda pct, preview=None: reports.append((pct, preview)))
    return data, meta, reports


# ---------------------------------------------------------------- the run
def test_the_mp4_keeps_the_frames_and_rate_of_the_input_at_the_requested_size(red_run):
    data, meta, _ = red_run
    frames, fps = decoded(data)
    assert len(frames) == 5 and fps == 24
    assert frames[0].shape == (32, 32, 3)
    assert meta == {"seed": 7, "frames": 5, "fps": 24.0, "width": 32, "height": 32, "segments": 1, "mask_source": "motion"}


def test_the_video_keeps_its_soundtrack(red_run):
    assert has_sound(red_run[0])


def test_progress_rises_with_every_step_and_previews_the_latents(red_run):
    reports = red_run[2]
    assert [pct for pct, _ in reports] == [49.5, 99.0]
    assert reports[-1][1][:2] == b"\xff\xd8"  # a JPEG


def test_the_reference_image_changes_the_video(wan, clip, ref_images, red_run):
    red = np.stack(decoded(red_run[0])[0]).astype(int)
    blue = np.stack(decoded(run(wan, clip, ref_images[1])[0])[0]).astype(int)
    assert np.abs(red - blue).mean() > 0.5  # 1.4 here; the same inputs give 0 (the seed test)


def test_the_same_seed_gives_the_same_video(wan, clip, ref_images, red_run):
    # The very file: the pipeline is deterministic on the CPU and so is the encoder (see test_video_encoding).
    assert run(wan, clip, ref_images[0])[0] == red_run[0]


def test_another_seed_gives_another_video(wan, clip, ref_images, red_run):
    other = np.stack(decoded(run(wan, clip, ref_images[0], seed=8)[0])[0]).astype(int)
    assert np.abs(other - np.stack(decoded(red_run[0])[0]).astype(int)).mean() > 0.5  # 1.8 here


def test_without_a_size_the_video_keeps_its_own(wan, clip, ref_images):
    frames, _ = decoded(run(wan, clip, ref_images[0], width=None, height=None)[0])
    assert frames[0].shape == (32, 48, 3)


# ---------------------------------------------------------------- the derived inputs
def test_a_video_over_30_fps_keeps_every_second_frame(tmp_path):
    fast = write_video(tmp_path / "fast.mp4", moving_square(10), 60)
    frames, times, fps = read_frames(fast, SIZE, read_video(fast).fps)
    assert (len(frames), fps) == (5, 30) and times[1] == Fraction(2, 60)


def test_the_box_covers_what_moves_against_the_still_background():
    for index, (left, top, right, bottom) in enumerate(person_boxes(moving_square(9))):
        square = square_at(index)
        assert left <= square[0] and top <= square[1] and right >= square[2] and bottom >= square[3]
        assert (right - left) * (bottom - top) < 0.3 * SIZE[0] * SIZE[1]


def test_a_matte_decides_the_box_when_given():
    frames = moving_square(5)

    def matte(frame):
        mask = Image.new("L", frame.size, 0)
        mask.paste(255, (30, 4, 44, 28))
        return mask

    assert all(28 <= box[0] <= 30 and box[2] >= 44 and box[1] <= 4 for box in person_boxes(frames, matte))


def test_the_background_is_the_frame_with_the_box_blacked_out_and_the_mask_is_the_box():
    frames = moving_square(3)
    inputs = replacement_inputs(frames, [(10, 8, 30, 28)] * 3, face_side=16)
    background, mask = np.asarray(inputs.background[0]), np.asarray(inputs.mask[0])
    assert (background[8:28, 10:30] == 0).all() and (background[:8] == np.asarray(frames[0])[:8]).all()
    assert (mask[8:28, 10:30] == 255).all() and mask.sum() == 255 * 20 * 20
    assert inputs.face[0].size == (16, 16) and not np.asarray(inputs.pose[0]).any()


def test_a_clip_where_nothing_moves_is_regenerated_whole():
    still = [moving_square(1)[0]] * 4
    assert person_boxes(still) == [(0, 0, *SIZE)] * 4
