"""Chatterbox's T3 on a tiny geometry: drawing, stopping, guidance, the prompt cut, the hallucination
guard, and strict loading; plus the released geometry's size."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model_registry.networks.chatterbox.t3 import T3, T3Cond, T3Config, load_t3

TINY = T3Config(
    text_tokens_dict_size=40,
    start_text_token=38,
    stop_text_token=0,
    max_text_tokens=30,
    speech_tokens_dict_size=60,
    start_speech_token=50,
    stop_speech_token=51,
    max_speech_tokens=64,
    speech_cond_prompt_len=6,
    speaker_embed_size=8,
    perceiver_queries=4,
    perceiver_heads=2,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    head_dim=8,
    alignment_heads=((1, 0), (0, 3)),
)
STOP = TINY.stop_speech_token
TEXT = torch.tensor([TINY.start_text_token, 3, 4, 5, 6, 7, 8, 9, TINY.stop_text_token])

# Upstream's T3(T3Config.multilingual()) (chatterbox-tts 0.1.7, "Llama_520M"), counted with torch on
# the meta device under transformers 5.23: 292 state-dict tensors, 535,989,248 parameters.
RELEASED_PARAMETERS = 535_989_248
RELEASED_STATE_ENTRIES = 292


def _voice(prompt_tokens: int = 5) -> T3Cond:
    g = torch.Generator().manual_seed(1)
    return T3Cond(
        speaker_emb=torch.randn(TINY.speaker_embed_size, generator=g),
        cond_prompt_speech_tokens=torch.randint(0, 50, (1, prompt_tokens), generator=g),
        emotion_adv=0.5,
    )


@pytest.fixture(scope="module")
def model() -> T3:
    torch.manual_seed(0)
    return T3(TINY).eval()


def _rigged(head_rows: dict[int, list[float]]) -> T3:
    """A tiny T3 whose next-token logits depend only on the speech position fed last: every layer's
    output projections are zeroed (the residual stream is the input), speech position s is the unit
    vector e_s, token embeddings are zero, and ``speech_head`` row t is ``head_rows[t]`` by position."""
    torch.manual_seed(0)
    model = T3(TINY).eval()
    with torch.no_grad():
        for layer in model.tfmr.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.speech_emb.weight.zero_()
        positions = model.speech_pos_emb.emb.weight
        positions.zero_()
        positions[:, : TINY.hidden_size] = torch.eye(positions.shape[0], TINY.hidden_size)
        model.speech_head.weight.zero_()
        for token, by_position in head_rows.items():
            model.speech_head.weight[token, : len(by_position)] = torch.tensor(by_position)
    return model


def test_greedy_generation_is_deterministic(model):
    first = model.generate(TEXT, _voice(), max_new_tokens=12, temperature=0.0)
    assert first.shape == (12,)
    assert torch.equal(first, model.generate(TEXT, _voice(), max_new_tokens=12, temperature=0.0))


def test_seeded_sampling_is_reproducible(model):
    def draw(seed):
        return model.generate(TEXT, _voice(), max_new_tokens=12, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_generation_ends_at_the_stop_token_without_returning_it():
    # Positions 0..3 favour tokens 10..13, position 4 the stop token.
    rows = {10 + s: [0.0] * s + [1.0] for s in range(4)}
    rows[STOP] = [0.0] * 4 + [1.0]
    tokens = _rigged(rows).generate(TEXT, _voice(), max_new_tokens=20, temperature=0.0, alignment_guard=False)
    assert tokens.tolist() == [10, 11, 12, 13]


def test_alignment_guard_stops_a_token_drawn_twice_in_a_row():
    model = _rigged({7: [1.0] * 20})
    unguarded = model.generate(TEXT, _voice(), max_new_tokens=10, temperature=0.0, alignment_guard=False)
    assert unguarded.tolist() == [7] * 10
    assert model.generate(TEXT, _voice(), max_new_tokens=10, temperature=0.0).tolist() == [7, 7]


def test_alignment_guard_holds_the_stop_token_back_at_the_start_of_the_text():
    # The stop token leads at every position, token 20 + s comes second.
    rows = {STOP: [2.0] * 20, **{20 + s: [0.0] * s + [1.0] for s in range(20)}}
    model = _rigged(rows)
    assert model.generate(TEXT, _voice(), max_new_tokens=20, temperature=0.0, alignment_guard=False).numel() == 0
    guarded = model.generate(TEXT, _voice(), max_new_tokens=20, temperature=0.0)
    assert guarded.numel() > 0
    assert guarded.tolist() == list(range(20, 20 + guarded.numel()))


def test_cfg_weight_zero_draws_the_conditional_row_alone(model):
    batches = []
    hook = model.tfmr.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        alone = model.generate(TEXT, _voice(), max_new_tokens=12, temperature=0.0, cfg_weight=0.0)
        assert set(batches) == {1}
        # A vanishing weight runs the guided pair but leaves the conditional row's logits as they are.
        paired = model.generate(TEXT, _voice(), max_new_tokens=12, temperature=0.0, cfg_weight=1e-30)
        assert set(batches) == {1, 2}
    finally:
        hook.remove()
    assert torch.equal(alone, paired)


def test_unconditional_row_keeps_only_the_text_positions(model):
    text = TEXT[None]
    start = torch.full((1, 1), TINY.start_speech_token)
    guided = model.prepare_input_embeds(text, _voice(), start, guided=True)
    alone = model.prepare_input_embeds(text, _voice(), start)
    n_cond = alone.shape[1] - text.shape[1] - 1
    assert torch.equal(guided[:1], alone)
    text_slice = slice(n_cond, n_cond + text.shape[1])
    assert torch.equal(guided[1, text_slice], model.text_pos_emb.emb.weight[: text.shape[1]])
    assert torch.equal(guided[1, :n_cond], alone[0, :n_cond])


def test_prompt_longer_than_configured_is_cut_to_its_first_tokens(model):
    long = _voice(prompt_tokens=10)
    cut = dataclasses.replace(long, cond_prompt_speech_tokens=long.cond_prompt_speech_tokens[:, :6])
    with torch.no_grad():
        assert torch.equal(model.prepare_conditioning(long), model.prepare_conditioning(cut))
        assert not torch.equal(model.prepare_conditioning(long), model.prepare_conditioning(_voice(5)))


def test_text_without_its_start_and_stop_tokens_is_refused(model):
    with pytest.raises(ValueError, match="start text token 38 to the stop text token 0"):
        model.generate(TEXT[1:-1], _voice(), max_new_tokens=4)


def test_state_dict_round_trip_draws_the_same_tokens(model):
    loaded = load_t3(model.state_dict(), config=TINY)
    kwargs = {"max_new_tokens": 8, "temperature": 0.0}
    assert torch.equal(loaded.generate(TEXT, _voice(), **kwargs), model.generate(TEXT, _voice(), **kwargs))


def test_missing_weight_is_named(model):
    weights = dict(model.state_dict())
    del weights["cond_enc.perceiver.attn.to_k.bias"]
    weights["extra.weight"] = torch.zeros(1)
    named = r"missing 1: cond_enc\.perceiver\.attn\.to_k\.bias.*unexpected 1: extra\.weight"
    with pytest.raises(ValueError, match=named):
        load_t3(weights, config=TINY)


def test_released_geometry_matches_upstream_size():
    with torch.device("meta"):
        released = T3()
    assert sum(p.numel() for p in released.parameters()) == RELEASED_PARAMETERS
    assert len(released.state_dict()) == RELEASED_STATE_ENTRIES
