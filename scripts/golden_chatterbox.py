"""Regenerate ``tests/golden/chatterbox/``: Chatterbox's networks run by UPSTREAM's own code on
seeded weights and inputs, for ``tests/test_chatterbox_golden.py`` to hold this project's port to.

Nothing of upstream is copied here: its source is imported from a checkout named on the command line,
in a virtual environment of its own (never this project's, never committed):

    python3 -m venv /tmp/golden-cb
    /tmp/golden-cb/bin/pip install torch==2.9.1 'torchaudio==2.9.*'
    /tmp/golden-cb/bin/pip install -c <(echo torch==2.9.1) 'numpy<2' librosa==0.11.0 \\
        transformers==5.2.0 diffusers==0.29.0 conformer==0.3.2 s3tokenizer==0.3.0 \\
        safetensors==0.5.3 einops omegaconf tqdm scipy tokenizers
    git clone https://github.com/resemble-ai/chatterbox /tmp/cb-upstream
    git -C /tmp/cb-upstream checkout 59bc590   # chatterbox-tts 0.1.7, the last commit with
                                               # T3's AlignmentStreamAnalyzer, which the port follows
    HF_HUB_OFFLINE=1 /tmp/golden-cb/bin/python scripts/golden_chatterbox.py /tmp/cb-upstream

It takes about three minutes on two cores (T3's sampling loop runs eager attention there) and
rewrites every file in that folder: ``golden.json`` (provenance, versions, per case the geometry,
seeds, strides and fingerprints), one ``.npz`` per case (outputs whole where small, else every n-th
value plus sums), ``text.json`` and the vocabulary ``text_vocab.json`` it was encoded with. Everything
runs on one thread, as the test does, so that summation order does not hang on the core count.

Pins are upstream's own (``pyproject.toml`` of 0.1.7: transformers 5.2.0, diffusers 0.29.0,
librosa 0.11.0, numpy < 2), but torch and torchaudio 2.9.1 instead of 2.6.0 (upstream takes >= 2.9
on Python 3.14), the pair known to install together here.
Seen working with numpy 1.26.4, scipy 1.17.1, tokenizers 0.22.2 and huggingface_hub 1.33.0.

Two stand-ins, neither touching what is compared: upstream's ``chatterbox/__init__.py`` is skipped
(a bare package object points at ``src/chatterbox``; the real one asks importlib for the installed
``chatterbox-tts`` version and imports every pipeline), and ``perth`` (the watermarker that
``mtl_tts.py`` imports, used only to build ``ChatterboxMultilingualTTS``) is an empty module, so that
``mtl_tts.punc_norm`` can be imported. Small geometries that upstream hard-codes are set at run time
and restored: T3's backbone as an extra ``LLAMA_CONFIGS`` entry, the Perceiver's width and the
s3tokenizer ``ModelConfig`` through the constructors' defaults.

Weights are never stored: both sides draw them by :func:`draw_weights` (per state-dict key, from the
key's name, so key order does not matter) and the golden file keeps fingerprints of the keys, shapes
and values, which the test checks before it compares any output. Inputs come from
:func:`speechlike` and seeded ``torch.Generator`` draws, also fingerprinted.

This module imports only torch and numpy at the top: the test imports its rule and inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import subprocess
import sys
import types
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "chatterbox"
WEIGHT_SEED = 20_250_917

# --------------------------------------------------------------------------------------------------
# The shared rule: weights, inputs, fingerprints (imported by tests/test_chatterbox_golden.py).
# --------------------------------------------------------------------------------------------------


def drawn_keys(module: torch.nn.Module) -> list[str]:
    """The state-dict keys the rule draws: every parameter and batch-norm running statistic.
    Other buffers (mel filters, windows, step counters) stay as the module computes them."""
    keys = {name for name, _ in module.named_parameters()}
    keys |= {name for name, _ in module.named_buffers() if name.endswith(("running_mean", "running_var"))}
    return sorted(keys)


def draw_weights(module: torch.nn.Module, seed: int = WEIGHT_SEED, scales: Mapping[str, float] = {}) -> None:
    """Overwrite ``module``'s drawn tensors by the golden rule, in place.

    Each key gets its own generator, seeded with ``seed + crc32(key)``, and a standard normal ``z``
    of its shape: ``z / sqrt(fan_in)`` for tensors of 2 or more dimensions (fan_in = the product of
    all but the first), ``1 + 0.1 z`` for 0/1-dimensional weights, Snake alphas and running
    variances, ``0.1 z`` for the other 0/1-dimensional ones (biases, running means); times
    ``scales[key]`` where given.
    """
    state = module.state_dict()
    for key in drawn_keys(module):
        shape = state[key].shape
        generator = torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))
        z = torch.randn(shape, generator=generator, dtype=torch.float32)
        if len(shape) >= 2:
            value = z / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(("weight", "alpha", "running_var")):
            value = 1.0 + 0.1 * z
        else:
            value = 0.1 * z
        state[key] = value * scales.get(key, 1.0)
    module.load_state_dict(state, strict=True)


def weight_fingerprints(module: torch.nn.Module) -> dict[str, str]:
    """sha256 of the drawn keys with their shapes, and of their float32 values in key order."""
    state = module.state_dict()
    keys, values = hashlib.sha256(), hashlib.sha256()
    for key in drawn_keys(module):
        tensor = state[key].detach().to("cpu", torch.float32).contiguous()
        keys.update(f"{key}{tuple(tensor.shape)};".encode())
        values.update(tensor.numpy().tobytes())
    return {"keys": keys.hexdigest(), "values": values.hexdigest()}


def array_fingerprint(*arrays: np.ndarray | torch.Tensor) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        digest.update(f"{array.dtype}{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def speechlike(
    seconds: float,
    seed: int,
    sample_rate: int = 16_000,
    lead: float = 0.0,
    tail: float = 0.0,
    quiet: float = 1e-4,
) -> np.ndarray:
    """A float32 clip that a speech front end has something to chew on: eight harmonics of a gliding
    110 +- 40 Hz pitch, syllable-like 3 Hz loudness, a little noise, framed by ``lead`` and ``tail``
    seconds of noise of standard deviation ``quiet``. All float64 until the end, so both sides get
    the same samples."""
    generator = torch.Generator().manual_seed(seed)
    n = round(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 110.0 + 40.0 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 9))
    envelope = 0.5 * (1.0 + torch.sin(2 * math.pi * 3.0 * t))
    wave = 0.3 * envelope * voice + 0.02 * torch.randn(n, generator=generator, dtype=torch.float64)
    framing = [
        quiet * torch.randn(round(s * sample_rate), generator=generator, dtype=torch.float64) for s in (lead, tail)
    ]
    return torch.cat([framing[0], wave, framing[1]]).float().numpy()


def strided(array: np.ndarray | torch.Tensor, step: int) -> np.ndarray:
    """Every ``step``-th element of the flattened array, as float32: a sample that any change moves."""
    array = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return np.ascontiguousarray(array.reshape(-1)[::step], dtype=np.float32)


def summary(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """(sum, sum of |x|, sum of x^2) in float64: catches what a strided sample skips."""
    array = array.detach().cpu().double().numpy() if isinstance(array, torch.Tensor) else np.asarray(array, np.float64)
    return np.array([array.sum(), np.abs(array).sum(), np.square(array).sum()])


# --------------------------------------------------------------------------------------------------
# Case definitions: geometry and inputs, shared by both sides.
# --------------------------------------------------------------------------------------------------

# T3: a 14-layer backbone (the alignment guard reads layers 9, 12 and 13, heads up to 15) of width 64.
T3_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=14, num_attention_heads=16, head_dim=4)
T3_STEPS = 40

# S3 tokenizer: head width 64 is fixed by upstream's rotary table. The FSQ projection scaled down so
# that its eight digits are not all saturated (14 distinct tokens in the first clip, none of the
# projections within 5e-3 of a rounding boundary).
S3_TINY = dict(width=128, heads=2, layers=2)
S3_SCALES = {"quantizer._codebook.project_down.weight": 0.3, "quantizer._codebook.project_down.bias": 0.3}
# Two clips of different lengths in one batch (the second with near-silence, where the log-mel's
# floor at 8 decades below the peak acts; its log-mel is stored too), and one over 30 s for the
# windowed path.
S3_CLIPS = [dict(seconds=1.53, seed=11), dict(seconds=0.91, seed=12, lead=0.25, tail=0.1)]
S3_LONG_CLIP = dict(seconds=32.5, seed=13)

# Flow: upstream hard-codes the encoder's 512 channels, 4 upsampled layers and the 80 mel bins.
FLOW_TINY_ENCODER = dict(attention_heads=8, linear_units=64, num_blocks=1)
FLOW_TINY_ESTIMATOR = dict(channels=64, attention_head_dim=16, num_heads=2, n_blocks=1, num_mid_blocks=2)

HIFT_TINY = dict(base_channels=32, f0_channels=16)
# The pitch read-out scaled so that untrained frames come out at tens to hundreds of Hz, some of them
# under the 10 Hz voicing threshold: both branches of the source are exercised. The last layer's
# gains scaled down so that the waveform is mostly inside the +-0.99 clamp (about 1% clamped).
HIFT_SCALES = {
    "f0_predictor.classifier.weight": 150.0,
    "f0_predictor.classifier.bias": 300.0,
    "conv_post.parametrizations.weight.original0": 0.25,
}

VOICE_TINY = dict(hidden_size=32, embed_size=32)
# Leading and trailing murmur 26 dB under the loudest frame, which the trim at 20 dB removes (and one
# at 30 dB would keep); 3.2 s of voice make 3 partials.
VOICE_CLIP = dict(seconds=3.2, seed=31, lead=0.4, tail=0.3, quiet=0.012)
# Over 2 s, so that the frames after CAM++'s stride-2 TDNN (130) span a full and a partial segment.
CAMPPLUS_CLIP = dict(seconds=2.61, seed=21)


def t3_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(101)
    return {
        "speaker_emb": torch.randn(1, 256, generator=g),
        "prompt": torch.randint(0, 6561, (1, 20), generator=g),
        "text": torch.cat([torch.tensor([255]), torch.randint(256, 2454, (10,), generator=g), torch.tensor([0])])[None],
        "speech": torch.cat([torch.tensor([6561]), torch.randint(0, 6561, (7,), generator=g)])[None],
        "emotion_adv": torch.tensor(0.7),
    }


def flow_inputs(tokens: tuple[int, ...] = (10, 7)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(202)
    batch, longest = len(tokens), max(tokens)
    return {
        "token": torch.randint(0, 6561, (batch, longest), generator=g),
        "token_len": torch.tensor(tokens),
        "prompt_token": torch.randint(0, 6561, (1, 6), generator=g),
        "prompt_token_len": torch.tensor([6]),
        "prompt_feat": torch.randn(1, 12, 80, generator=g) - 5.0,
        "embedding": torch.randn(1, 192, generator=g),
    }


def hift_mel(frames: int, seed: int) -> torch.Tensor:
    """A log-mel-like (1, 80, frames) input: lower bins louder, values around -6 .. 0."""
    g = torch.Generator().manual_seed(seed)
    tilt = torch.linspace(-1.0, -6.0, 80)[None, :, None]
    return tilt + 0.8 * torch.randn(1, 80, frames, generator=g)


FLOW_SEED, HIFT_SEED, T3_SAMPLE_SEED = 303, 404, 505

TEXTS = [
    ("en", "hello world... it's a test: one; two - three"),
    ("en", "  Multiple   spaces   and “curly quotes”"),
    ("en", ""),
    ("fr", "Ça va très bien, merci!"),
    ("de", "Größe – übermäßig; wirklich?"),
    ("es", "¿Dónde está la biblioteca?"),
    ("ko", "안녕하세요, 여러분 반갑습니다"),
    ("ar", "مرحبا بالعالم"),
    ("hi", "नमस्ते दुनिया"),
    ("ru", "Привет, мир — как дела"),
    ("he", "שלום עולם"),
    ("el", "Γειά σου Κόσμε…"),
    ("tr", "İstanbul'da ılık bir gün"),
]
# Left out of the vocabulary on purpose, so that [UNK] shows up.
TEXT_UNKNOWN = {"ı", "ς"}
TEXT_MERGES = [("t", "h"), ("th", "e"), ("e", "r"), ("e", "s"), ("[SPACE]", "a")]


# --------------------------------------------------------------------------------------------------
# Upstream side.
# --------------------------------------------------------------------------------------------------


def _import_upstream(checkout: Path) -> None:
    source = checkout / "src" / "chatterbox"
    if not (source / "models").is_dir():
        sys.exit(f"{checkout} is not a chatterbox checkout (no src/chatterbox/models)")
    package = types.ModuleType("chatterbox")
    package.__path__ = [str(source)]
    sys.modules["chatterbox"] = package
    sys.modules.setdefault("perth", types.ModuleType("perth"))


@contextlib.contextmanager
def _defaults(function, values: tuple) -> Iterator[None]:
    saved = function.__defaults__
    function.__defaults__ = values
    try:
        yield
    finally:
        function.__defaults__ = saved


def _t3(out: dict, meta: dict) -> None:
    from chatterbox.models.t3 import llama_configs
    from chatterbox.models.t3.modules import perceiver
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.t3.t3 import T3

    width = T3_TINY["hidden_size"]
    llama_configs.LLAMA_CONFIGS["golden_tiny"] = {
        **llama_configs.LLAMA_CONFIGS["Llama_520M"],
        **T3_TINY,
        "num_key_value_heads": T3_TINY["num_attention_heads"],
    }
    hp = T3Config.multilingual()
    hp.llama_config_name = "golden_tiny"
    with _defaults(perceiver.Perceiver.__init__, (32, width, width, 4)):
        model = T3(hp)
    draw_weights(model)
    model.eval()
    inputs = t3_inputs()

    def cond() -> T3Cond:  # upstream caches the prompt's embedding on the object: a fresh one per call
        return T3Cond(
            speaker_emb=inputs["speaker_emb"],
            cond_prompt_speech_tokens=inputs["prompt"],
            emotion_adv=inputs["emotion_adv"].reshape(1, 1, 1),
        )

    text, speech = inputs["text"], inputs["speech"]
    with torch.inference_mode():
        result = model(
            t3_cond=cond(),
            text_tokens=text,
            text_token_lens=torch.tensor([text.shape[1]]),
            speech_tokens=speech,
            speech_token_lens=torch.tensor([speech.shape[1]]),
        )
    speech_logits, text_logits = result.speech_logits[0], result.text_logits[0]
    out["speech_logits_strided"] = strided(speech_logits, 7)
    out["speech_logits_summary"] = summary(speech_logits)
    out["speech_logits_argmax"] = speech_logits.argmax(-1).numpy()
    out["text_logits_strided"] = strided(text_logits, 5)
    out["text_logits_summary"] = summary(text_logits)

    # mtl_tts.generate's sampling settings; the text stacked twice for classifier-free guidance.
    settings = dict(max_new_tokens=T3_STEPS, cfg_weight=0.5, repetition_penalty=2.0, min_p=0.05, top_p=1.0)
    stacked = torch.cat([text, text])
    # Upstream has no greedy switch; a temperature of 1e-6 makes its draw the arg-max.
    greedy = model.inference(t3_cond=cond(), text_tokens=stacked, temperature=1e-6, **settings)
    torch.manual_seed(T3_SAMPLE_SEED)
    sampled = model.inference(t3_cond=cond(), text_tokens=stacked, temperature=0.8, **settings)
    # Without the repetition penalty the greedy draw repeats itself and the alignment guard ends it.
    unpenalized = model.inference(
        t3_cond=cond(), text_tokens=stacked, temperature=1e-6, **{**settings, "repetition_penalty": 1.0}
    )
    out["greedy_tokens"] = greedy[0].numpy()
    out["sampled_tokens"] = sampled[0].numpy()
    out["unpenalized_tokens"] = unpenalized[0].numpy()
    meta.update(
        geometry=T3_TINY,
        steps=T3_STEPS,
        sample_seed=T3_SAMPLE_SEED,
        inputs=array_fingerprint(*inputs.values()),
        weights=weight_fingerprints(model),
        strides={"speech_logits": 7, "text_logits": 5},
    )


def _s3tokenizer(out: dict, meta: dict) -> None:
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2

    from chatterbox.models.s3tokenizer import S3Tokenizer

    config = ModelConfig(n_audio_state=S3_TINY["width"], n_audio_head=S3_TINY["heads"], n_audio_layer=S3_TINY["layers"])
    with _defaults(S3TokenizerV2.__init__, (config,)):
        model = S3Tokenizer("speech_tokenizer_v2_25hz", config)
    draw_weights(model, scales=S3_SCALES)
    model.eval()
    clips = [speechlike(**clip) for clip in S3_CLIPS]
    long_clip = speechlike(**S3_LONG_CLIP)
    tokens, lengths = model(clips)
    long_tokens, long_lengths = model([long_clip])
    mel = model.log_mel_spectrogram(torch.from_numpy(clips[1]))
    for i, count in enumerate(lengths.tolist()):
        out[f"tokens_{i}"] = tokens[i, :count].numpy()
    out["long_tokens"] = long_tokens[0, : int(long_lengths[0])].numpy()
    out["log_mel_strided"] = strided(mel, 11)
    out["log_mel_summary"] = summary(mel)
    out["log_mel_shape"] = np.array(mel.shape[-2:])
    meta.update(
        geometry=S3_TINY,
        scales=S3_SCALES,
        clips=S3_CLIPS,
        long_clip=S3_LONG_CLIP,
        inputs=array_fingerprint(*clips, long_clip),
        weights=weight_fingerprints(model),
        strides={"log_mel": 11},
    )


def _flow(out: dict, meta: dict, released: bool) -> None:
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.transformer.upsample_encoder import UpsampleConformerEncoder

    # As S3Token2Mel builds it, with the small geometry's sizes where given.
    encoder_sizes = {} if released else FLOW_TINY_ENCODER
    encoder = UpsampleConformerEncoder(
        **{"attention_heads": 8, "linear_units": 2048, "num_blocks": 6, **encoder_sizes},
        output_size=512, dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1,
        normalize_before=True, input_layer="linear", pos_enc_layer_type="rel_pos_espnet",
        selfattention_layer_type="rel_selfattn", input_size=512, use_cnn_module=False, macaron_style=False,
    )
    estimator_sizes = dict(channels=256, attention_head_dim=64, num_heads=8, n_blocks=4, num_mid_blocks=12)
    if not released:
        estimator_sizes = FLOW_TINY_ESTIMATOR
    estimator = ConditionalDecoder(
        in_channels=320, out_channels=80, causal=True, dropout=0.0, act_fn="gelu", meanflow=False,
        **{**estimator_sizes, "channels": [estimator_sizes["channels"]]},
    )
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    model = CausalMaskedDiffWithXvec(encoder=encoder, decoder=decoder)
    draw_weights(model)
    model.eval()
    # The released case: one row, a shorter prompt, as few steps as still show the schedule.
    tokens, steps = ((8,), 4) if released else ((10, 7), 10)
    inputs = flow_inputs(tokens)
    torch.manual_seed(FLOW_SEED)
    mel, _ = model.inference(
        token=inputs["token"], token_len=inputs["token_len"], prompt_token=inputs["prompt_token"],
        prompt_token_len=inputs["prompt_token_len"], prompt_feat=inputs["prompt_feat"], prompt_feat_len=None,
        embedding=inputs["embedding"], finalize=True, n_timesteps=steps,
    )
    for i, count in enumerate(tokens):
        out[f"mel_{i}"] = mel[i, :, : 2 * count].numpy()
    meta.update(
        geometry={"encoder": encoder_sizes, "estimator": estimator_sizes},
        tokens=list(tokens),
        n_timesteps=steps,
        noise_seed=FLOW_SEED,
        inputs=array_fingerprint(*inputs.values()),
        weights=weight_fingerprints(model),
    )


def _hift(out: dict, meta: dict, released: bool) -> None:
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    from chatterbox.models.s3gen.hifigan import HiFTGenerator

    sizes = {} if released else HIFT_TINY
    # As S3Token2Wav builds it.
    model = HiFTGenerator(
        base_channels=sizes.get("base_channels", 512),
        sampling_rate=24_000,
        upsample_rates=[8, 5, 3],
        upsample_kernel_sizes=[16, 11, 7],
        source_resblock_kernel_sizes=[7, 7, 11],
        source_resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        f0_predictor=ConvRNNF0Predictor(cond_channels=sizes.get("f0_channels", 512)),
    )
    draw_weights(model, scales=HIFT_SCALES)
    model.eval()
    frames = 8 if released else 12
    mel = hift_mel(frames, seed=41)
    torch.manual_seed(HIFT_SEED)
    wave, source = model.inference(speech_feat=mel)
    f0 = model.f0_predictor(mel)
    out["f0"] = f0[0].detach().numpy()
    out["wave_strided"] = strided(wave, 3)
    out["wave_summary"] = summary(wave)
    out["source_strided"] = strided(source, 13)
    out["source_summary"] = summary(source)
    meta.update(
        geometry=sizes,
        scales=HIFT_SCALES,
        frames=frames,
        noise_seed=HIFT_SEED,
        inputs=array_fingerprint(mel),
        weights=weight_fingerprints(model),
        strides={"wave": 3, "source": 13},
        clamped=float((wave.abs() >= 0.99).float().mean()),
        voiced=float((f0 > 10).float().mean()),
    )


def _campplus(out: dict, meta: dict) -> None:
    import torchaudio.compliance.kaldi as kaldi

    from chatterbox.models.s3gen.xvector import CAMPPlus

    model = CAMPPlus(memory_efficient=False)
    draw_weights(model)
    model.eval()
    wave = torch.from_numpy(speechlike(**CAMPPLUS_CLIP))
    fbank = kaldi.fbank(wave[None], num_mel_bins=80)
    with torch.no_grad():
        embedding = model.inference([wave])
    out["fbank_strided"] = strided(fbank, 7)
    out["fbank_summary"] = summary(fbank)
    out["fbank_shape"] = np.array(fbank.shape)
    out["embedding"] = embedding[0].numpy()
    meta.update(
        clip=CAMPPLUS_CLIP, inputs=array_fingerprint(wave), weights=weight_fingerprints(model), strides={"fbank": 7}
    )


def _voice_encoder(out: dict, meta: dict, released: bool) -> None:
    import librosa

    from chatterbox.models.voice_encoder import VoiceEncConfig, VoiceEncoder
    from chatterbox.models.voice_encoder.melspec import melspectrogram

    hp = VoiceEncConfig()
    if not released:
        hp.ve_hidden_size, hp.speaker_embed_size = VOICE_TINY["hidden_size"], VOICE_TINY["embed_size"]
    model = VoiceEncoder(hp)
    draw_weights(model)
    model.eval()
    wave = speechlike(**VOICE_CLIP)
    # What prepare_conditionals does with the 16 kHz reference.
    embedding = torch.from_numpy(model.embeds_from_wavs([wave], sample_rate=16_000)).mean(axis=0)
    trimmed = librosa.effects.trim(wave, top_db=20)[0]
    mel = melspectrogram(trimmed, hp).T
    out["trimmed_length"] = np.array(len(trimmed))
    out["mel_strided"] = strided(mel, 5)
    out["mel_summary"] = summary(mel)
    out["mel_shape"] = np.array(mel.shape)
    out["embedding"] = embedding.numpy()
    meta.update(
        geometry={} if released else VOICE_TINY,
        clip=VOICE_CLIP,
        inputs=array_fingerprint(wave),
        weights=weight_fingerprints(model),
        strides={"mel": 5},
    )


def _text(meta: dict) -> dict:
    import unicodedata

    from tokenizers import Tokenizer, models

    from chatterbox.models.tokenizers.tokenizer import SPECIAL_TOKENS, MTLTokenizer, korean_normalize
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES, punc_norm

    # A vocabulary with every letter the texts reach after upstream's clean-up, but a few, plus merges.
    letters: set[str] = set()
    for language, text in TEXTS:
        cleaned = unicodedata.normalize("NFKD", punc_norm(text).lower())
        letters |= set(korean_normalize(cleaned) if language == "ko" else cleaned)
    letters = sorted(letters - {" "} - TEXT_UNKNOWN)
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *letters]:
        vocab.setdefault(token, len(vocab))
    for left, right in TEXT_MERGES:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab, TEXT_MERGES, unk_token="[UNK]"))
    tokenizer.add_special_tokens([*SPECIAL_TOKENS, *(f"[{tag}]" for tag in SUPPORTED_LANGUAGES)])
    vocab_path = GOLDEN / "text_vocab.json"
    tokenizer.save(str(vocab_path))

    upstream = MTLTokenizer(str(vocab_path))
    cases = []
    for language, text in TEXTS:
        # mtl_tts.generate: punc_norm, text_to_tokens, then T3's start (255) and stop (0) around.
        ids = upstream.encode(punc_norm(text), language_id=language.lower())
        cases.append({"language": language, "text": text, "normalized": punc_norm(text), "ids": [255, *ids, 0]})
    meta.update(vocabulary="text_vocab.json", cases=len(cases))
    return {"cases": cases}


# --------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = "torch torchaudio numpy scipy librosa transformers diffusers s3tokenizer tokenizers".split()
    return {name: version(name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a git checkout of resemble-ai/chatterbox (commit 59bc590)")
    args = parser.parse_args()
    _import_upstream(args.checkout)
    commit = subprocess.run(
        ["git", "-C", str(args.checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    torch.set_num_threads(1)  # as the test runs: results then do not hang on the core count
    GOLDEN.mkdir(parents=True, exist_ok=True)

    manifest: dict = {
        "upstream": {"repository": "resemble-ai/chatterbox", "commit": commit or "unknown", "version": "0.1.7"},
        "versions": _versions(),
        "weight_seed": WEIGHT_SEED,
        "cases": {},
    }
    cases = {
        "t3_tiny": _t3,
        "s3tokenizer_tiny": _s3tokenizer,
        "flow_tiny": lambda o, m: _flow(o, m, released=False),
        "flow_released": lambda o, m: _flow(o, m, released=True),
        "hift_tiny": lambda o, m: _hift(o, m, released=False),
        "hift_released": lambda o, m: _hift(o, m, released=True),
        "campplus_released": _campplus,
        "voice_encoder_tiny": lambda o, m: _voice_encoder(o, m, released=False),
        "voice_encoder_released": lambda o, m: _voice_encoder(o, m, released=True),
    }
    for name, run in cases.items():
        out: dict[str, np.ndarray] = {}
        meta: dict = {}
        run(out, meta)
        np.savez_compressed(GOLDEN / f"{name}.npz", **out)
        manifest["cases"][name] = meta
        print(f"{name}: {', '.join(f'{k} {v.shape}' for k, v in out.items())}")
    text_meta: dict = {}
    (GOLDEN / "text.json").write_text(json.dumps(_text(text_meta), ensure_ascii=False, indent=1) + "\n")
    manifest["cases"]["text"] = text_meta
    (GOLDEN / "golden.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
