"""chunk_text: sentence, then word, then hard boundaries; never longer than max_chars."""

from __future__ import annotations

import pytest

from avatar_rtc.api import chunk_text


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("Hello there. How are you?", 100) == ["Hello there. How are you?"]


def test_blank_text_gives_no_chunks() -> None:
    assert chunk_text("   \n ", 10) == []


def test_sentences_are_packed_and_split_at_sentence_ends() -> None:
    text = "One two three. Four five six! Seven eight nine? Ten."
    assert chunk_text(text, 30) == ["One two three. Four five six!", "Seven eight nine? Ten."]


def test_line_breaks_end_sentences() -> None:
    assert chunk_text("a title\nbody", 100) == ["a title body"]
    assert chunk_text("first line\nsecond line", 11) == ["first line", "second line"]


def test_long_sentence_splits_between_words() -> None:
    chunks = chunk_text("alpha beta gamma delta epsilon zeta eta theta", 16)
    assert chunks == ["alpha beta gamma", "delta epsilon", "zeta eta theta"]


def test_overlong_word_is_cut() -> None:
    assert chunk_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("max_chars", [1, 7, 40, 500])
def test_chunks_fit_and_keep_every_word(max_chars: int) -> None:
    text = ("The quick brown fox jumps over the lazy dog.  It was not amused!\n" * 30).strip()
    chunks = chunk_text(text, max_chars)
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)
    if max_chars >= len("amused!"):  # no word was cut
        assert " ".join(chunks).split() == text.split()
    assert "".join("".join(chunks).split()) == "".join(text.split())


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError):
        chunk_text("hi", 0)
