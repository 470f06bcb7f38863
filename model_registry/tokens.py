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
        """By model folder: a submit asks for every request, and finding tokenizer.json again is two stats."""
        self._lock = threading.Lock()

    def count(self, texts: list[str], weights_path: Path | None) -> list[int]:
        tokenizer = self._tokenizer(weights_path)
        if tokenizer is None:
            # Roughly four characters a token for English text, as the hosted quotes assume.
            return [max(1, math.ceil(len(t) / 4)) for t in texts]
        if len(texts) == 1:  # encode_batch hands even one text to its thread pool
            return [len(tokenizer.encode(texts[0]).ids)]
        encodings = tokenizer.encode_batch(texts)
        return [len(e.ids) for e in encodings]

    def _tokenizer(self, weights_path: Path | None):
        if weights_path is None:
            return None
        if weights_path in self._cache:
            return self._cache[weights_path]
        file = weights_path / "tokenizer.json" if weights_path.is_dir() else None
        if file is None or not file.is_file():
            return None  # not kept: a tokenizer pulled later is found
        with self._lock:
            if weights_path not in self._cache:
                try:
                    from tokenizers import Tokenizer
                except ImportError:
                    self._cache[weights_path] = None
                else:
                    tokenizer = Tokenizer.from_file(str(file))
                    tokenizer.no_truncation()
                    tokenizer.no_padding()
                    self._cache[weights_path] = tokenizer
            return self._cache[weights_path]
