"""What each family runs, at full size on a GPU and tiny on the CPU, and how it is judged.

A family is one catalog row (its slug), a folder (folders.py), a warm-up job that makes the worker load the
model, then the timed jobs, each sent through the HTTP API as a client would. ``tiny_limits`` relax the row's
size limits to the tiny checkpoints' scale (everything else about the row, its quantization, features and
checks, stays the catalog's). ``direct`` names the raw library call the API is compared with (direct.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scripts.gpu_kit.folders import SmallNetwork, TinyBuilt

__all__ = ("CORE", "FAMILIES", "OPTIONAL", "Family", "Image", "Job", "Speech", "family_named")


@dataclass(frozen=True)
class Image:
    """A generated PNG upload of this size."""

    width: int
    height: int


@dataclass(frozen=True)
class Speech:
    """A generated speech recording (the project's Piper voice), cut to ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Job:
    label: str
    route: str
    fields: Mapping[str, Any]
    uploads: tuple[tuple[str, Image | Speech], ...] = ()
    """(form field, what to upload); a field named twice (``images[]``) sends several files."""
    repeat: int = 1
    per: str = "image"
    """The unit the time is divided by: image, step, video second, audio second, text."""
    count: float = 1.0
    """How many ``per`` one job makes (steps of a job, seconds of its video or audio)."""
    direct: bool = False
    """Also timed through the family's raw call, side by side."""


@dataclass(frozen=True)
class Family:
    name: str
    slug: str
    core: bool
    folder: TinyBuilt | SmallNetwork | None
    warmup: Job
    jobs: tuple[Job, ...]
    tiny_warmup: Job
    tiny_jobs: tuple[Job, ...]
    timeout: float
    """Seconds the family's process may take at full size (tiny: ``tiny_timeout``)."""
    tiny_timeout: float = 120.0
    tiny_limits: Mapping[str, Any] = field(default_factory=dict)
    direct: str | None = None
    """``diffusers``, ``faster-whisper`` or ``sentence-transformers``: the raw call of direct.py."""
    note: str = ""
    tiny_constants: tuple[tuple[str, str, Any], ...] = ()
    """(module, name, value) set in the tiny run alone: a pipeline's own working sizes, shrunk to the tiny scale."""
    tiny_defaults: Mapping[str, Any] = field(default_factory=dict)
    """The row's defaults, tiny: a random VLM's answer length."""
    full_size: bool = True
    """False: no full-size folder yet (the family is skipped at full size, and says why)."""


def _image(label: str, side: int, steps: int, repeat: int = 1, direct: bool = False, per: str = "image", **extra: Any) -> Job:
    fields = {"prompt": "a red cat on a blue sky, cinematic light", "width": side, "height": side, "steps": steps, "seed": 7, **extra}
    return Job(label, "txt2img", fields, repeat=repeat, per=per, count=steps if per == "step" else 1, direct=direct)


def _edit(label: str, side: int, steps: int, references: int, field_name: str = "images[]", **extra: Any) -> Job:
    fields = {"prompt": "make it blue", "width": side, "height": side, "steps": steps, "seed": 7, **extra}
    return Job(label, "img2img", fields, tuple((field_name, Image(side, side)) for _ in range(references)), per="step", count=steps)


def _video(label: str, route: str, side: int, frames: int, fps: int, steps: int, first_frame: bool = False) -> Job:
    fields = {"prompt": "a robot dancing in the rain", "width": side, "height": side, "frames": frames, "fps": fps,
              "steps": steps, "seed": 7}
    uploads = (("first_frame_image", Image(side, side)),) if first_frame else ()
    # The pipelines make 8k+1 frames (engine/tasks/_video_generation.ltx_frames); seconds are those asked for.
    return Job(label, route, fields, uploads, per="video second", count=frames / fps)


def _speech(label: str, seconds: float, repeat: int = 1, direct: bool = False) -> Job:
    return Job(label, "audiofile2txt", {"include_ts": "0", "return_result_in_response": "1"}, (("audio", Speech(seconds)),),
               repeat=repeat, per="audio second", count=seconds, direct=direct)


def _words(count: int) -> str:
    """``count`` one-letter words: one token each for the tiny tokenizer (two with the release's)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join(letters[i % 26] for i in range(count))


def _texts(label: str, texts: int, words: int, repeat: int = 1, direct: bool = False) -> Job:
    return Job(label, "txt2embedding", {"input": [_words(words)] * texts, "return_result_in_response": True},
               repeat=repeat, per="text", count=texts, direct=direct)


def _speak(label: str, text: str, repeat: int = 1, **fields: Any) -> Job:
    """Speech out: its time is divided by the seconds of audio it made (the real-time factor)."""
    return Job(label, "txt2audio", {"text": text, "format": "wav", **fields}, repeat=repeat, per="second of speech")


def _music(label: str, seconds: float, steps: int) -> Job:
    fields = {"caption": "calm piano with soft strings", "duration": seconds, "inference_steps": steps, "seed": 5,
              "format": "wav"}
    return Job(label, "txt2music", fields, per="audio second", count=seconds)


def _page(label: str, width: int, height: int) -> Job:
    return Job(label, "img2txt", {"format": "text", "return_result_in_response": "1"}, (("image", Image(width, height)),))


def _upscale(label: str, side: int, repeat: int = 1) -> Job:
    return Job(label, "img-upscale", {}, (("image", Image(side, side)),), repeat=repeat)


def _matte(label: str, side: int, repeat: int = 1) -> Job:
    return Job(label, "img-rmbg", {}, (("image", Image(side, side)),), repeat=repeat)


_TINY_IMAGE = {"min_width": 32, "min_height": 32, "max_width": 256, "max_height": 256, "resolution_step": 16}
_TINY_VIDEO = {"min_width": 32, "min_height": 32, "max_width": 128, "max_height": 128, "resolution_step": 32,
               "min_frames": 5, "max_frames": 24}


def _whisper_large_v3(folder: Path) -> None:
    """large-v3 hears 128 mel bins; the tiny folder's feature extractor has 80."""
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=128).save_pretrained(str(folder))


def _bge_m3_8192(folder: Path) -> None:
    """The release's sequence length (the tiny folder's is 128)."""
    import json

    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        file = folder / name
        if file.is_file():
            data = json.loads(file.read_text())
            data[key] = 8192
            file.write_text(json.dumps(data, indent=1))


def _qwen_processor_pixels(folder: Path) -> None:
    """The release's image processor bounds (the tiny folder keeps pictures small for a CPU)."""
    import json

    file = folder / "processor" / "preprocessor_config.json"
    data = json.loads(file.read_text())
    data.update({"min_pixels": 3136, "max_pixels": 12845056})
    file.write_text(json.dumps(data, indent=1))


CORE: tuple[Family, ...] = (
    Family(
        "whisper-large-v3", "WhisperLargeV3", True,
        TinyBuilt("tests.whisper_checkpoint:build_tiny_whisper", "WhisperLargeV3", full_fixups=_whisper_large_v3),
        _speech("warm-up 5 s", 5.0),
        (_speech("120 s of speech", 120.0, repeat=2, direct=True),),
        _speech("warm-up 2 s", 2.0),
        (_speech("4 s of speech", 4.0, direct=True),),
        timeout=240, direct="faster-whisper",
        note="drylocal converts the transformers checkpoint to CTranslate2 float16 at its first load (3 GB written)",
    ),
    Family(
        "realesrgan", "RealESRGAN_x4plus", True,
        SmallNetwork("small_networks/realesrgan_x4plus.json", "RealESRGAN_x4plus.pth",
                     {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}, wrap="params_ema"),
        _upscale("warm-up 64²", 64), (_upscale("1024² → 4096²", 1024, repeat=2),),
        _upscale("warm-up 16²", 16), (_upscale("32² → 128²", 32, repeat=2),),
        timeout=90,
    ),
    Family(
        "ben2", "Ben2", True,
        SmallNetwork("small_networks/ben2.json", "BEN2_Base.pth",
                     {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8], "window_size": 7,
                      "decoder_dim": 16, "mask_head_dim": 24}, wrap="model_state_dict",
                     tiny_config={"working_size": 384}),
        _matte("warm-up 256²", 256), (_matte("1024²", 1024, repeat=3),),
        _matte("warm-up 64²", 64), (_matte("128²", 128, repeat=2),),
        timeout=90, tiny_limits={"max_width": 512, "max_height": 512},
    ),
    Family(
        "bge-m3", "Bge_M3_INT8", True,
        TinyBuilt("tests.checkpoints:build_tiny_xlmr_sentence_transformer", "Bge_M3_INT8", full_fixups=_bge_m3_8192),
        _texts("warm-up 1 × 16", 1, 16),
        (_texts("32 × 8192 tokens", 32, 8188, repeat=2, direct=True),),
        _texts("warm-up 1 × 8", 1, 8),
        (_texts("8 × 120 tokens", 8, 120, repeat=2, direct=True),),
        timeout=150, direct="sentence-transformers",
        note="each text is 8,188 one-letter words: 8,190 tokens with <s> and </s> in the tiny tokenizer",
    ),
    Family(
        "flux1-schnell", "Flux1schnell", True,
        TinyBuilt("tests.flux_checkpoint:build_tiny_flux", "Flux1schnell"),
        _image("warm-up 256² 1 step", 256, 1),
        (_image("1024² 4 steps", 1024, 4, repeat=3, direct=True), _image("2048² 4 steps", 2048, 4, per="step")),
        _image("warm-up 32² 1 step", 32, 1),
        (_image("64² 4 steps", 64, 4, repeat=3, direct=True), _image("96² 4 steps", 96, 4, per="step")),
        timeout=240, tiny_limits=_TINY_IMAGE, direct="diffusers",
    ),
    Family(
        "zimage-turbo-int8", "ZImageTurbo_INT8", True,
        TinyBuilt("tests.image_checkpoints:build_tiny_zimage", "ZImageTurbo_INT8"),
        _image("warm-up 256² 1 step", 256, 1),
        (_image("1024² 8 steps", 1024, 8, repeat=2, per="step"),),
        _image("warm-up 32² 1 step", 32, 1),
        (_image("64² 4 steps", 64, 4, repeat=2, per="step"),),
        timeout=180, tiny_limits=_TINY_IMAGE,
    ),
    Family(
        "flux2-klein-4b", "Flux_2_Klein_4B_BF16", True,
        TinyBuilt("tests.image_checkpoints:build_tiny_flux2_klein", "Flux_2_Klein_4B_BF16"),
        _image("warm-up 256²", 256, 4),
        (_image("1024² 4 steps", 1024, 4, repeat=2, per="step"), _edit("img2img 1024², 3 references", 1024, 4, 3)),
        _image("warm-up 32²", 32, 4),
        (_image("64² 4 steps", 64, 4, repeat=2, per="step"), _edit("img2img 32², 3 references", 32, 4, 3)),
        timeout=180, tiny_limits=_TINY_IMAGE,
    ),
    Family(
        "qwen-image-edit-nf4", "QwenImageEdit_Plus_NF4", True,
        TinyBuilt("tests.image_checkpoints:build_tiny_qwen_image_edit_plus", "QwenImageEdit_Plus_NF4",
                  cut={"transformer": {"num_layers": 4}}, full_fixups=_qwen_processor_pixels),
        _edit("warm-up 256² 1 step", 256, 1, 1, guidance=4),
        (_edit("img2img 1024² 8 steps, true CFG", 1024, 8, 1, guidance=4),),
        _edit("warm-up 32² 1 step", 32, 1, 1, guidance=4),
        (_edit("img2img 64² 4 steps, true CFG", 64, 4, 1, guidance=4),),
        timeout=240, tiny_limits=_TINY_IMAGE,
        # The pipeline encodes each reference at 1024² (384² for the VL encoder) whatever its size: a minute and a
        # half per job for the tiny VAE on a CPU.
        tiny_constants=(("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus", "VAE_IMAGE_SIZE", 64 * 64),
                        ("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus", "CONDITION_IMAGE_SIZE", 64 * 64)),
        note="transformer cut to 4 of its 60 blocks, NF4; weights, peak and time extrapolated to 60 by the cut "
             "component's share (its weights by their computed ratio, its time by its measured forward time)",
    ),
    Family(
        "ltx-video-13b", "Ltxv_13B_0_9_8_Distilled_FP8", True,
        TinyBuilt("tests.video_checkpoint:build_tiny_ltx", "Ltxv_13B_0_9_8_Distilled_FP8"),
        _video("warm-up 256² × 17 frames 1 step", "txt2video", 256, 17, 30, 1),
        (_video("512² × 121 frames 4 steps", "txt2video", 512, 120, 30, 4),
         _video("img2video 512² × 25 frames 4 steps (condition pipeline)", "img2video", 512, 25, 30, 4, first_frame=True)),
        _video("warm-up 32² × 9 frames 1 step", "txt2video", 32, 9, 30, 1),
        (_video("64² × 17 frames 2 steps", "txt2video", 64, 17, 30, 2),
         _video("img2video 64² × 9 frames 2 steps (condition pipeline)", "img2video", 64, 9, 30, 2, first_frame=True)),
        timeout=240, tiny_limits=_TINY_VIDEO,
    ),
    Family(
        "ltx2-19b", "Ltx2_19B_Dist_FP8", True,
        TinyBuilt("tests.ltx2_checkpoint:build_tiny_ltx2", "Ltx2_19B_Dist_FP8"),
        _video("warm-up 256² × 17 frames 1 step", "txt2video", 256, 17, 24, 1),
        (_video("768² × 121 frames 8 steps", "txt2video", 768, 121, 24, 8),
         _video("img2video 512² × 25 frames 4 steps (condition pipeline)", "img2video", 512, 25, 24, 4, first_frame=True)),
        _video("warm-up 32² × 9 frames 1 step", "txt2video", 32, 9, 24, 1),
        (_video("64² × 17 frames 2 steps", "txt2video", 64, 17, 24, 2),
         _video("img2video 64² × 9 frames 2 steps (condition pipeline)", "img2video", 64, 9, 24, 2, first_frame=True)),
        timeout=300, tiny_limits=_TINY_VIDEO,
    ),
)

def _kokoro_82m(folder: Path) -> None:
    """Kokoro's release geometry from model_registry/configs/kokoro_82m, saved whole (328 MB of random weights)
    as the tests' builder saves the tiny one: KModel's parts in ``kokoro-v1_0.pth``."""
    import json
    import warnings

    import torch
    from kokoro.model import KModel

    from model_registry.weight_memory import read_config
    from tests.kokoro_checkpoint import KOKORO_VOCAB

    config = {k: v for k, v in read_config("kokoro_82m/model.json").items() if not k.startswith("_")}
    config["vocab"] = KOKORO_VOCAB
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    empty = folder / "_empty.pth"
    torch.save({}, empty)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (UserWarning, FutureWarning))
            model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(empty))
    finally:
        empty.unlink()
    parts = {name: getattr(model, name).state_dict() for name in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")}
    torch.save(parts, folder / "kokoro-v1_0.pth")


def _qwen3_tts_frames(folder: Path) -> None:
    """A random talker never says end-of-speech: two seconds of frames at most, not a sentence's worth."""
    import json

    file = folder / "generation_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "max_new_tokens": 24}, indent=1))


def _nanonets_pixels(folder: Path) -> None:
    """The release's image processor bounds (the tiny folder keeps pages small for a CPU)."""
    import json

    file = folder / "preprocessor_config.json"
    data = json.loads(file.read_text())
    data.update({"min_pixels": 3136, "max_pixels": 12845056})
    file.write_text(json.dumps(data, indent=1))


_SENTENCE = "The quick brown fox jumps over the lazy dog, and a local server answers the same requests."
_SHORT = "The quick brown fox."

OPTIONAL: tuple[Family, ...] = (
    Family(
        "kokoro", "Kokoro", False,
        TinyBuilt("tests.kokoro_checkpoint:build_tiny_kokoro", "Kokoro", swap=False, full_fixups=_kokoro_82m),
        _speak("warm-up", "Hello there.", voice="af_heart", lang="en-us"),
        (_speak("one sentence", _SENTENCE, repeat=3, voice="af_heart", lang="en-us"),),
        _speak("warm-up", "Hi.", voice="af_heart", lang="en-us"),
        (_speak("a few words", _SHORT, voice="af_heart", lang="en-us"),),
        timeout=150,
    ),
    Family(
        "qwen3-tts", "Qwen3_TTS", False,
        TinyBuilt("tests.qwen3_tts_checkpoint:write_tiny_qwen3_tts", "Qwen3_TTS", tiny_fixups=_qwen3_tts_frames),
        _speak("warm-up", "Hello there, friend.", voice="Vivian", lang="English"),
        (_speak("one sentence", _SENTENCE, repeat=2, voice="Vivian", lang="English"),),
        _speak("warm-up", "Hello there, friend.", voice="Vivian", lang="English"),
        (_speak("a few words", _SHORT, voice="Vivian", lang="English"),),
        timeout=200, full_size=False,
        note="full size needs the talker, code predictor and 12 Hz codec laid out as the release is (not built yet)",
    ),
    Family(
        "chatterbox", "Chatterbox", False,
        TinyBuilt("tests.chatterbox_checkpoint:write_tiny_chatterbox", "Chatterbox"),
        _speak("warm-up", "Hello there, friend.", lang="en"),
        (_speak("one sentence", _SENTENCE, repeat=2, lang="en"),),
        _speak("warm-up", "Hello there, friend.", lang="en"),
        (_speak("a few words", _SHORT, lang="en"),),
        timeout=200, full_size=False,
        note="full size needs T3, S3Gen and the voice encoder laid out as the release is (not built yet)",
    ),
    Family(
        "ace-step", "ACE-Step-v1.5-turbo", False,
        TinyBuilt("tests.music_checkpoint:build_tiny_ace_step", "ACE-Step-v1.5-turbo"),
        _music("warm-up 10 s, 1 step", 10, 1),
        (_music("30 s, 8 steps", 30, 8), _music("240 s, 8 steps", 240, 8)),
        _music("warm-up 1 s, 1 step", 1, 1),
        (_music("2 s, 2 steps", 2, 2), _music("4 s, 2 steps", 4, 2)),
        timeout=240, tiny_limits={"min_duration": 1, "max_duration": 8},
    ),
    Family(
        "nanonets-ocr", "Nanonets_Ocr_S_F16", False,
        TinyBuilt("tests.vlm_checkpoint:build_tiny_qwen25_vl", "Nanonets_Ocr_S_F16", full_fixups=_nanonets_pixels),
        _page("warm-up 256²", 256, 256),
        (_page("an A4 page at 150 dpi (1240 x 1754)", 1240, 1754),),
        _page("warm-up 64²", 64, 64),
        (_page("a page of 300 x 200", 300, 200),),
        timeout=240, tiny_limits={"max_image_pixels": 25_088}, tiny_defaults={"max_new_tokens": 12},
        note="random weights answer until max_new_tokens: the time is that of the longest answer",
    ),
)

FAMILIES: tuple[Family, ...] = CORE + OPTIONAL


def family_named(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name or family.slug == name:
            return family
    raise KeyError(f"no family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")
