"""drylocal's Qwen3-TTS against what upstream's own code (qwen-tts 0.1.1) computed on the same weights
and inputs: tests/golden/qwen3_tts/, made by scripts/golden_qwen3_tts.py in a separate environment
(its docstring says how). The checkpoints are rebuilt here with the same builder and seeds, and their
digests checked first, so a changed builder reads as "regenerate the golden files", not as a port bug.

Tolerances are what the development comparisons reached: token ids and codes equal (greedy, and one
seeded sampled case, which draws from torch's generator in upstream's order); codec decode within
5.7e-6 and speaker embeddings within 3.8e-6; logits, prompt embeddings and mels a few times the
float32 differences measured here, noted at each constant.

Two cases run at the released geometry with random weights: the speaker encoder and the codec
(170M weights, about 7 s of the module's 19 s on two cores). The 1.7B talker does not fit CI time;
its cases use the tiny checkpoints only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

from model_registry.loaders import qwen3_tts as loader
from model_registry.networks.qwen3_tts import synthesis
from model_registry.networks.qwen3_tts.codec import SpeechCodec
from model_registry.networks.qwen3_tts.speaker import SpeakerEncoder, speaker_mels
from model_registry.networks.qwen3_tts.synthesis import Sampling
from tests.qwen3_tts_checkpoint import _draw_weights, full_size_speech_tokenizer_config, write_tiny_qwen3_tts

GOLDEN = Path(__file__).parent / "golden" / "qwen3_tts"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
GENERATION = json.loads((GOLDEN / "generation.json").read_text())
MODULES = json.loads((GOLDEN / "modules.json").read_text())
ARRAYS = dict(np.load(GOLDEN / "arrays.npz"))
INPUTS = dict(np.load(GOLDEN / "inputs.npz"))
SEEDS = MANIFEST["checkpoints"]["seeds"]

# Measured against the committed files (torch 2.13 here, 2.9.1 upstream, both CPU float32) in brackets.
DECODE_ATOL = 5.7e-6  # codec decode, as in development (1.3e-6 tiny, 3.3e-6 full size)
WAVE_ATOL = 1e-5  # synthesized audio: the same decode of other codes (5.5e-6 on design_streaming)
SPEAKER_ATOL = 3.8e-6  # speaker embeddings, as in development (3.3e-7 full size, 1.2e-7 tiny)
MEL_ATOL = 4e-5  # log-mels up to |6.5| (4.8e-7; 7.6e-6 on the quiet wave with torch's AVX-512 kernels)
LOGITS_ATOL = 5e-6  # talker and predictor logits up to |12| (6.0e-7)
PROMPT_ATOL = 2e-6  # prompt embeddings: lookups and the text projection (2.4e-7)


def pcm(name: str) -> np.ndarray:
    return INPUTS[name].astype(np.float32) / 32768.0


def assert_like(actual, golden: dict, atol: float, what: str) -> None:
    """``actual`` against a fingerprint from the script: shape, the strided values, and the sums
    (which see every element, bounded by atol per element)."""
    values = np.asarray(actual, dtype=np.float64)
    assert list(values.shape) == golden["shape"], f"{what}: shape {values.shape}, upstream {golden['shape']}"
    flat = values.ravel()
    stride = golden["stride"]
    np.testing.assert_allclose(flat[stride // 2 :: stride], ARRAYS[golden["key"]], rtol=0, atol=atol, err_msg=what)
    assert abs(flat.sum() - golden["sum"]) <= atol * flat.size, f"{what}: sum {flat.sum()} vs {golden['sum']}"
    assert abs(np.abs(flat).sum() - golden["abs_sum"]) <= atol * flat.size, f"{what}: absolute sum differs"


def digest(tensors: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(save({k: v.contiguous() for k, v in tensors.items()})).hexdigest()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen3-tts-golden")
    return {mode: write_tiny_qwen3_tts(root / mode, mode, seed=seed) for mode, seed in SEEDS.items()}


@pytest.fixture(scope="module")
def voices(checkpoints: dict[str, Path]) -> dict[str, loader.Qwen3Voices]:
    return {mode: loader.Qwen3Voices({mode: folder}, "cpu", torch.float32,
                                     loader.load_bundle(folder, mode, "cpu", torch.float32))
            for mode, folder in checkpoints.items()}


def test_the_checkpoints_are_the_ones_upstream_ran(checkpoints: dict[str, Path]):
    expected = MANIFEST["checkpoints"]["sha256"]
    for mode, folder in checkpoints.items():
        for name in ("model.safetensors", "speech_tokenizer/model.safetensors", "tokenizer.json"):
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
            assert actual == expected[f"{mode}/{name}"], (
                f"tests/qwen3_tts_checkpoint.py now builds a different {mode}/{name}: "
                "regenerate the golden files with scripts/golden_qwen3_tts.py"
            )


# --------------------------------------------------------------------------------------------------
# Text to codes to audio, through Qwen3Voices.synthesize: prompt ids, prompt embeddings, codes, audio.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("golden", GENERATION, ids=[g["case"]["name"] for g in GENERATION])
def test_synthesis_matches_upstream(golden: dict, voices, monkeypatch: pytest.MonkeyPatch):
    """One of upstream's generate_custom_voice / generate_voice_design / generate_voice_clone calls,
    with its sampling settings, frame count and streaming mode; build_prompt and generate_frames are
    wrapped to see the ids, embeddings and codes synthesize passes between them."""
    case = golden["case"]
    mode = case["mode"]
    voice = voices[mode]
    bundle = voice.bundle
    monkeypatch.setattr(bundle, "sampling", Sampling(**golden["sampling"], max_new_tokens=golden["frames"]))
    monkeypatch.setitem(loader.NON_STREAMING, mode, not case["streaming"])
    seen: dict = {}

    def build_prompt(talker, tokens, text_ids, language_id, voice_prompt, non_streaming):
        prompt = original_build(talker, tokens, text_ids, language_id, voice_prompt, non_streaming)
        seen.update(text_ids=text_ids, voice=voice_prompt, prompt=prompt)
        return prompt

    def generate_frames(*args, **kwargs):
        seen["frames"] = original_generate(*args, **kwargs)
        return seen["frames"]

    original_build, original_generate = synthesis.build_prompt, synthesis.generate_frames
    monkeypatch.setattr(synthesis, "build_prompt", build_prompt)
    monkeypatch.setattr(synthesis, "generate_frames", generate_frames)

    # preset_early_end makes end-of-speech likely, as the script did to upstream's talker.
    head = bundle.talker.codec_head.weight
    eos = int(bundle.talker.settings["codec_eos_token_id"])
    saved = head.data[eos].clone()
    if "eos_scale" in case:
        head.data[eos] *= case["eos_scale"]
    try:
        ref_audio = (pcm("reference_wave"), 24000) if mode == "voice_clone" else None
        wave, rate = voice.synthesize(case["text"], mode=mode, voice=case.get("voice"), lang=case["lang"],
                                      ref_audio=ref_audio, ref_text=case.get("ref_text"),
                                      instruct=case.get("instruct"), seed=case.get("seed"))
    finally:
        head.data[eos] = saved

    prompt_voice = seen["voice"]

    def ids(tensor):
        return None if tensor is None else tensor.view(-1).tolist()

    assert ids(seen["text_ids"]) == golden["input_ids"]
    assert ids(prompt_voice.instruct_ids) == golden["instruct_ids"]
    assert ids(prompt_voice.ref_ids) == golden["ref_ids"]
    if "speaker_embedding" in golden:
        np.testing.assert_allclose(prompt_voice.speaker_embedding.numpy(), golden["speaker_embedding"], rtol=0,
                                   atol=SPEAKER_ATOL)
        ref_codes = None if prompt_voice.ref_frames is None else prompt_voice.ref_frames.tolist()
        assert ref_codes == golden["ref_codes"]
    prefill, trailing, _ = seen["prompt"]
    assert_like(prefill[0], golden["prefill"], PROMPT_ATOL, "prompt prefill")
    assert_like(trailing[0], golden["trailing"], PROMPT_ATOL, "text fed per frame")
    assert seen["frames"].tolist() == golden["codes"]
    assert rate == golden["sample_rate"] and len(wave) == golden["wave_length"]
    assert_like(wave, golden["wave"], WAVE_ATOL, "waveform")


# --------------------------------------------------------------------------------------------------
# The talker and code predictor on fixed inputs.
# --------------------------------------------------------------------------------------------------


@torch.inference_mode()
def test_talker_logits_match_upstream_in_one_pass_and_step_by_step(voices):
    from transformers.cache_utils import DynamicCache

    talker = voices["custom_voice"].bundle.talker
    embeds = torch.from_numpy(INPUTS["talker_embeds"])
    golden = MODULES["talker"]
    # Upstream's logits came from one pass; here the first eight from a prefill, the rest one at a
    # time through the cache, as generation feeds them.
    cache = DynamicCache(config=talker.config)
    hidden = [talker.model.run(embeds[:, :8], cache)]
    hidden += [talker.model.run(embeds[:, k : k + 1], cache) for k in range(8, embeds.shape[1])]
    logits = talker.codec_head(torch.cat(hidden, dim=1))[0].numpy()
    assert logits.argmax(-1).tolist() == golden["talker_argmax"]
    assert_like(logits, golden["talker_logits"], LOGITS_ATOL, "talker logits")


@torch.inference_mode()
def test_code_predictor_codes_and_logits_match_upstream(voices):
    talker = voices["custom_voice"].bundle.talker
    hidden = torch.from_numpy(INPUTS["predictor_hidden"])
    first = torch.tensor([[int(INPUTS["predictor_first_code"])]])
    logits: list[np.ndarray] = []

    def choose(scores: torch.Tensor, k: int) -> torch.Tensor:
        logits.append(scores[0].numpy())
        return scores.argmax(dim=-1).view(1)

    codes = talker.code_predictor.predict(hidden, talker.codec(first), choose)
    golden = MODULES["talker"]
    assert [int(c) for c in codes] == golden["predictor_codes"]
    assert len(logits) == len(golden["predictor_logits"])
    for k, (step, expected) in enumerate(zip(logits, golden["predictor_logits"])):
        assert_like(step, expected, LOGITS_ATOL, f"predictor logits for code {k + 1}")


# --------------------------------------------------------------------------------------------------
# The speaker encoder and its mel front end.
# --------------------------------------------------------------------------------------------------


def test_speaker_mels_match_upstream():
    mels = speaker_mels(pcm("reference_wave"))[0].numpy()
    assert mels.shape[0] == MODULES["speaker"]["mel_frames"]
    assert_like(mels, MODULES["speaker"]["mel"], MEL_ATOL, "log-mels")
    # A tenth of a second of digital silence first: the floor under the root and the log's clamp.
    assert_like(speaker_mels(pcm("quiet_wave"))[0].numpy(), MODULES["speaker"]["quiet_mel"], MEL_ATOL, "quiet log-mels")


def test_tiny_speaker_embedding_matches_upstream(voices):
    embedding = voices["voice_clone"].bundle.speaker.embed(pcm("reference_wave"))
    np.testing.assert_allclose(embedding.numpy(), MODULES["speaker"]["tiny_embedding"], rtol=0, atol=SPEAKER_ATOL)


def test_full_size_speaker_embedding_matches_upstream():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MANIFEST["checkpoints"]["full_speaker_seed"])
        encoder = SpeakerEncoder().eval()
    assert digest(encoder.state_dict()) == MANIFEST["checkpoints"]["sha256"]["full_speaker.safetensors"], (
        "the full-size speaker encoder's seeded weights changed: regenerate with scripts/golden_qwen3_tts.py"
    )
    embedding = encoder.embed(pcm("reference_wave"))
    np.testing.assert_allclose(embedding.numpy(), MODULES["speaker"]["full_embedding"], rtol=0, atol=SPEAKER_ATOL)


# --------------------------------------------------------------------------------------------------
# The 12 Hz codec.
# --------------------------------------------------------------------------------------------------


def check_codec(codec: SpeechCodec, name: str) -> None:
    golden = MODULES["codec"][name]
    (wave,) = codec.decode(torch.from_numpy(INPUTS[f"{name}_decode_codes"].astype(np.int64))[None])
    assert codec.output_sample_rate == golden["sample_rate"] and len(wave) == golden["decode_length"]
    assert_like(wave.numpy(), golden["decode"], DECODE_ATOL, f"{name} codec decode")
    assert codec.encode(pcm(f"{name}_encode_wave")).tolist() == golden["encode"]


def test_tiny_codec_decodes_and_encodes_as_upstream(checkpoints: dict[str, Path]):
    codec = SpeechCodec.from_pretrained(checkpoints["custom_voice"] / "speech_tokenizer")
    check_codec(codec, "tiny")
    codes = torch.from_numpy(INPUTS["tiny_chunked_codes"].astype(np.int64))[None]
    (chunked,) = codec.decode(codes, chunk_size=16)
    assert_like(chunked.numpy(), MODULES["codec"]["tiny"]["chunked"], DECODE_ATOL, "chunked decode")


def test_full_size_codec_decodes_and_encodes_as_upstream():
    codec = SpeechCodec(full_size_speech_tokenizer_config())
    _draw_weights(codec, torch.Generator().manual_seed(MANIFEST["checkpoints"]["full_codec_seed"]))
    assert digest(codec.state_dict()) == MANIFEST["checkpoints"]["sha256"]["full_codec/model.safetensors"], (
        "the full-size codec's seeded weights changed: regenerate with scripts/golden_qwen3_tts.py"
    )
    check_codec(codec.eval(), "full")
