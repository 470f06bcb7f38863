"""The raw library calls drylocal's API is timed against: the very model drylocal loaded (same weights, precision
and placement), called directly in this process, with the same request, no HTTP, no job, no task pipeline.
Each returns the mean seconds of ``repeat`` calls after one warm-up call, synchronised with the device.

- diffusers: the pipeline called with the job's prompt, size, steps and seed, its image encoded as PNG (what a
  job returns; drylocal also writes JPEG and WebP beside it, which is part of what is measured).
- faster-whisper: the same ``WhisperModel``, batched on a GPU, sequential with VAD on a CPU, decoding options as
  engine/tasks/_transcription.py has them, on the decoded audio.
- sentence-transformers: ``encode`` of the job's texts, 32 at a time.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any, Callable

from scripts.gpu_kit.families import Job
from scripts.gpu_kit.probes import DeviceProbe

__all__ = ("DIRECT",)


def _timed(call: Callable[[], Any], repeat: int, probe: DeviceProbe) -> float:
    call()  # warm-up, as the API side's warm-up job
    times = []
    for _ in range(repeat):
        probe.sync()
        started = time.perf_counter()
        call()
        probe.sync()
        times.append(time.perf_counter() - started)
    return statistics.mean(times)


def diffusers_direct(loaded, job: Job, files: dict, probe: DeviceProbe) -> float:
    import torch

    pipe, spec, fields = loaded.handle, loaded.spec, job.fields
    # A distilled model without guidance runs without it, as drylocal's diffusion_kwargs has it.
    guidance = {} if spec.feature("supports_guidance", True) else {"guidance_scale": float(spec.default("guidance", 1.0))}

    def call() -> None:
        image = pipe(prompt=fields["prompt"], width=fields["width"], height=fields["height"],
                     num_inference_steps=fields["steps"], generator=torch.Generator("cpu").manual_seed(fields["seed"]),
                     output_type="pil", **guidance).images[0]
        image.save(io.BytesIO(), "PNG")

    return _timed(call, job.repeat, probe)


def whisper_direct(loaded, job: Job, files: dict, probe: DeviceProbe) -> float:
    from faster_whisper import BatchedInferencePipeline, decode_audio

    model = loaded.handle
    audio = decode_audio(str(files["audio"][0]), sampling_rate=16_000)
    batched = BatchedInferencePipeline(model=model) if probe.cuda else None

    def call() -> None:
        if batched is not None:
            segments, _ = batched.transcribe(audio, batch_size=16, without_timestamps=True)
        else:
            segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True, without_timestamps=True)
        " ".join(segment.text.strip() for segment in segments)  # the segments are decoded as they are read

    return _timed(call, job.repeat, probe)


def embeddings_direct(loaded, job: Job, files: dict, probe: DeviceProbe) -> float:
    model, texts = loaded.handle, list(job.fields["input"])
    return _timed(lambda: model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False),
                  job.repeat, probe)


DIRECT: dict[str, Callable[..., float]] = {
    "diffusers": diffusers_direct,
    "faster-whisper": whisper_direct,
    "sentence-transformers": embeddings_direct,
}
