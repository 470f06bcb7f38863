"""Chatterbox Multilingual's text front end: punc_norm, the grapheme tokenizer on a small vocabulary
built here, the language steps, and the errors for languages whose package is missing."""

from __future__ import annotations

import json
import sys
import types
import unicodedata

import pytest
from tokenizers import Tokenizer, models

from model_registry.networks.chatterbox.text import (
    START_TEXT_TOKEN,
    STOP_TEXT_TOKEN,
    SUPPORTED_LANGUAGES,
    MultilingualTokenizer,
    load_cangjie_table,
    punc_norm,
)

# The special tokens upstream's tokenizer module lists, in its order.
SPECIAL = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
LANGUAGE_TAGS = [f"[{tag}]" for tag in SUPPORTED_LANGUAGES]
CANGJIE_TOKENS = [f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz0123456789."]
LETTERS = (
    set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-")
    | {chr(c) for c in range(0x0300, 0x0370)}  # combining accents, which NFKD splits off
    | {chr(c) for c in range(0x1100, 0x1200)}  # conjoining Hangul letters
    | {chr(c) for c in range(0x05D0, 0x05EB)}  # Hebrew letters
)


def _vocabulary_json(path, special=SPECIAL) -> str:
    vocab: dict[str, int] = {}
    for token in [*special, *sorted(LETTERS)]:
        vocab.setdefault(token, len(vocab))
    merges = [("t", "h"), ("th", "e")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="[UNK]"))
    tokenizer.add_special_tokens([*special, *LANGUAGE_TAGS, *CANGJIE_TOKENS])
    tokenizer.save(str(path))
    return str(path)


@pytest.fixture
def vocabulary_path(tmp_path):
    return _vocabulary_json(tmp_path / "grapheme_mtl_merged_expanded_v1.json")


@pytest.fixture
def cangjie_path(tmp_path):
    # 日 and 曰 share the code "a"; 日 is listed again under "zz" later, and its last code wins.
    entries = ["日\ta", "曰\ta", "你\toknf", "好\tvnd", "月\tb", "日\tzz", "是\tzz"]
    path = tmp_path / "Cangjie5_TC.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    return str(path)


@pytest.fixture
def tokenizer(vocabulary_path, cangjie_path):
    return MultilingualTokenizer.from_file(vocabulary_path, cangjie_path)


def _ids(tokenizer: MultilingualTokenizer, tokens: list[str]) -> list[int]:
    vocab = tokenizer._tokenizer.get_vocab()
    return [vocab[token] for token in tokens]


# --------------------------------------------------------------------------------------------------
# punc_norm
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "You need to add some text for me to talk."),
        ("hello world", "Hello world."),
        (" hello", "hello."),  # capitalized before the whitespace is collapsed, as upstream
        ("Too   many\n spaces\there", "Too many spaces here."),
        ("Wait...what", "Wait, what."),
        ("Wait... what", "Wait,  what."),  # the replacement's space is not collapsed again
        ("Wait…what", "Wait, what."),
        ("Note: this", "Note, this."),
        ("Yes - no", "Yes, no."),
        ("One;two", "One, two."),
        ("em—dash en–dash", "Em-dash en-dash."),
        ("“Quoted” and ‘single’", "\"Quoted\" and 'single'."),
        ("Space before , comma", "Space before, comma."),
        ("Question?", "Question?"),
        ("Exclaim!", "Exclaim!"),
        ("Trailing dash -", "Trailing dash -"),
        ("Chinese stop。", "Chinese stop。"),
        ("Full-width comma，", "Full-width comma，"),
        ("Trailing spaces   ", "Trailing spaces."),
    ],
)
def test_punc_norm_matches_upstream_rules(text, expected):
    assert punc_norm(text) == expected


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


def test_supported_languages_are_the_23_of_the_checkpoint():
    assert len(SUPPORTED_LANGUAGES) == 23
    assert {"en", "fr", "de", "es", "ko", "he", "ja", "zh", "ru", "sw"} <= SUPPORTED_LANGUAGES.keys()


def test_encode_starts_with_the_language_tag(tokenizer):
    assert tokenizer.encode("Bonjour.", "fr")[0] == _ids(tokenizer, ["[fr]"])[0]


def test_language_id_is_case_insensitive(tokenizer):
    assert tokenizer.encode("Hi.", "EN") == tokenizer.encode("Hi.", "en")


def test_unsupported_language_is_refused(tokenizer):
    with pytest.raises(ValueError, match=r"unsupported language_id 'xx'.*\ben\b"):
        tokenizer.encode("Hi.", "xx")


def test_text_is_lowercased_spaced_and_merged(tokenizer):
    assert tokenizer.encode("The Cat", "en") == _ids(tokenizer, ["[en]", "the", "[SPACE]", "c", "a", "t"])


def test_accents_are_split_off_by_nfkd(tokenizer):
    # "É" lowercases to "é", which NFKD writes as "e" and a combining acute accent.
    assert tokenizer.encode("É", "fr") == _ids(tokenizer, ["[fr]", "e", "\u0301"])


def test_compatibility_characters_are_folded_by_nfkd(tokenizer):
    # The "fi" ligature and a full-width digit are compatibility forms of plain letters.
    assert tokenizer.encode("\ufb01\uff11", "en") == _ids(tokenizer, ["[en]", "f", "i", "1"])


def test_korean_syllables_become_conjoining_letters(tokenizer):
    # 한 = ᄒ + ᅡ + ᆫ; the surrounding spaces are stripped before the tag is added.
    assert tokenizer.encode("  한 ", "ko") == _ids(tokenizer, ["[ko]", "\u1112", "\u1161", "\u11ab"])
    assert unicodedata.normalize("NFKD", "한") == "\u1112\u1161\u11ab"


def test_t3_text_ids_are_normalized_and_wrapped_in_t3s_start_and_stop(tokenizer):
    ids = tokenizer.t3_text_ids("hi", "en")
    assert ids == [START_TEXT_TOKEN, *tokenizer.encode("Hi.", "en"), STOP_TEXT_TOKEN]
    assert (START_TEXT_TOKEN, STOP_TEXT_TOKEN) == (255, 0)


def test_decode_reads_spaces_back(tokenizer):
    assert tokenizer.decode(tokenizer.encode("The cat.", "en")) == "[en]the cat."


def test_vocabulary_without_start_and_stop_is_refused(tmp_path):
    path = _vocabulary_json(tmp_path / "vocab.json", special=["[UNK]", "[SPACE]"])
    with pytest.raises(ValueError, match=r"no \[START\] or \[STOP\]"):
        MultilingualTokenizer.from_file(path)


# --------------------------------------------------------------------------------------------------
# Languages with their own package or table
# --------------------------------------------------------------------------------------------------


def test_japanese_without_pykakasi_is_refused_by_name(tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "pykakasi", None)  # makes the import fail, installed or not
    with pytest.raises(ValueError, match=r"Japanese \(ja\).*pykakasi"):
        tokenizer.encode("日本語", "ja")


def test_chinese_without_spacy_pkuseg_is_refused_by_name(tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy_pkuseg", None)
    with pytest.raises(ValueError, match=r"Chinese \(zh\).*spacy-pkuseg"):
        tokenizer.encode("你好", "zh")


def test_chinese_without_the_cangjie_table_is_refused(vocabulary_path):
    with pytest.raises(ValueError, match=r"Chinese \(zh\).*Cangjie5_TC\.json"):
        MultilingualTokenizer.from_file(vocabulary_path).encode("你好", "zh")


def test_cangjie_table_ranks_characters_sharing_a_code(cangjie_path):
    table = load_cangjie_table(cangjie_path)
    assert table["曰"] == "a1"  # second under "a"
    assert table["日"] == "zz"  # its last code, where it is first
    assert table["是"] == "zz1"
    assert table["你"] == "oknf"


def test_chinese_is_spelled_in_cangjie_per_segmented_word(tokenizer, monkeypatch):
    # The segmenter is spacy-pkuseg's to supply; one that cuts after two characters stands in for it.
    segmenter = types.SimpleNamespace(pkuseg=lambda: types.SimpleNamespace(cut=lambda text: [text[:2], text[2:]]))
    monkeypatch.setitem(sys.modules, "spacy_pkuseg", segmenter)
    spelled = ["[cj_o]", "[cj_k]", "[cj_n]", "[cj_f]", "[cj_.]", "[cj_v]", "[cj_n]", "[cj_d]", "[cj_.]"]
    # Characters outside the table stay as they are: 了 is not in the table (nor in this small vocabulary), and the
    # full-width ！ was folded to "!" by NFKD before the Cangjie step.
    assert tokenizer.encode("你好曰了！", "zh") == _ids(
        tokenizer, ["[zh]", *spelled, "[SPACE]", "[cj_a]", "[cj_1]", "[cj_.]", "[UNK]", "!"]
    )


def test_hebrew_without_its_diacritizer_passes_through(tokenizer, monkeypatch):
    # dicta-onnx is not an upstream requirement: upstream then tokenizes the letters as written.
    monkeypatch.setitem(sys.modules, "dicta_onnx", None)
    assert tokenizer.encode("שלום", "he") == _ids(tokenizer, ["[he]", "ש", "ל", "ו", "ם"])
