"""S3Gen's token-to-mel flow (CosyVoice 2's ``CausalMaskedDiffWithXvec``): 25 Hz speech tokens, a
voice prompt and a speaker vector -> an 80-bin mel spectrogram at 50 Hz for the 24 kHz vocoder.

The prompt's tokens go in front of the tokens to speak; both are embedded (6561 x 512), zeroed past
their length, and run through the :class:`UpsampleConformerEncoder` to twice the frame rate, then
projected to 80 channels (``mu``). The 192-dim CAM++ speaker vector is L2-normalized and projected to
80 (``spks``). The prompt's own mel frames fill the start of an 80-channel condition (``cond``, zeros
after them).

:class:`CausalConditionalCFM` then draws the mel by flow matching: from Gaussian noise, 10 Euler steps
on a cosine time schedule (t = 1 - cos(pi/2 * s) for s evenly spaced in [0, 1]), the velocity from
:class:`ConditionalDecoder` with classifier-free guidance of 0.7 (1.7 x conditional - 0.7 x a pass
whose ``mu``, ``spks`` and ``cond`` are zeros, both in one doubled batch). The prompt's frames are
cut from the result, leaving ``2 x tokens`` frames when the prompt mel has 2 frames per prompt token
(as S3Gen's ``embed_ref`` makes it).

Attribute names are upstream's, so ``CausalMaskedDiffWithXvec()`` (the released geometry, 112,549,360
parameters, 1121 tensors, no buffers) loads the entries under ``flow.`` of S3Gen's checkpoint with
``strict=True`` through :func:`load_flow`. Differences from upstream:

- The starting noise is drawn per call (upstream 0.1.7's ``torch.randn_like(mu)``; its
  ``rand_noise`` is ``None`` and never a buffer, so no key is involved), from the global RNG as
  upstream, or from ``generator`` or ``noise`` when given, for reproducible output.
- :meth:`CausalMaskedDiffWithXvec.inference` returns the mel alone (upstream returns ``(mel, None)``)
  and always treats the tokens as final: upstream's ``finalize=False`` streaming path, which drops
  the last 3 tokens' frames, cuts the features but not their mask and fails on shapes. Chatterbox
  Turbo's mean-flow options (``meanflow``, ``noised_mels``) are not offered; the multilingual
  model does not use them.
- Out-of-range tokens raise ``ValueError`` (upstream logs, then indexes out of range), and the
  prompt may be given unbatched or with batch 1 and is repeated over the batch, as upstream does.
- The training loss and upstream's unused configuration fields (``decoder_conf``, ``mel_feat_conf``,
  ``only_mask_loss`` and the like) are left out; they hold no weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from model_registry.networks.chatterbox._strict_load import load_exact
from model_registry.networks.chatterbox.conformer import UpsampleConformerEncoder
from model_registry.networks.chatterbox.flow_estimator import ConditionalDecoder

__all__ = ("CausalConditionalCFM", "CausalMaskedDiffWithXvec", "load_flow")


class CausalConditionalCFM(nn.Module):
    """Conditional flow matching sampler around the velocity ``estimator`` (upstream's attribute name,
    so its weights sit under ``decoder.estimator.``)."""

    def __init__(self, estimator: ConditionalDecoder | None = None, inference_cfg_rate: float = 0.7):
        super().__init__()
        self.estimator = estimator if estimator is not None else ConditionalDecoder()
        self.inference_cfg_rate = inference_cfg_rate

    def forward(
        self,
        mu: torch.Tensor,
        mask: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
        n_timesteps: int = 10,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """mu, cond (B, C, T); mask (B, 1, T); spks (B, C) -> the sampled (B, C, T) mel.

        ``noise`` (B, C, T) is the starting point; without it one is drawn from ``generator``, or
        from the global RNG exactly as upstream's ``randn_like(mu)`` does.
        """
        if noise is None:
            if generator is None:
                noise = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)
            else:
                noise = torch.randn(mu.shape, generator=generator, device=generator.device, dtype=mu.dtype)
        elif noise.shape != mu.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, the mel to draw {tuple(mu.shape)}")
        x = noise.to(device=mu.device, dtype=mu.dtype)

        steps = torch.linspace(0, 1, n_timesteps + 1, device=mu.device, dtype=mu.dtype)
        t_span = 1 - torch.cos(steps * 0.5 * torch.pi)

        # Conditional and unconditional passes share one doubled batch; only x and t change per step.
        batch = mu.shape[0]
        mask_in = torch.cat([mask, mask])
        mu_in = torch.cat([mu, torch.zeros_like(mu)])
        spks_in = torch.cat([spks, torch.zeros_like(spks)])
        cond_in = torch.cat([cond, torch.zeros_like(cond)])
        w = self.inference_cfg_rate
        for t, r in zip(t_span[:-1], t_span[1:]):
            velocity = self.estimator(torch.cat([x, x]), mask_in, mu_in, t.expand(2 * batch), spks_in, cond_in)
            guided, unguided = velocity.split([batch, batch])
            x = x + (r - t) * ((1.0 + w) * guided - w * unguided)
        return x


class CausalMaskedDiffWithXvec(nn.Module):
    """Token-to-mel flow; the defaults (and default ``encoder``/``decoder``) are the released geometry."""

    def __init__(
        self,
        vocab_size: int = 6561,
        input_size: int = 512,
        output_size: int = 80,
        spk_embed_dim: int = 192,
        encoder: UpsampleConformerEncoder | None = None,
        decoder: CausalConditionalCFM | None = None,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.output_size = output_size
        self.input_embedding = nn.Embedding(vocab_size, input_size)
        self.spk_embed_affine_layer = nn.Linear(spk_embed_dim, output_size)
        self.encoder = encoder if encoder is not None else UpsampleConformerEncoder(input_size=input_size)
        self.encoder_proj = nn.Linear(self.encoder.output_size, output_size)
        self.decoder = decoder if decoder is not None else CausalConditionalCFM()

    @torch.no_grad()
    def inference(
        self,
        token: torch.Tensor,
        token_len: torch.Tensor | None,
        prompt_token: torch.Tensor,
        prompt_token_len: torch.Tensor | int | None,
        prompt_feat: torch.Tensor,
        prompt_feat_len: torch.Tensor | None,
        embedding: torch.Tensor,
        n_timesteps: int = 10,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The (B, 80, frames) mel for ``token`` (B, T) spoken in the prompt's voice.

        ``token_len`` (B,) counts each row's real tokens (None: all T). The prompt, as S3Gen's
        ``embed_ref`` returns it, may be batch 1 or unbatched and is then shared by every row:
        ``prompt_token`` (Tp,) or (B, Tp) with ``prompt_token_len`` (None: all Tp), ``prompt_feat``
        (F, 80) or (B, F, 80) mel frames, time first, and ``embedding`` (192,) or (B, 192), the CAM++
        vector. ``prompt_feat_len`` is accepted for upstream's signature and, as there, unused.

        ``frames`` = 2 (Tp + T) - F: the first F frames, the prompt's, are cut. ``noise`` (B, 80,
        2 (Tp + T)) or ``generator`` fix the starting noise; without them it comes from torch's global
        RNG, as upstream's does.
        """
        del prompt_feat_len
        weight = self.spk_embed_affine_layer.weight
        device, dtype = weight.device, weight.dtype
        token = torch.atleast_2d(token).to(device)
        batch = token.shape[0]
        if token_len is None:
            token_len = torch.full((batch,), token.shape[1])
        prompt_token = _batched(torch.as_tensor(prompt_token), batch, 2, "prompt_token").to(device)
        if prompt_token_len is None:
            prompt_token_len = prompt_token.shape[1]
        prompt_token_len = _batched(torch.as_tensor(prompt_token_len), batch, 1, "prompt_token_len")
        prompt_feat = _batched(torch.as_tensor(prompt_feat), batch, 3, "prompt_feat")
        embedding = _batched(torch.as_tensor(embedding), batch, 2, "embedding")

        spks = self.spk_embed_affine_layer(F.normalize(embedding.to(device=device, dtype=dtype), dim=1))

        token = torch.cat([prompt_token, token], dim=1).long()
        token_len = (prompt_token_len.to(device) + torch.as_tensor(token_len, device=device)).long()
        if token.numel() and (token.min() < 0 or token.max() >= self.vocab_size):
            raise ValueError(
                f"speech tokens must lie in [0, {self.vocab_size}), got {int(token.min())}..{int(token.max())}"
                " (drop the special tokens first)"
            )
        real = torch.arange(token.shape[1], device=device)[None, :] < token_len[:, None]
        h, h_mask = self.encoder(self.input_embedding(token) * real[..., None].to(dtype), token_len)
        mu = self.encoder_proj(h).transpose(1, 2)

        prompt_frames = prompt_feat.shape[1]
        if prompt_frames > mu.shape[2]:
            raise ValueError(f"prompt_feat has {prompt_frames} frames, more than the {mu.shape[2]} being drawn")
        cond = torch.zeros_like(mu)
        cond[:, :, :prompt_frames] = prompt_feat.to(device=device, dtype=dtype).transpose(1, 2)

        mel = self.decoder(mu, h_mask.to(dtype), spks, cond, n_timesteps, noise=noise, generator=generator)
        return mel[:, :, prompt_frames:]


def _batched(x: torch.Tensor, batch: int, ndim: int, name: str) -> torch.Tensor:
    """``x`` with a leading batch axis of ``batch`` rows: added if missing, repeated if it is 1."""
    while x.ndim < ndim:
        x = x[None]
    if x.ndim != ndim or x.shape[0] not in (1, batch):
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit a batch of {batch}")
    return x.expand(batch, *x.shape[1:])


def load_flow(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "flow.",
    dtype: torch.dtype = torch.float32,
    build: Callable[[], CausalMaskedDiffWithXvec] = CausalMaskedDiffWithXvec,
) -> CausalMaskedDiffWithXvec:
    """The flow in eval mode from the entries of ``state_dict`` under ``prefix`` (S3Gen's checkpoint
    keeps it under ``flow.``; other entries are ignored), floating weights cast to ``dtype``.

    ``build`` makes the network (the released geometry by default; tests pass tiny ones); it runs on
    the meta device, since the checkpoint supplies every tensor. Every weight must be present, with
    its shape, and nothing else under the prefix; a ``ValueError`` names what is missing, unexpected
    or misshapen.
    """
    return load_exact(build, state_dict, prefix, "a CausalMaskedDiffWithXvec", dtype)
