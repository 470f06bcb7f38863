"""Server file paths never reach a client: error texts say ``$DRYLOCAL_HOME/...`` for the data folder
and only the file name for any other absolute path (a library's message may name an input's full path)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ("redact_paths",)

# An absolute path not inside a URL (a URL's path follows its host, a word character, or "://").
_ABSOLUTE = re.compile(r"(?<![\w:/.~$-])/(?:[^\s'\"/,;()\[\]]+/)+([^\s'\"/,;()\[\]]+)")


def redact_paths(text: str, home: Path | None = None) -> str:
    if not text:
        return text
    if home is not None:
        text = text.replace(str(home), "$DRYLOCAL_HOME")
    return _ABSOLUTE.sub(r"\1", text)
