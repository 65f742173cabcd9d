"""Text normalisation shared by the data tools: the same words, the same hashes, the same n-grams."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Case-folded word tokens (NFKC first, so full-width and ligature forms compare equal)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def normal_hash(text: str) -> str:
    """Hash of the text with case, punctuation and spacing removed: equal for exact duplicates."""
    return hashlib.blake2b(" ".join(words(text)).encode(), digest_size=12).hexdigest()


def shingles(tokens: list[str], n: int) -> set[int]:
    """32-bit hashes of the word n-grams (the whole row as one shingle when it has fewer than n words)."""
    if len(tokens) < n:
        return {zlib.crc32(" ".join(tokens).encode())} if tokens else set()
    return {zlib.crc32(" ".join(tokens[i : i + n]).encode()) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0
