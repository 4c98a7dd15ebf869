"""Split long text into say-text chunks at sentence, then word, boundaries."""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MAX_CHUNK_CHARS", "chunk_text"]

# The service documents no maximum; a few sentences per call keeps TTS latency low.
DEFAULT_MAX_CHUNK_CHARS = 500

# A sentence ends at . ! ? or … followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHUNK_CHARS) -> list[str]:
    """Split ``text`` into chunks of at most ``max_chars`` characters.

    Whole sentences are packed together while they fit; a longer sentence is split
    between words, and a single word longer than ``max_chars`` is cut. Runs of
    whitespace become one space. Blank text gives an empty list.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if words:
            pieces.extend(_split_sentence(" ".join(words), max_chars))
    return _pack(pieces, max_chars)


def _split_sentence(sentence: str, max_chars: int) -> list[str]:
    """One sentence as pieces of at most ``max_chars``, cut between words when possible."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for word in sentence.split(" "):
        pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(pieces, max_chars)


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with a space while the result fits in ``max_chars``."""
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks
