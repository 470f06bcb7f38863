"""S3Gen's HiFT vocoder: output geometry, the clamp, reproducible noise, the source cache, strict loading."""

from __future__ import annotations

import pytest
import torch

from model_registry.networks.chatterbox.hift import HiFTGenerator, fade_in_start, load_hift

MEL_BINS = 8
FRAMES = 7
HOP_SIZE = 2 * 3 * 2  # upsample rates x iSTFT hop of the tiny geometry below

# Upstream's HiFTGenerator as chatterbox-tts 0.1.7's S3Token2Wav builds it (24 kHz, upsampling 8/5/3,
# ConvRNNF0Predictor()), counted with torch on the meta device: 328 parameter tensors, no buffers.
RELEASED_PARAMETERS = 20_821_295
RELEASED_STATE_ENTRIES = 328


def _tiny_hift() -> HiFTGenerator:
    return HiFTGenerator(
        in_channels=MEL_BINS,
        base_channels=16,
        nb_harmonics=2,
        sampling_rate=1200,
        upsample_rates=(2, 3),
        upsample_kernel_sizes=(4, 5),
        n_fft=8,
        hop_length=2,
        resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 3), (1, 3)),
        source_resblock_kernel_sizes=(3, 3),
        source_resblock_dilation_sizes=((1, 3), (1, 3)),
        f0_channels=8,
    )


@pytest.fixture(scope="module")
def hift() -> HiFTGenerator:
    torch.manual_seed(0)
    model = _tiny_hift().eval()
    with torch.no_grad():
        # A pitch of some 100 Hz with a spread, so both voiced and unvoiced samples occur.
        model.f0_predictor.classifier.weight.mul_(200.0)
        model.f0_predictor.classifier.bias.fill_(20.0)
    return model


@pytest.fixture(scope="module")
def mel() -> torch.Tensor:
    return torch.randn(2, MEL_BINS, FRAMES, generator=torch.Generator().manual_seed(1))


def test_waveform_has_hop_size_samples_per_frame(hift, mel):
    wave, source = hift.inference(mel)
    assert hift.hop_size == HOP_SIZE
    assert wave.shape == (2, FRAMES * HOP_SIZE)
    assert source.shape == (2, 1, FRAMES * HOP_SIZE)


def test_waveform_is_finite_and_clamped_to_audio_limit(hift, mel):
    loud = _tiny_hift().eval()
    loud.load_state_dict(hift.state_dict())
    with torch.no_grad():
        loud.conv_post.bias[: 8 // 2 + 1].fill_(8.0)  # log magnitudes of e^8: far past the limit
    wave, _ = loud.inference(mel)
    assert torch.isfinite(wave).all()
    assert wave.abs().max().item() == pytest.approx(0.99)


def test_same_seed_gives_same_waveform(hift, mel):
    torch.manual_seed(3)
    first, _ = hift.inference(mel)
    torch.manual_seed(3)
    again, _ = hift.inference(mel)
    torch.manual_seed(4)
    other, _ = hift.inference(mel)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_generator_draws_the_noise_the_global_seed_would(hift, mel):
    torch.manual_seed(5)
    global_seeded, _ = hift.inference(mel)
    from_generator, _ = hift.inference(mel, generator=torch.Generator().manual_seed(5))
    assert torch.equal(global_seeded, from_generator)


def test_cache_source_replaces_start_of_excitation(hift, mel):
    cache = torch.full((2, 1, 10), 0.5)
    _, source = hift.inference(mel, cache_source=cache)
    assert torch.equal(source[:, :, :10], cache)
    assert not torch.equal(source[:, :, 10:20], torch.full((2, 1, 10), 0.5))


def test_fade_in_start_silences_then_ramps(hift):
    wave = torch.ones(1, 24_000)
    faded = fade_in_start(wave)
    assert torch.equal(faded[:, :480], torch.zeros(1, 480))
    assert torch.all(faded[:, 480:960].diff() >= 0)
    assert torch.equal(faded[:, 960:], wave[:, 960:])


def test_state_dict_under_prefix_loads_to_same_waveform(hift, mel):
    state = {f"mel2wav.{k}": v for k, v in hift.state_dict().items()}
    state["flow.decoder.weight"] = torch.zeros(1)  # other S3Gen entries are not the vocoder's business
    loaded = load_hift(state, build=_tiny_hift)
    torch.manual_seed(6)
    expected, _ = hift.inference(mel)
    torch.manual_seed(6)
    actual, _ = loaded.inference(mel)
    assert torch.equal(expected, actual)


def test_missing_weight_is_named(hift):
    state = {f"mel2wav.{k}": v for k, v in hift.state_dict().items()}
    del state["mel2wav.conv_post.parametrizations.weight.original1"]
    with pytest.raises(ValueError, match=r"missing 1: mel2wav\.conv_post\.parametrizations\.weight\.original1"):
        load_hift(state, build=_tiny_hift)


def test_unexpected_weight_is_named(hift):
    state = {f"mel2wav.{k}": v for k, v in hift.state_dict().items()}
    state["mel2wav.conv_post.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected 1: mel2wav\.conv_post\.weight"):
        load_hift(state, build=_tiny_hift)


def test_released_geometry_matches_upstream():
    with torch.device("meta"):
        model = HiFTGenerator()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    assert len(state) == RELEASED_STATE_ENTRIES
    assert model.hop_size == 480
    assert state["f0_predictor.condnet.8.parametrizations.weight.original0"].shape == (512, 1, 1)
    assert state["ups.0.parametrizations.weight.original1"].shape == (512, 256, 16)
    assert state["source_downs.0.weight"].shape == (256, 18, 30)
    assert state["m_source.l_linear.weight"].shape == (1, 9)
