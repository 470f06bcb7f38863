"""Regenerate tests/golden/qwen3_tts/ from upstream Qwen3-TTS's own code (the ``qwen-tts`` package).

drylocal's Qwen3-TTS (model_registry/networks/qwen3_tts/) is written here; these files hold what
Qwen's code computes on the same inputs and the same weights, so tests/test_qwen3_tts_golden.py can
fail when the port drifts. Upstream never runs in drylocal's environment (it pins transformers 4.57
and imports torchaudio); this script runs in a separate virtual environment and imports upstream from
its own checkout, never copying it here.

How (what produced the committed files):

    python3 -m venv /tmp/golden-qt
    /tmp/golden-qt/bin/pip install torch==2.9.1 'torchaudio==2.9.*' transformers==4.57.3 librosa soundfile einops
    git clone https://github.com/QwenLM/Qwen3-TTS /tmp/qwen3-tts-src
    git -C /tmp/qwen3-tts-src checkout 022e286b98fbec7e1e916cb940cdf532cd9f488e   # qwen-tts 0.1.1
    /tmp/golden-qt/bin/python scripts/golden_qwen3_tts.py --upstream /tmp/qwen3-tts-src

(``pip download qwen-tts==0.1.1 --no-deps`` gives the same ``qwen_tts`` sources, file for file; an
unzipped wheel is accepted as ``--upstream``, its version read from the METADATA. The committed files
came from the checkout.)
Observed versions: torch 2.9.1 (CUDA build, run on the CPU), torchaudio 2.9.1, transformers 4.57.3,
librosa 0.11.0, numpy 2.4.6 (about 7 GB in the venv).

Stubs: ``sox`` and ``onnxruntime`` are empty modules here. Only upstream's 25 Hz tokenizer uses them
(qwen_tts/core/tokenizer_25hz/vq/speech_vq.py imports both at import time); no case here reaches it.
flash-attn is not installed; upstream imports it inside a try and falls back to SDPA.

Weights: every checkpoint is built by drylocal's own builder (tests/qwen3_tts_checkpoint.py), run
under the project's interpreter (``--project-python``, default .venv/bin/python) in a subprocess:
the three tiny random checkpoints (seeds 0, 1, 2 as tests/test_qwen3_tts.py builds them), a
full-size random codec (``speech_tokenizer/`` geometry of every release) and a full-size random
speaker encoder. Upstream loads those folders with its own ``from_pretrained``; the test rebuilds the
same weights and first checks their fingerprints, so a changed builder reads as "regenerate", not as
a porting bug. Everything runs on the CPU in float32.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "qwen3_tts"
CHECKPOINT_SEEDS = {"custom_voice": 0, "voice_design": 1, "voice_clone": 2}
FULL_CODEC_SEED = 0
FULL_SPEAKER_SEED = 0
FRAMES = 4  # greedy frames per generation case
REF_SECONDS = 0.8

# Generation cases, each run through upstream's Qwen3TTSModel wrapper (generate_custom_voice,
# generate_voice_design, generate_voice_clone) and on drylocal's side through Qwen3Voices.synthesize.
# "streaming" is upstream's non_streaming_mode negated. Greedy unless "sampling" says otherwise.
CASES: list[dict] = [
    {"name": "preset", "mode": "custom_voice", "text": "Hello there, friend.", "lang": "English", "voice": "Vivian",
     "streaming": False},
    {"name": "preset_streaming", "mode": "custom_voice", "text": "Hello there, friend.", "lang": "English",
     "voice": "Vivian", "streaming": True},
    {"name": "preset_instruct", "mode": "custom_voice", "text": "The quick brown fox jumps over the lazy dog.",
     "lang": "Spanish", "voice": "Eric", "instruct": "Speak happily.", "streaming": False},
    {"name": "preset_instruct_streaming", "mode": "custom_voice", "text": "The quick brown fox jumps.",
     "lang": "Auto", "voice": "Sohee", "instruct": "A warm, calm voice.", "streaming": True},
    {"name": "preset_dialect", "mode": "custom_voice", "text": "你好，世界。", "lang": "Chinese", "voice": "Dylan",
     "streaming": False},
    {"name": "design", "mode": "voice_design", "text": "Hello there, this is a short sentence.", "lang": "English",
     "instruct": "A calm, low voice of an old storyteller.", "streaming": False},
    {"name": "design_streaming", "mode": "voice_design", "text": "Hola, ¿qué tal?", "lang": "Auto",
     "instruct": "A warm voice.", "streaming": True},
    {"name": "clone_icl_streaming", "mode": "voice_clone", "text": "Hello there, this is a short sentence to speak.",
     "lang": "English", "ref_text": "The quick brown fox.", "streaming": True},
    {"name": "clone_icl_streaming_short", "mode": "voice_clone", "text": "Hello.", "lang": "Auto",
     "ref_text": "Hi.", "streaming": True},
    {"name": "clone_icl", "mode": "voice_clone", "text": "Hello there, friend.", "lang": "German",
     "ref_text": "The quick brown fox.", "streaming": False},
    {"name": "clone_xvector_streaming", "mode": "voice_clone", "text": "Hello there, friend.", "lang": "English",
     "streaming": True},
    {"name": "clone_xvector", "mode": "voice_clone", "text": "The lazy dog.", "lang": "Chinese", "streaming": False},
    # Sensitive to the repetition penalty's direction: a strong penalty over more frames.
    {"name": "preset_penalty", "mode": "custom_voice", "text": "Hello there, friend.", "lang": "English",
     "voice": "Ryan", "streaming": False, "frames": 10, "sampling": {"repetition_penalty": 1.6}},
    # End-of-speech made likely (its codec_head row scaled by 8 on both sides): the "no end before two
    # frames" rule decides where it stops.
    {"name": "preset_early_end", "mode": "custom_voice", "text": "Hello there, friend.", "lang": "English",
     "voice": "Aiden", "streaming": False, "frames": 6, "eos_scale": 32.0},
    # Sampled with a seed: temperature, top-k and top-p on both decoders, through the same RNG stream.
    {"name": "preset_sampled", "mode": "custom_voice", "text": "Hello there, friend.", "lang": "English",
     "voice": "Serena", "streaming": False, "frames": 6, "seed": 1234,
     "sampling": {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "subtalker_dosample": True,
                  "subtalker_temperature": 0.8, "subtalker_top_k": 30, "subtalker_top_p": 0.9}},
]
GREEDY = {"do_sample": False, "subtalker_dosample": False, "repetition_penalty": 1.05, "temperature": 0.9, "top_k": 50,
          "top_p": 1.0, "subtalker_temperature": 0.9, "subtalker_top_k": 50, "subtalker_top_p": 1.0}


# Float samples go to arrays.npz under their key; the JSON files hold the rest.
ARRAYS: dict[str, np.ndarray] = {}


def fingerprint(key: str, values, count: int = 256) -> dict:
    """A large tensor in kilobytes: its shape, float64 sum and absolute sum in the JSON, and about
    ``count`` of its values (every ``stride``-th of the flattened array, from ``stride // 2``) stored
    as float32 in arrays.npz under ``key``."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.ravel()
    stride = max(1, flat.size // count)
    ARRAYS[key] = flat[stride // 2 :: stride].astype(np.float32)
    return {"key": key, "shape": list(values.shape), "sum": float(flat.sum()), "abs_sum": float(np.abs(flat).sum()),
            "stride": stride}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference_wave(seconds: float, seed: int) -> np.ndarray:
    """A voiced-sounding 24 kHz test signal as int16 PCM (stored in the golden files, so both sides
    read the same samples): two harmonics under a slow tremolo, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.15 * np.sin(2 * np.pi * 540 * t + 0.3)
    wave = wave * (1 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.shape)
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------------
# Phase 1, under the project's interpreter: the checkpoints, from drylocal's own builder.
# --------------------------------------------------------------------------------------------------


def build_checkpoints(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import save_file

    from model_registry.networks.qwen3_tts.codec import SpeechCodec
    from model_registry.networks.qwen3_tts.speaker import SpeakerEncoder
    from tests.qwen3_tts_checkpoint import (
        PREPROCESSOR_CONFIG, _draw_weights, full_size_speech_tokenizer_config, write_tiny_qwen3_tts,
    )

    for mode, seed in CHECKPOINT_SEEDS.items():
        write_tiny_qwen3_tts(folder / mode, mode, seed=seed)
    codec_folder = folder / "full_codec"
    codec_folder.mkdir()
    config = full_size_speech_tokenizer_config()
    codec = SpeechCodec(config)
    _draw_weights(codec, torch.Generator().manual_seed(FULL_CODEC_SEED))
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(codec_folder / "model.safetensors"))
    (codec_folder / "config.json").write_text(json.dumps(config, indent=2))
    (codec_folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    torch.manual_seed(FULL_SPEAKER_SEED)
    speaker = SpeakerEncoder()
    save_file({k: v.contiguous() for k, v in speaker.state_dict().items()}, str(folder / "full_speaker.safetensors"))


# --------------------------------------------------------------------------------------------------
# Phase 2, in the golden venv: upstream's code on those checkpoints.
# --------------------------------------------------------------------------------------------------


def import_upstream(source: Path):
    for name in ("sox", "onnxruntime"):  # 25 Hz tokenizer only; see the module docstring
        stub = types.ModuleType(name)
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo looks modules up by spec
        sys.modules.setdefault(name, stub)
    sys.path.insert(0, str(source))
    import qwen_tts

    return qwen_tts


class Recorder:
    """Wraps upstream's Qwen3TTSForConditionalGeneration.generate and its talker's generate on one
    instance, keeping what they were given and what they returned."""

    def __init__(self, model) -> None:
        self.calls: list[dict] = []
        outer, talker_generate = model.generate, model.talker.generate

        def generate(**kwargs):
            record = {"kwargs": kwargs}
            self.calls.append(record)
            codes, hiddens = outer(**kwargs)
            record["codes"] = codes
            return codes, hiddens

        def talker(**kwargs):
            self.calls[-1]["prefill"] = kwargs["inputs_embeds"].detach().clone()
            self.calls[-1]["trailing"] = kwargs["trailing_text_hidden"].detach().clone()
            return talker_generate(**kwargs)

        model.generate = generate
        model.talker.generate = talker


def ids_list(tensor) -> list[int] | None:
    return None if tensor is None else [int(v) for v in tensor.view(-1).tolist()]


def run_generation_cases(qwen_tts, folders: dict[str, Path], ref_wave: np.ndarray) -> list[dict]:
    import torch

    models = {mode: qwen_tts.Qwen3TTSModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
              for mode, folder in folders.items()}
    recorders = {mode: Recorder(model.model) for mode, model in models.items()}
    ref = (ref_wave.astype(np.float32) / 32768.0, 24000)
    results = []
    for case in CASES:
        tts, recorder = models[case["mode"]], recorders[case["mode"]]
        frames = case.get("frames", FRAMES)
        # Upstream's generate returns one frame fewer than max_new_tokens when it never ends (the last
        # first code's other fifteen are never predicted), hence + 1.
        sampling = {**GREEDY, **case.get("sampling", {}), "max_new_tokens": frames + 1}
        head = tts.model.talker.codec_head.weight
        eos = tts.model.config.talker_config.codec_eos_token_id
        saved = head.data[eos].clone()
        if "eos_scale" in case:
            head.data[eos] *= case["eos_scale"]
        torch.manual_seed(case.get("seed", 0))
        common = {"language": case["lang"], "non_streaming_mode": not case["streaming"], **sampling}
        if case["mode"] == "custom_voice":
            wavs, rate = tts.generate_custom_voice(case["text"], speaker=case["voice"], instruct=case.get("instruct"),
                                                   **common)
        elif case["mode"] == "voice_design":
            wavs, rate = tts.generate_voice_design(case["text"], instruct=case["instruct"], **common)
        else:
            wavs, rate = tts.generate_voice_clone(case["text"], ref_audio=ref, ref_text=case.get("ref_text"),
                                                  x_vector_only_mode=case.get("ref_text") is None, **common)
        head.data[eos] = saved
        call = recorder.calls[-1]
        kwargs = call["kwargs"]
        result = {
            "case": case,
            "sampling": {k: v for k, v in sampling.items() if k != "max_new_tokens"},
            "frames": frames,
            "input_ids": ids_list(kwargs["input_ids"][0]),
            "instruct_ids": ids_list((kwargs.get("instruct_ids") or [None])[0]),
            "ref_ids": ids_list((kwargs.get("ref_ids") or [None])[0]),
            "codes": call["codes"][0].tolist(),
            "prefill": fingerprint(f"{case['name']}/prefill", call["prefill"][0].numpy()),
            "trailing": fingerprint(f"{case['name']}/trailing", call["trailing"][0].numpy(), count=128),
            "wave": fingerprint(f"{case['name']}/wave", wavs[0], count=512),
            "wave_length": int(len(wavs[0])),
            "sample_rate": int(rate),
        }
        prompt = kwargs.get("voice_clone_prompt")
        if prompt is not None:
            result["speaker_embedding"] = prompt["ref_spk_embedding"][0].float().tolist()
            ref_code = prompt["ref_code"][0]
            result["ref_codes"] = None if ref_code is None else ref_code.tolist()
        results.append(result)
        print(f"  {case['name']}: {len(result['codes'])} frames, prefill {result['prefill']['shape']}")
    return results


def run_talker_cases(qwen_tts, folder: Path, inputs: dict) -> dict:
    """Talker logits for a fixed embedding sequence, and the code predictor's greedy codes and logits
    for a fixed talker hidden state and first code."""
    import torch

    tts = qwen_tts.Qwen3TTSModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    talker = tts.model.talker
    with torch.no_grad():
        embeds = torch.from_numpy(inputs["talker_embeds"])
        logits = talker(inputs_embeds=embeds, use_cache=False).logits[0].numpy()
        hidden = torch.from_numpy(inputs["predictor_hidden"])
        first = torch.tensor([[int(inputs["predictor_first_code"])]])
        result = talker.code_predictor.generate(
            inputs_embeds=torch.cat([hidden, talker.get_input_embeddings()(first)], dim=1),
            max_new_tokens=talker.config.num_code_groups - 1, do_sample=False, output_logits=True,
            return_dict_in_generate=True,
        )
    return {
        "talker_logits": fingerprint("talker/logits", logits, count=2048),
        "talker_argmax": logits.argmax(-1).tolist(),
        "predictor_codes": result.sequences[0].tolist(),
        "predictor_logits": [fingerprint(f"predictor/logits{k}", step[0].numpy(), count=128)
                             for k, step in enumerate(result.logits)],
    }


def run_speaker_cases(qwen_tts, folders: dict[str, Path], full_speaker: Path, wave: np.ndarray,
                      quiet_wave: np.ndarray) -> dict:
    import torch
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSSpeakerEncoder, mel_spectrogram
    from safetensors.torch import load_file

    def mel(samples: np.ndarray) -> torch.Tensor:  # as extract_speaker_embedding calls it
        return mel_spectrogram(torch.from_numpy(samples).unsqueeze(0), n_fft=1024, num_mels=128, sampling_rate=24000,
                               hop_size=256, win_size=1024, fmin=0, fmax=12000).transpose(1, 2)

    audio = wave.astype(np.float32) / 32768.0
    mels = mel(audio)
    # Digital silence reaches the 1e-9 under the magnitude's root and the log's 1e-5 floor.
    quiet = mel(quiet_wave.astype(np.float32) / 32768.0)
    tts = qwen_tts.Qwen3TTSModel.from_pretrained(str(folders["voice_clone"]), local_files_only=True,
                                                 dtype=torch.float32)
    tiny = tts.model.extract_speaker_embedding(audio, 24000)
    encoder = Qwen3TTSSpeakerEncoder(Qwen3TTSSpeakerEncoderConfig()).eval()
    encoder.load_state_dict(load_file(str(full_speaker)), strict=True)
    with torch.no_grad():
        full = encoder(mels)[0]
    return {"mel": fingerprint("speaker/mel", mels[0].numpy(), count=1024), "mel_frames": int(mels.shape[1]),
            "quiet_mel": fingerprint("speaker/quiet_mel", quiet[0].numpy(), count=1024),
            "tiny_embedding": tiny.float().tolist(), "full_embedding": full.tolist()}


def run_codec_cases(qwen_tts, tiny: Path, full: Path, inputs: dict) -> dict:
    import torch

    results = {}
    for name, folder in (("tiny", tiny), ("full", full)):
        tokenizer = qwen_tts.Qwen3TTSTokenizer.from_pretrained(str(folder), dtype=torch.float32)
        codes = inputs[f"{name}_decode_codes"].astype(np.int64)
        (wave,), rate = tokenizer.decode([{"audio_codes": codes}])
        wave_in = inputs[f"{name}_encode_wave"].astype(np.float32) / 32768.0
        encoded = tokenizer.encode(wave_in, sr=24000).audio_codes[0]
        results[name] = {"decode": fingerprint(f"codec_{name}/decode", wave, count=1024),
                         "decode_length": int(len(wave)), "encode": encoded.tolist(), "sample_rate": int(rate)}
        if name == "tiny":
            chunk_codes = torch.from_numpy(inputs["tiny_chunked_codes"].astype(np.int64))
            with torch.no_grad():
                chunked = tokenizer.model.decoder.chunked_decode(chunk_codes.T[None], chunk_size=16)[0, 0].numpy()
            results[name]["chunked"] = fingerprint("codec_tiny/chunked", chunked, count=1024)
        print(f"  codec {name}: decode {len(wave)} samples, encode {tuple(encoded.shape)}")
    return results


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20260101)
    return {
        "reference_wave": reference_wave(REF_SECONDS, seed=1),
        "quiet_wave": np.concatenate([np.zeros(2400, np.int16), reference_wave(0.2, seed=4)]),
        "talker_embeds": rng.standard_normal((1, 12, 64)).astype(np.float32),
        "predictor_hidden": rng.standard_normal((1, 1, 64)).astype(np.float32),
        "predictor_first_code": np.array(1234),
        "tiny_decode_codes": rng.integers(0, 2048, (6, 16)).astype(np.int16),
        "tiny_chunked_codes": rng.integers(0, 2048, (40, 16)).astype(np.int16),
        "tiny_encode_wave": reference_wave(0.5, seed=2),
        "full_decode_codes": rng.integers(0, 2048, (3, 16)).astype(np.int16),
        "full_encode_wave": reference_wave(0.4, seed=3),
    }


def upstream_version(source: Path) -> str | None:
    import tomllib

    pyproject = source / "pyproject.toml"
    if pyproject.is_file():  # a checkout
        return tomllib.loads(pyproject.read_text())["project"]["version"]
    for metadata in source.glob("qwen_tts-*.dist-info/METADATA"):  # an unpacked wheel
        return next(line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines()
                    if line.startswith("Version:"))
    try:
        return importlib.metadata.version("qwen-tts")
    except importlib.metadata.PackageNotFoundError:
        return None


def upstream_commit(source: Path) -> str | None:
    if not (source / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    build = sub.add_parser("build", help="(internal, project interpreter) write the checkpoints into a folder")
    build.add_argument("folder", type=Path)
    parser.add_argument("--upstream", type=Path, help="Qwen3-TTS checkout or unpacked qwen-tts wheel")
    parser.add_argument("--project-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.command == "build":
        build_checkpoints(args.folder)
        return
    if args.upstream is None:
        parser.error("--upstream is required")

    import torch
    import transformers

    with tempfile.TemporaryDirectory(prefix="qwen3-tts-golden-") as scratch:
        folder = Path(scratch)
        print("building checkpoints with drylocal's builder ...")
        subprocess.run([args.project_python, __file__, "build", str(folder)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        folders = {mode: folder / mode for mode in CHECKPOINT_SEEDS}
        qwen_tts = import_upstream(args.upstream)
        inputs = make_inputs()
        print("generation cases ...")
        generation = run_generation_cases(qwen_tts, folders, inputs["reference_wave"])
        print("talker and code predictor ...")
        talker = run_talker_cases(qwen_tts, folders["custom_voice"], inputs)
        print("speaker encoder ...")
        speaker = run_speaker_cases(qwen_tts, folders, folder / "full_speaker.safetensors", inputs["reference_wave"],
                                    inputs["quiet_wave"])
        print("codec ...")
        codec = run_codec_cases(qwen_tts, folders["custom_voice"] / "speech_tokenizer", folder / "full_codec", inputs)
        digests = {
            **{f"{mode}/{name}": file_digest(folders[mode] / name)
               for mode in CHECKPOINT_SEEDS
               for name in ("model.safetensors", "speech_tokenizer/model.safetensors", "tokenizer.json")},
            "full_codec/model.safetensors": file_digest(folder / "full_codec" / "model.safetensors"),
            "full_speaker.safetensors": file_digest(folder / "full_speaker.safetensors"),
        }

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "inputs.npz", **inputs)
    np.savez_compressed(args.out / "arrays.npz", **ARRAYS)
    manifest = {
        "made_by": "scripts/golden_qwen3_tts.py",
        "upstream": {"package": "qwen-tts", "version": upstream_version(args.upstream),
                     "commit": upstream_commit(args.upstream)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
        "checkpoints": {"seeds": CHECKPOINT_SEEDS, "full_codec_seed": FULL_CODEC_SEED,
                        "full_speaker_seed": FULL_SPEAKER_SEED, "sha256": digests},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    (args.out / "generation.json").write_text(json.dumps(generation, ensure_ascii=False) + "\n")
    (args.out / "modules.json").write_text(json.dumps({"talker": talker, "speaker": speaker, "codec": codec}) + "\n")
    for path in sorted(args.out.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
