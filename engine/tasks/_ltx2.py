"""LTX-2 specifics shared by txt2video, img2video and aud2video: the condition pipeline over the loaded
components, a given soundtrack turned into audio latents, and those latents held fixed while the
video is generated (audio-to-video).

LTX-2 denoises video and audio together, with cross-attention between them. Audio-to-video is the
same model with the audio stream already clean: its tokens enter at timestep 0 and are never
updated, which is how Lightricks' own a2v pipeline conditions on a soundtrack (a denoise mask of 0
for audio). diffusers 0.42 has no such mode, so two forward hooks on the transformer provide it.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Iterator

from model_registry import LoadedModel
from model_registry.networks.mel import mel_filters

__all__ = ("condition_pipeline", "holding_audio_fixed", "is_ltx2", "log_mel", "soundtrack_latents")

# The LTX-2 audio VAE's front end (ltx-core's AudioProcessor): 16 kHz stereo, a 1024-point STFT
# magnitude every hop, Slaney mel filters with Slaney area normalization, natural log floored at 1e-5.
_N_FFT = 1024


def is_ltx2(pipe) -> bool:
    return type(pipe).__name__.startswith("LTX2")


def condition_pipeline(model: LoadedModel):
    """LTX2ConditionPipeline (first and last frames) over the loaded components, made once per model."""
    cached = model.extras.get("ltx2_condition_pipeline")
    if cached is None:
        from diffusers import LTX2ConditionPipeline

        wanted = set(inspect.signature(LTX2ConditionPipeline.__init__).parameters) - {"self"}
        cached = LTX2ConditionPipeline(**{k: v for k, v in model.handle.components.items() if k in wanted})
        cached.set_progress_bar_config(disable=True)
        model.extras["ltx2_condition_pipeline"] = cached
    return cached


def log_mel(waveform, rate: int, hop: int, n_mels: int):
    """(channels, samples) float32 at ``rate`` -> (1, channels, frames, n_mels), the audio VAE's input."""
    import torch

    wave = torch.as_tensor(waveform, dtype=torch.float32)
    spectrum = torch.stft(
        wave, _N_FFT, hop_length=hop, win_length=_N_FFT, window=torch.hann_window(_N_FFT), center=True,
        pad_mode="reflect", return_complex=True,
    ).abs()
    mel = torch.einsum("mf,cft->cmt", torch.from_numpy(mel_filters(rate, _N_FFT, n_mels)), spectrum)
    return torch.log(mel.clamp_min(1e-5)).permute(0, 2, 1).unsqueeze(0).contiguous()


def soundtrack_latents(pipe, path: Path, seconds: float):
    """The file's audio, cut or padded with silence to ``seconds``, as the audio VAE's latent mean
    (B, C, frames, bins): what the pipeline takes as ``audio_latents``. Also the waveform itself
    (2, samples) at the VAE's rate, for the MP4's sound."""
    import numpy as np
    import torch

    from engine.tasks._audio import decode_audio_file

    vae = pipe.audio_vae
    rate = int(vae.config.sample_rate)
    wave = decode_audio_file(path, rate, 2)
    wanted = max(1, round(seconds * rate))
    wave = wave[:, :wanted] if wave.shape[1] >= wanted else np.pad(wave, ((0, 0), (0, wanted - wave.shape[1])))
    mel = log_mel(wave, rate, int(vae.config.mel_hop_length), int(vae.config.mel_bins))
    with torch.no_grad():
        latents = vae.encode(mel.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
    return latents, wave


@contextlib.contextmanager
def holding_audio_fixed(pipe) -> Iterator[None]:
    """While the pipeline runs: the transformer sees the audio tokens as clean (timestep and sigma 0)
    and predicts no change for them, so guidance and the scheduler leave the given audio as it is."""
    import torch

    transformer = pipe.transformer

    def clean_audio(module, args, kwargs):
        # One value per batch item: the video's timestep may be per token (frame conditioning).
        for audio_name, video_name in (("audio_timestep", "timestep"), ("audio_sigma", "sigma")):
            reference = kwargs.get(audio_name)
            if reference is None:
                reference = kwargs.get(video_name)
            if reference is not None:
                kwargs[audio_name] = reference.new_zeros(reference.shape[0])
        return args, kwargs

    def still_audio(module, args, kwargs, output):
        if isinstance(output, tuple) and len(output) == 2:
            video, audio = output
            return video, torch.zeros_like(audio)
        if hasattr(output, "audio_sample"):
            output.audio_sample = torch.zeros_like(output.audio_sample)
        return output

    handles = [
        transformer.register_forward_pre_hook(clean_audio, with_kwargs=True),
        transformer.register_forward_hook(still_audio, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
