"""Wan2.2-Animate's replacement mode: the person in a video swapped for the character of a reference image.

diffusers' WanAnimatePipeline (``mode="replace"``) takes, beside the reference image and the prompt, four
videos that Wan's own preprocessing makes (Wan-Video/Wan2.2, wan/modules/animate/preprocess/
process_pipepline.py) with YOLO and ViTPose whole-body detectors and SAM2. None of them ships in a package
this project can install, so each is derived here from the video alone:

- ``mask_video`` (white = generate): upstream, SAM2's person mask dilated and filled to its bounding box
  (``get_aug_mask`` with ``w_len = h_len = 1``, the README's setting), so a box. Here too a box per frame,
  around a matte: the ``matte`` callable's (e.g. a background-removal model's alpha), else what moves
  against the clip's median frame, which is a still camera's background. Widened like upstream's dilation,
  steadied over five frames; a frame where nothing is found takes its nearest neighbour's box, and a clip
  where nothing is found at all is regenerated whole.
- ``background_video``: each frame with that box blacked out, as upstream (``frame * (1 - mask)``).
- ``pose_video``: upstream draws the ViTPose skeleton on black. Without keypoints, black frames: the drawing
  of no keypoint. The body's motion then comes from the mask and the background around it alone.
- ``face_video``: upstream crops the face from the whole-body keypoints to 512 x 512 for the motion encoder.
  Without landmarks, black frames: the pipeline's own "no face" input (its unconditional pass blanks the face
  to -1, black), so expressions are the model's, not the video's. A guessed crop would drive the motion
  encoder with whatever it cut out.

Long videos run in segments of SEGMENT_FRAMES frames, each continuing from the last frame of the one before
(upstream's ``refert_num = 1``); a short clip runs as one segment of its own length (4k + 1 frames). The result
keeps the video's frame times (up to MAX_FPS) and its soundtrack.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from engine.errors import JobFailure
from engine.tasks._images import latent_preview, seeded_generator
from engine.tasks._video_frames import H264_MP4, VideoWriter, frame_batches, read_video

__all__ = (
    "DEFAULT_PROMPT",
    "MAX_FPS",
    "SEGMENT_FRAMES",
    "ReplacementInputs",
    "generation_size",
    "person_boxes",
    "read_frames",
    "replace_character",
    "replacement_inputs",
    "segment_length",
)

SEGMENT_FRAMES = 77
"""Frames a segment generates: upstream's ``frame_num`` (wan/configs/wan_animate_14B.py) and the pipeline's default."""
MAX_FPS = 30.0
"""Upstream's ``sample_fps``, the rate its preprocessing resamples every video to: faster videos keep every second
(third...) frame here."""
DEFAULT_PROMPT = "视频中的人在做动作"
"""Upstream's animate prompt ("the person in the video is moving", its config's ``prompt``), when none is given."""
_SIZE_STEP = 16
"""The pipeline takes sides divisible by 16 (the VAE's 8 x the transformer's 2 x 2 patches)."""
_MOTION_SIDE = 160
"""The long side the motion matte is computed at: small enough to be quick, large enough for a person."""
_MOTION_THRESHOLD = 24
"""Difference to the median frame (0-255, on any channel) that counts as motion, above compression noise."""
_MIN_COVER = 0.002
"""A matte covering less of the frame than this is noise, not a person."""
_MARGIN = 0.02
"""Widening of the box on each side, in frame sides: upstream dilates SAM2's mask 3 times by a 7 x 7 kernel."""

Matte = Callable[[Any], Any]
"""An RGB PIL frame -> an "L" image, white where the person is (a background-removal model's alpha)."""


@dataclass(frozen=True)
class ReplacementInputs:
    """The four videos WanAnimatePipeline's replacement mode takes, as lists of PIL images."""

    pose: list
    face: list
    background: list
    mask: list


def generation_size(width: int | None, height: int | None, source: tuple[int, int]) -> tuple[int, int]:
    """The size the pipeline generates at: the requested one, else the video's, to the nearest multiple of 16."""
    w, h = (width, height) if width and height else source
    return tuple(max(_SIZE_STEP, round(side / _SIZE_STEP) * _SIZE_STEP) for side in (w, h))  # type: ignore[return-value]


def segment_length(frames: int, temporal: int = 4) -> int:
    """Frames of one segment: the clip's own length rounded up to 4k + 1, at most SEGMENT_FRAMES."""
    return min(SEGMENT_FRAMES, max(1, math.ceil((frames - 1) / temporal)) * temporal + 1)


def _segments(frames: int, segment: int, overlap: int = 1) -> int:
    """How many segments the pipeline runs for ``frames`` (its own arithmetic, step 2 of ``__call__``)."""
    effective = segment - overlap
    rest = (frames - overlap) % effective
    return (frames + (effective - rest if rest else 0)) // effective


def read_frames(video: Path, size: tuple[int, int], rate: Fraction) -> tuple[list, list[Fraction], Fraction]:
    """The video's frames, upright, as RGB PIL images cropped to fill ``size``, their times, and their rate:
    at most MAX_FPS (``rate`` is the video's own)."""
    import av
    from PIL import Image, ImageOps

    keep_every = max(1, math.ceil(rate / Fraction(MAX_FPS)))
    frames, times, index = [], [], 0
    try:
        for batch in frame_batches(video, 16):
            for pixels, time in zip(batch.pixels, batch.times):
                if index % keep_every == 0:
                    frames.append(ImageOps.fit(Image.fromarray(pixels), size, Image.Resampling.LANCZOS))
                    times.append(time)
                index += 1
    except av.FFmpegError as exc:
        raise JobFailure("INVALID_INPUT", f"The video could not be read: {exc}") from exc
    return frames, times, rate / keep_every


def _moving_regions(frames: list) -> list:
    """Per frame, where it differs from the clip's median frame (a still camera's background), at a small scale."""
    import numpy as np
    from PIL import Image, ImageFilter

    width, height = frames[0].size
    scale = min(1.0, _MOTION_SIDE / max(width, height))
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    stack = np.stack([np.asarray(f.resize(small, Image.Resampling.BILINEAR), dtype=np.int16) for f in frames])
    moving = np.abs(stack - np.median(stack, axis=0)).max(axis=-1) > _MOTION_THRESHOLD
    # An opening drops the specks that noise and compression leave, keeping the regions a body makes.
    opened = []
    for mask in moving:
        image = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
        opened.append(np.asarray(image) > 0)
    return opened


def _box(mask, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The widened bounding box, in ``size`` pixels, of a boolean mask of any scale; None where it is empty."""
    import numpy as np

    if mask.mean() < _MIN_COVER:
        return None
    rows, cols = np.nonzero(mask)
    sy, sx = size[1] / mask.shape[0], size[0] / mask.shape[1]
    margin = _MARGIN * max(size)
    return (
        max(0, math.floor(cols.min() * sx - margin)),
        max(0, math.floor(rows.min() * sy - margin)),
        min(size[0], math.ceil((cols.max() + 1) * sx + margin)),
        min(size[1], math.ceil((rows.max() + 1) * sy + margin)),
    )


def person_boxes(frames: list, matte: Matte | None = None) -> list[tuple[int, int, int, int]]:
    """Per frame, the (left, top, right, bottom) box the character is regenerated in."""
    import numpy as np

    size = frames[0].size
    if matte is not None:
        masks = [np.asarray(matte(frame).convert("L")) >= 128 for frame in frames]
    else:
        masks = _moving_regions(frames)
    found = [_box(mask, size) for mask in masks]
    known = [i for i, box in enumerate(found) if box is not None]
    if not known:
        return [(0, 0, *size)] * len(frames)
    filled = np.array([found[min(known, key=lambda k: abs(k - i))] for i in range(len(found))], dtype=float)
    # A centred running median over up to five frames steadies the box's jitter without lagging behind a move.
    reach = [min(2, i, len(filled) - 1 - i) for i in range(len(filled))]
    steady = [np.median(filled[i - r : i + r + 1], axis=0) for i, r in enumerate(reach)]
    return [tuple(int(round(v)) for v in box) for box in steady]  # type: ignore[misc]


def replacement_inputs(frames: list, boxes: list[tuple[int, int, int, int]], face_side: int = 512) -> ReplacementInputs:
    """The pipeline's four videos from the frames and the character's box in each (see the module docstring)."""
    from PIL import Image, ImageDraw

    size = frames[0].size
    masks, backgrounds = [], []
    for frame, box in zip(frames, boxes):
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
        background = frame.copy()
        background.paste((0, 0, 0), box=box)
        masks.append(mask)
        backgrounds.append(background)
    pose = [Image.new("RGB", size)] * len(frames)
    face = [Image.new("RGB", (face_side, face_side))] * len(frames)
    return ReplacementInputs(pose=pose, face=face, background=backgrounds, mask=masks)


class _StepProgress:
    """``callback_on_step_end`` over every step of every segment: progress, and a preview every few steps."""

    def __init__(self, progress: Callable[..., None], total: int, size: tuple[int, int], previews: int = 4) -> None:
        self.progress, self.total, self.size = progress, max(1, total), size
        self.every = max(1, math.ceil(self.total / previews))
        self.done = 0

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        self.done += 1
        preview = None
        latents = callback_kwargs.get("latents")
        if latents is not None and (self.done % self.every == 0 or self.done == self.total):
            preview = latent_preview(latents, *self.size)
        # The last 1 % is each segment's decode and the MP4: "done" is the worker's to report.
        self.progress(99.0 * min(self.done, self.total) / self.total, preview)
        return callback_kwargs


def replace_character(
    pipe,
    *,
    video: Path,
    ref_image: Path,
    prompt: str | None,
    width: int | None,
    height: int | None,
    steps: int,
    seed: int,
    progress: Callable[..., None],
    matte: Matte | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """The MP4 (H.264, at the video's rate up to MAX_FPS, with its sound) of ``video`` with its person replaced
    by the character of ``ref_image``, and its facts. ``width``/``height`` None: the video's size (as displayed).
    ``seed`` -1: a random one."""
    import numpy as np
    from PIL import Image, ImageOps

    probe = read_video(video)
    source = (probe.width, probe.height)
    size = generation_size(width, height, source)
    frames, times, fps = read_frames(video, size, probe.fps)
    if len(frames) < 2:
        raise JobFailure("INVALID_INPUT", "The video must hold at least two frames.")
    try:
        with Image.open(ref_image) as image:
            reference = ImageOps.exif_transpose(image).convert("RGB")
    except OSError as exc:
        raise JobFailure("INVALID_INPUT", f"The reference image could not be read: {exc}") from exc
    boxes = person_boxes(frames, matte)
    inputs = replacement_inputs(frames, boxes, int(pipe.transformer.config.motion_encoder_size))
    segment = segment_length(len(frames), pipe.vae_scale_factor_temporal)
    reporter = _StepProgress(progress, _segments(len(frames), segment) * steps, size)
    seed = seed if seed >= 0 else random.randint(0, 2**32 - 1)
    try:
        output = pipe(
            image=reference,
            pose_video=inputs.pose,
            face_video=inputs.face,
            background_video=inputs.background,
            mask_video=inputs.mask,
            prompt=prompt or DEFAULT_PROMPT,
            width=size[0],
            height=size[1],
            segment_frame_length=segment,
            num_inference_steps=steps,
            mode="replace",
            guidance_scale=1.0,  # upstream's default: no classifier-free guidance, one pass a step
            generator=seeded_generator(seed),
            output_type="np",
            callback_on_step_end=reporter,
        )
    except ValueError as exc:  # the pipeline's own checks on sizes and inputs
        raise JobFailure("INVALID_INPUT", str(exc)) from exc
    pixels = (np.clip(output.frames[0], 0, 1) * 255).round().astype(np.uint8)
    wanted = (width, height) if width and height else source
    if wanted != size:  # a side that is no multiple of 16 was generated at the nearest one
        pixels = np.stack([np.asarray(Image.fromarray(f).resize(wanted, Image.Resampling.LANCZOS)) for f in pixels])
    with VideoWriter(H264_MP4, *wanted, fps, audio_from=video) as writer:
        writer.write(pixels, times[: len(pixels)])
        data = writer.close()
    meta = {
        "seed": seed,
        "frames": len(pixels),
        "fps": float(fps),
        "width": writer.width,  # H.264 takes even sides: an odd one loses its last row or column
        "height": writer.height,
        "segments": _segments(len(frames), segment),
        "mask_source": "matte" if matte is not None else "motion",
    }
    return data, meta
