"""Counts tokens with a model's own tokenizer.json (the ``tokenizers`` library, no torch)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

__all__ = ("TokenCounter",)


class TokenCounter:
    """Per-model token counts for limits and prices; an estimate when the tokenizer is absent."""

    def __init__(self) -> None:
        self._cache: dict[Path, object | None] = {}
        self._lock = threading.Lock()

    def count(self, texts: list[str], weights_path: Path | None) -> list[int]:
        tokenizer = self._tokenizer(weights_path)
        if tokenizer is None:
            # Roughly four characters a token for English text, as the hosted quotes assume.
            return [max(1, math.ceil(len(t) / 4)) for t in texts]
        encodings = tokenizer.encode_batch(texts)
        return [len(e.ids) for e in encodings]

    def _tokenizer(self, weights_path: Path | None):
        if weights_path is None:
            return None
        file = weights_path / "tokenizer.json" if weights_path.is_dir() else None
        if file is None or not file.is_file():
            return None
        with self._lock:
            if file not in self._cache:
                try:
                    from tokenizers import Tokenizer
                except ImportError:
                    self._cache[file] = None
                else:
                    tokenizer = Tokenizer.from_file(str(file))
                    tokenizer.no_truncation()
                    tokenizer.no_padding()
                    self._cache[file] = tokenizer
            return self._cache[file]
