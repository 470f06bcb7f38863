"""The same frames give the same file: the encoders' output hangs on nothing but their input.

Each encode runs in a process of its own with glibc's MALLOC_PERTURB_ set, which fills every block malloc
hands out with a given byte. An encoder that reads memory it never wrote then writes another file under
another byte, as x264's macroblock tree did on AVX-512 CPUs (its AVX-512 code is only taken there, so on a
CPU without it this test cannot tell)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENCODE = """
import hashlib, io, json
from fractions import Fraction
import av
import numpy as np
from engine.tasks._video import encode_mp4
from engine.tasks._video_frames import H264_MP4, VP9_ALPHA_WEBM, VideoWriter

rng = np.random.default_rng(0)
frames = rng.integers(0, 255, size=(12, 272, 480, 3), dtype=np.uint8)
frames[:, 100:140, :200] = (250, 240, 30)
tone = (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)[None]
files = {"generated": encode_mp4(frames, 24, audio=tone, audio_rate=16000)}
for fmt, pixels in ((H264_MP4, frames), (VP9_ALPHA_WEBM, np.concatenate([frames, frames[..., :1]], -1))):
    writer = VideoWriter(fmt, 480, 272, Fraction(24))
    writer.write(pixels)
    files[fmt.codec] = writer.close()
# WebM's muxer gives every file random segment and track ids, so its packets stand for it.
with av.open(io.BytesIO(files.pop("libvpx-vp9"))) as container:
    files["vp9 packets"] = b"".join(bytes(packet) for packet in container.demux(video=0))
print(json.dumps({name: hashlib.sha256(data).hexdigest() for name, data in files.items()}))
"""


def encoded_under(perturb: int) -> dict[str, str]:
    env = {**os.environ, "MALLOC_PERTURB_": str(perturb)}
    out = subprocess.run([sys.executable, "-c", ENCODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_same_frames_encode_to_the_same_file_whatever_the_heap_held():
    first, second = encoded_under(1), encoded_under(200)
    assert set(first) == {"generated", "libx264", "vp9 packets"}
    assert first == second
