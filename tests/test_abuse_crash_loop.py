"""A request must not be able to kill the server, nor do it again at every restart.

A 9,500-character Piper text without sentence punctuation (within the documented limit) once grew the
process past 20 GB: VITS's attention is quadratic in its input and the text reached it as one piece.
"""

from __future__ import annotations

from model_registry.networks.piper import MAX_SENTENCE_PHONEMES, _bounded, phonemize


def test_unpunctuated_text_reaches_the_voice_in_bounded_pieces():
    text = "the quick brown fox jumps over a lazy dog " * 60  # 2,520 characters, no punctuation
    pieces = phonemize(text, "en-us")
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= MAX_SENTENCE_PHONEMES
    # Cut between words: no word's phonemes are split over two pieces.
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)


def test_a_word_longer_than_the_bound_is_cut_too():
    assert [len(p) for p in _bounded("a " + "x" * 900 + " b", 400)] == [1, 400, 400, 102]


def test_punctuated_sentences_are_left_as_they_were():
    pieces = phonemize("Hello there. How are you today?", "en-us")
    assert len(pieces) == 2 and pieces[0].endswith(".") and pieces[1].endswith("?")
