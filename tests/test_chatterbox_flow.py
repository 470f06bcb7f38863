"""S3Gen's token-to-mel flow: output geometry, reproducible noise, the prompt cut, and strict loading."""

from __future__ import annotations

import pytest
import torch

from model_registry.networks.chatterbox.conformer import UpsampleConformerEncoder
from model_registry.networks.chatterbox.flow import CausalConditionalCFM, CausalMaskedDiffWithXvec, load_flow
from model_registry.networks.chatterbox.flow_estimator import ConditionalDecoder

MEL_BINS = 8
SPEAKER_DIM = 12
VOCAB = 50
PROMPT_TOKENS = 5

# Upstream's CausalMaskedDiffWithXvec as chatterbox-tts 0.1.7's S3Token2Mel builds it (meanflow=False),
# counted with torch on the meta device: 1121 parameter tensors and no buffers.
RELEASED_PARAMETERS = 112_549_360
RELEASED_STATE_ENTRIES = 1121


def _tiny_flow() -> CausalMaskedDiffWithXvec:
    encoder = UpsampleConformerEncoder(
        input_size=16, output_size=16, attention_heads=2, linear_units=32, num_blocks=1, num_up_blocks=1
    )
    estimator = ConditionalDecoder(
        in_channels=4 * MEL_BINS,
        out_channels=MEL_BINS,
        channels=16,
        attention_head_dim=8,
        num_heads=2,
        n_blocks=1,
        num_mid_blocks=1,
    )
    return CausalMaskedDiffWithXvec(
        vocab_size=VOCAB,
        input_size=16,
        output_size=MEL_BINS,
        spk_embed_dim=SPEAKER_DIM,
        encoder=encoder,
        decoder=CausalConditionalCFM(estimator),
    )


@pytest.fixture(scope="module")
def flow() -> CausalMaskedDiffWithXvec:
    torch.manual_seed(0)
    return _tiny_flow().eval()


def _prompt(prompt_frames: int = 2 * PROMPT_TOKENS) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "prompt_token": torch.randint(0, VOCAB, (1, PROMPT_TOKENS), generator=g),
        "prompt_token_len": torch.tensor([PROMPT_TOKENS]),
        "prompt_feat": torch.randn(1, prompt_frames, MEL_BINS, generator=g),
        "prompt_feat_len": None,
        "embedding": torch.randn(1, SPEAKER_DIM, generator=g),
    }


def _tokens(batch: int, count: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, count), generator=torch.Generator().manual_seed(2))


def _mel(flow, tokens, seed=3, n_timesteps=3, **prompt):
    prompt = {**_prompt(), **prompt}
    generator = torch.Generator().manual_seed(seed)
    return flow.inference(tokens, None, **prompt, n_timesteps=n_timesteps, generator=generator)


@pytest.mark.parametrize("count", [1, 7, 20])
def test_mel_has_two_frames_per_token(flow, count):
    mel = _mel(flow, _tokens(1, count))
    assert mel.shape == (1, MEL_BINS, 2 * count)
    assert torch.isfinite(mel).all()


def test_unbatched_prompt_is_shared_by_the_batch(flow):
    prompt = _prompt()
    unbatched = {
        "prompt_token": prompt["prompt_token"][0],
        "prompt_token_len": PROMPT_TOKENS,
        "prompt_feat": prompt["prompt_feat"][0],
        "embedding": prompt["embedding"][0],
    }
    tokens = _tokens(3, 6)
    assert torch.equal(_mel(flow, tokens, **unbatched), _mel(flow, tokens))
    assert _mel(flow, tokens).shape == (3, MEL_BINS, 12)


def test_same_seed_same_mel(flow):
    tokens = _tokens(2, 9)
    assert torch.equal(_mel(flow, tokens, seed=5), _mel(flow, tokens, seed=5))
    assert not torch.allclose(_mel(flow, tokens, seed=5), _mel(flow, tokens, seed=6))


def test_global_seed_draws_the_noise_without_a_generator(flow):
    tokens = _tokens(1, 4)
    mels = []
    for _ in range(2):
        torch.manual_seed(11)
        mels.append(flow.inference(tokens, None, **_prompt(), n_timesteps=2))
    assert torch.equal(*mels)


def test_noise_is_the_sampler_starting_point(flow):
    tokens = _tokens(1, 4)
    noise = torch.randn(1, MEL_BINS, 2 * (PROMPT_TOKENS + 4), generator=torch.Generator().manual_seed(4))
    with_noise = flow.inference(tokens, None, **_prompt(), n_timesteps=2, noise=noise)
    again = flow.inference(tokens, None, **_prompt(), n_timesteps=2, noise=noise.clone())
    assert torch.equal(with_noise, again)
    with pytest.raises(ValueError, match="noise has shape"):
        flow.inference(tokens, None, **_prompt(), n_timesteps=2, noise=noise[:, :, 1:])


@pytest.mark.parametrize("prompt_frames", [2 * PROMPT_TOKENS, 2 * PROMPT_TOKENS - 3])
def test_prompt_frames_are_cut_from_the_sampled_mel(flow, prompt_frames):
    sampled = []
    hook = flow.decoder.register_forward_hook(lambda module, args, output: sampled.append(output))
    try:
        mel = _mel(flow, _tokens(1, 6), prompt_feat=_prompt(prompt_frames)["prompt_feat"])
    finally:
        hook.remove()
    (full,) = sampled
    assert full.shape[-1] == 2 * (PROMPT_TOKENS + 6)
    assert torch.equal(mel, full[:, :, prompt_frames:])


def test_out_of_range_token_is_refused(flow):
    with pytest.raises(ValueError, match=r"speech tokens must lie in \[0, 50\)"):
        _mel(flow, torch.tensor([[3, VOCAB]]))


def test_loads_under_prefix_and_reproduces(flow):
    state = {f"flow.{k}": v for k, v in flow.state_dict().items()}
    state["mel2wav.conv_pre.weight"] = torch.zeros(1)  # other parts of S3Gen's checkpoint are ignored
    loaded = load_flow(state, prefix="flow.", build=_tiny_flow)
    assert not loaded.training
    tokens = _tokens(1, 5)
    assert torch.equal(_mel(loaded, tokens), _mel(flow, tokens))


def test_missing_key_is_named(flow):
    state = {f"flow.{k}": v for k, v in flow.state_dict().items()}
    del state["flow.decoder.estimator.mid_blocks.0.1.0.attn1.to_q.weight"]
    with pytest.raises(ValueError, match=r"missing 1: flow\.decoder\.estimator\.mid_blocks\.0\.1\.0\.attn1\.to_q"):
        load_flow(state, build=_tiny_flow)


def test_unexpected_key_is_named(flow):
    state = {f"flow.{k}": v for k, v in flow.state_dict().items()}
    state["flow.decoder.rand_noise"] = torch.zeros(1, MEL_BINS, 10)
    with pytest.raises(ValueError, match=r"unexpected 1: flow\.decoder\.rand_noise"):
        load_flow(state, build=_tiny_flow)


def test_released_geometry_matches_upstream_count():
    with torch.device("meta"):
        model = CausalMaskedDiffWithXvec()
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    assert len(model.state_dict()) == RELEASED_STATE_ENTRIES
    assert not list(model.buffers())
