"""Chatterbox Multilingual's text front end: the punctuation clean-up and the grapheme tokenizer that
turn a request's text into T3's text ids.

T3 reads characters, not words. :func:`punc_norm` first tidies the text as ``generate`` does
(capitalizes the first letter, collapses whitespace, rewrites ellipses, colons, semicolons, dashes and
curly quotes to what the training data used, and adds a full stop when the text ends without one).
:meth:`MultilingualTokenizer.encode` then lowercases, applies Unicode NFKD (accents and Hangul
syllables come apart into their base letters and combining marks), applies the language's own step,
prefixes the language tag (``[fr]``), spells spaces as ``[SPACE]`` and runs the released
``grapheme_mtl_merged_expanded_v1.json`` vocabulary (a Hugging Face ``tokenizers`` file).
:meth:`MultilingualTokenizer.t3_text_ids` does both and wraps the ids in T3's start and stop ids.

The language steps, and what they need:

- ``ko``: Hangul syllables into their conjoining letters (NFKD has already done this) and the text
  stripped of surrounding whitespace. Nothing extra.
- ``zh``: words segmented with ``spacy-pkuseg`` and joined by spaces, then each Chinese character
  spelled as its Cangjie input code (``[cj_a][cj_b]...[cj_.]``, plus its rank among characters sharing
  that code) from the release's ``Cangjie5_TC.json``.
- ``ja``: kanji read as hiragana with ``pykakasi``; katakana and kana stay.
- ``he``: vowel points added with ``dicta-onnx``; ``ru``: stress marks added with
  ``russian_text_stresser``.

Differences from upstream (``MTLTokenizer`` in ``chatterbox/models/tokenizers/tokenizer.py``):

- ``chatterbox-tts`` requires pykakasi and spacy-pkuseg, and without them upstream would quietly feed
  T3 text it never saw; here Japanese without pykakasi, or Chinese without spacy-pkuseg or the Cangjie
  table, is refused with a ``ValueError`` naming the language and what is missing. The Hebrew and
  Russian packages are not upstream requirements (the Russian one is not on PyPI), so as upstream
  those steps run when the package is importable and otherwise pass the text through (logged once).
- The Cangjie table is a file given to :meth:`MultilingualTokenizer.from_file`, not downloaded.
- A language is required and must be one of :data:`SUPPORTED_LANGUAGES` (``generate`` checks the
  same); it is lowercased first, as ``generate`` does before calling the tokenizer.
- The Hangul step decomposes assigned syllables only (U+AC00 to U+D7A3); upstream's range runs to
  U+D7AF and would split the twelve unassigned code points after the last syllable into nonsense
  letters. After NFKD no syllable is left either way.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from tokenizers import Tokenizer

__all__ = (
    "START_TEXT_TOKEN",
    "STOP_TEXT_TOKEN",
    "SUPPORTED_LANGUAGES",
    "MultilingualTokenizer",
    "load_cangjie_table",
    "punc_norm",
)

log = logging.getLogger(__name__)

SUPPORTED_LANGUAGES: Mapping[str, str] = MappingProxyType(
    {
        "ar": "Arabic",
        "da": "Danish",
        "de": "German",
        "el": "Greek",
        "en": "English",
        "es": "Spanish",
        "fi": "Finnish",
        "fr": "French",
        "he": "Hebrew",
        "hi": "Hindi",
        "it": "Italian",
        "ja": "Japanese",
        "ko": "Korean",
        "ms": "Malay",
        "nl": "Dutch",
        "no": "Norwegian",
        "pl": "Polish",
        "pt": "Portuguese",
        "ru": "Russian",
        "sv": "Swedish",
        "sw": "Swahili",
        "tr": "Turkish",
        "zh": "Chinese",
    }
)
"""Language tag -> English name, the 23 languages of the multilingual T3 checkpoint."""

# T3Config fixes these ids for every checkpoint; they are not looked up in the vocabulary.
START_TEXT_TOKEN = 255
STOP_TEXT_TOKEN = 0

# The vocabulary must carry these (upstream asserts it), though T3 is wrapped in the ids above.
_START = "[START]"
_STOP = "[STOP]"
_SPACE = "[SPACE]"

# What punc_norm says when given nothing, so that T3 still has a sentence to speak.
_EMPTY_TEXT = "You need to add some text for me to talk."

# Order matters: "..." before the lone characters, " - " before the dashes become "-", and " ," last
# so the commas the earlier rules produce lose a preceding space too.
_PUNCTUATION = (
    ("...", ", "),
    ("…", ", "),
    (":", ","),
    (" - ", ", "),
    (";", ", "),
    ("—", "-"),
    ("–", "-"),
    (" ,", ","),
    ("“", '"'),
    ("”", '"'),
    ("‘", "'"),
    ("’", "'"),
)
_SENTENCE_ENDS = (".", "!", "?", "-", ",", "、", "，", "。", "？", "！")

# Unicode blocks upstream's Japanese step tests characters against.
_KANJI = range(0x4E00, 0x9FFF + 1)  # CJK Unified Ideographs
_KATAKANA = range(0x30A1, 0x30FA + 1)  # small a .. vu, without the prolonged-sound mark
_PARTICLES_SPOKEN_APART = ("は", "へ")

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_VOWELS, _FINALS = 21, 28


def punc_norm(text: str) -> str:
    """The text ``generate`` hands to the tokenizer: upstream's ``punc_norm``, rule for rule.

    The first character is capitalized before whitespace is collapsed, so text starting with a space
    stays lowercase, as upstream leaves it.
    """
    if not text:
        return _EMPTY_TEXT
    if text[0].islower():
        text = text[0].upper() + text[1:]
    text = " ".join(text.split())
    for old, new in _PUNCTUATION:
        text = text.replace(old, new)
    text = text.rstrip(" ")
    if not text.endswith(_SENTENCE_ENDS):
        text += "."
    return text


def load_cangjie_table(path: str | os.PathLike[str]) -> dict[str, str]:
    """Character -> Cangjie spelling from the release's ``Cangjie5_TC.json`` (a JSON list of
    ``"character<TAB>code..."`` lines).

    Characters that share a code are told apart by their rank among that code's lines, appended as a
    digit (``"code1"``) from the second on; a character listed twice keeps its last code and the rank
    of its first line under that code, as upstream's lookup does.
    """
    with open(path, encoding="utf-8") as file:
        entries = json.load(file)
    code_of: dict[str, str] = {}
    rank: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    for entry in entries:
        character, code = entry.split("\t")[:2]
        code_of[character] = code
        rank.setdefault((code, character), counts.get(code, 0))
        counts[code] = counts.get(code, 0) + 1
    table = {}
    for character, code in code_of.items():
        index = rank[(code, character)]
        table[character] = code + (str(index) if index > 0 else "")
    return table


def _decompose_hangul(text: str) -> str:
    letters = []
    for char in text:
        point = ord(char)
        if not _HANGUL_FIRST <= point <= _HANGUL_LAST:
            letters.append(char)
            continue
        offset = point - _HANGUL_FIRST
        letters.append(chr(0x1100 + offset // (_VOWELS * _FINALS)))
        letters.append(chr(0x1161 + offset % (_VOWELS * _FINALS) // _FINALS))
        if offset % _FINALS:
            letters.append(chr(0x11A7 + offset % _FINALS))
    return "".join(letters)


class MultilingualTokenizer:
    """Text -> T3 text ids for Chatterbox Multilingual; upstream's ``MTLTokenizer.text_to_tokens``."""

    def __init__(self, tokenizer: Tokenizer, cangjie: Mapping[str, str] | None = None):
        vocabulary = tokenizer.get_vocab()
        missing = [token for token in (_START, _STOP) if token not in vocabulary]
        if missing:
            raise ValueError(f"not a Chatterbox text vocabulary: it has no {' or '.join(missing)} token")
        self._tokenizer = tokenizer
        self._cangjie = cangjie
        # Optional language tools, built on first use: a segmenter or model load is slow.
        self._tools: dict[str, Any] = {}

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], cangjie_path: str | os.PathLike[str] | None = None
    ) -> MultilingualTokenizer:
        """From ``grapheme_mtl_merged_expanded_v1.json`` and, for Chinese, ``Cangjie5_TC.json``."""
        cangjie = load_cangjie_table(cangjie_path) if cangjie_path is not None else None
        return cls(Tokenizer.from_file(os.fspath(path)), cangjie)

    def encode(self, text: str, language_id: str) -> list[int]:
        """Vocabulary ids of ``text`` (already through :func:`punc_norm`) prefixed by its language tag."""
        language = language_id.lower()
        if language not in SUPPORTED_LANGUAGES:
            raise ValueError(
                f"unsupported language_id {language_id!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}"
            )
        text = unicodedata.normalize("NFKD", text.lower())
        if language == "zh":
            text = self._to_cangjie(text)
        elif language == "ja":
            text = self._to_hiragana(text)
        elif language == "he":
            text = self._optional_step("he", "dicta-onnx", text)
        elif language == "ko":
            text = _decompose_hangul(text).strip()
        elif language == "ru":
            text = self._optional_step("ru", "russian_text_stresser", text)
        text = f"[{language}]{text}".replace(" ", _SPACE)
        return self._tokenizer.encode(text).ids

    def t3_text_ids(self, text: str, language_id: str) -> list[int]:
        """T3's text input for a request, as ``generate`` builds it: punc_norm, encode, and T3's
        start and stop ids around."""
        return [START_TEXT_TOKEN, *self.encode(punc_norm(text), language_id), STOP_TEXT_TOKEN]

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of vocabulary ids, for logs and tests: ``[SPACE]`` back to spaces, the stop
        and unknown tokens dropped."""
        text = self._tokenizer.decode(list(ids), skip_special_tokens=False)
        return text.replace(" ", "").replace(_SPACE, " ").replace(_STOP, "").replace("[UNK]", "")

    # ----------------------------------------------------------------------------------------------
    # Language steps that need a package or a table.
    # ----------------------------------------------------------------------------------------------

    def _to_cangjie(self, text: str) -> str:
        if self._cangjie is None:
            raise ValueError(
                "Chinese (zh) needs the Cangjie table: pass cangjie_path (the release's Cangjie5_TC.json)"
            )
        if "pkuseg" not in self._tools:
            try:
                from spacy_pkuseg import pkuseg
            except ImportError as error:
                raise ValueError("Chinese (zh) needs the spacy-pkuseg package, which is not installed") from error
            self._tools["pkuseg"] = pkuseg()
        spelled = []
        for char in " ".join(self._tools["pkuseg"].cut(text)):
            code = self._cangjie.get(char) if unicodedata.category(char) == "Lo" else None
            if code is None:  # punctuation, spaces, kana, letters: kept as they are
                spelled.append(char)
            else:
                spelled.append("".join(f"[cj_{c}]" for c in code) + "[cj_.]")
        return "".join(spelled)

    def _to_hiragana(self, text: str) -> str:
        if "kakasi" not in self._tools:
            try:
                import pykakasi
            except ImportError as error:
                raise ValueError("Japanese (ja) needs the pykakasi package, which is not installed") from error
            self._tools["kakasi"] = pykakasi.kakasi()
        pieces = []
        for part in self._tools["kakasi"].convert(text):
            original, hiragana = part["orig"], part["hira"]
            if any(ord(c) in _KANJI for c in original):
                # A reading that starts with the topic or direction particle is spoken as a new word.
                if hiragana.startswith(_PARTICLES_SPOKEN_APART):
                    hiragana = " " + hiragana
                pieces.append(hiragana)
            else:
                pieces.append(original)  # katakana and everything else as written
        return unicodedata.normalize("NFKD", "".join(pieces))

    def _optional_step(self, language: str, package: str, text: str) -> str:
        """Hebrew vowel points or Russian stress when the package is there; otherwise the text as is,
        as upstream runs when its optional package is missing or fails."""
        tool = self._tools.get(language)
        if tool is None:
            try:
                if language == "he":
                    from dicta_onnx import Dicta

                    tool = Dicta().add_diacritics
                else:
                    from russian_text_stresser.text_stresser import RussianTextStresser

                    tool = RussianTextStresser().stress_text
            except Exception as error:  # upstream tolerates any failure here, not only ImportError
                log.warning("%s text goes to T3 without %s's step: %s", SUPPORTED_LANGUAGES[language], package, error)
                tool = self._tools[language] = _unchanged
            else:
                self._tools[language] = tool
        try:
            return tool(text)
        except Exception as error:
            log.warning("%s's step failed, text passed on as is: %s", package, error)
            return text


def _unchanged(text: str) -> str:
    return text
