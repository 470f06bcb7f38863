"""The inputs a family's jobs upload, generated: pictures with some structure, and speech.

Speech is the project's Piper voice (tests/media_files.py) reading one paragraph, once per inputs folder, then
repeated to any length; a machine without Piper (the device machine has no espeak-ng) is given that paragraph's
file (scripts/gpu_kit.sh prepares it).
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

from scripts.gpu_kit.families import Image, Job, Speech

__all__ = ("SPEECH_SOURCE", "materialise", "speech_source")

ROOT = Path(__file__).resolve().parents[2]
SPEECH_SOURCE = "speech-source.wav"

_PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. A local inference server answers the same requests as the hosted "
    "service. It schedules every job by the memory it needs, and it never loses a job it accepted."
)


def _png(image: Image) -> bytes:
    """A smooth colour field with a disc on it: something a matting or upscaling network can chew on."""
    import numpy as np
    from PIL import Image as PILImage

    y, x = np.mgrid[0 : image.height, 0 : image.width].astype(np.float32)
    r = 127 + 120 * np.sin(x / max(1, image.width) * 6.28)
    g = 127 + 120 * np.cos(y / max(1, image.height) * 6.28)
    b = 255 * ((x - image.width / 2) ** 2 + (y - image.height / 2) ** 2 < (min(image.width, image.height) / 3) ** 2)
    buffer = io.BytesIO()
    PILImage.fromarray(np.stack([r, g, b], -1).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _partial(target: Path) -> Path:
    """Written beside, then renamed: families running side by side share the inputs folder."""
    return target.with_name(f".{target.stem}.{os.getpid()}{target.suffix}")


def speech_source(inputs: Path) -> Path:
    target = inputs / SPEECH_SOURCE
    if not target.is_file():
        # In a child process: onnxruntime's idle threads would otherwise spin beside the work being timed.
        code = ("import sys; from pathlib import Path; from tests.media_files import piper_speech, wav_bytes; "
                "s, r = piper_speech(sys.argv[1]); Path(sys.argv[2]).write_bytes(wav_bytes(s, r))")
        inputs.mkdir(parents=True, exist_ok=True)
        partial = _partial(target)
        subprocess.run([sys.executable, "-c", code, _PARAGRAPH, str(partial)], cwd=ROOT, check=True,
                       capture_output=True)
        partial.rename(target)
    return target


def _speech(inputs: Path, seconds: float) -> Path:
    target = inputs / f"speech-{seconds:g}s.wav"
    if not target.is_file():
        import numpy as np
        import soundfile

        samples, rate = soundfile.read(str(speech_source(inputs)), dtype="float32")
        paragraph = np.concatenate([samples, np.zeros(int(0.4 * rate), np.float32)])
        repeats = math.ceil(seconds * rate / len(paragraph))
        partial = _partial(target)
        soundfile.write(str(partial), np.tile(paragraph, repeats)[: int(seconds * rate)], rate, subtype="PCM_16")
        partial.rename(target)
    return target


def materialise(job: Job, own: Path, shared: Path) -> list[tuple[str, Path]]:
    """(form field, file) of each upload of ``job``: pictures in the family's ``own`` folder, speech ``shared``."""
    files = []
    for index, (field_name, what) in enumerate(job.uploads):
        if isinstance(what, Speech):
            files.append((field_name, _speech(shared, what.seconds)))
        else:
            path = own / f"image-{what.width}x{what.height}-{index}.png"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_png(what))
            files.append((field_name, path))
    return files
