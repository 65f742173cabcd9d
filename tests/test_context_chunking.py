"""Chunker: size limit, paragraph boundaries, sentence fallback, overlap made of whole units."""

from __future__ import annotations

import pytest

from ftatlas.context.retrieval.chunking import chunk_text


def words(text: str) -> int:
    return len(text.split())


def para(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n - 1)) + f" {tag}end."


def test_paragraphs_that_fit_stay_whole_and_chunks_respect_size():
    paras = [para(t, n) for t, n in [("a", 6), ("b", 5), ("c", 7), ("d", 4), ("e", 6)]]
    chunks = chunk_text("\n\n".join(paras), words, size=12, overlap=0)
    assert all(c.tokens <= 12 for c in chunks)
    for p in paras:  # every paragraph is inside exactly one chunk, never split across two
        assert sum(p in c.text for c in chunks) == 1
    assert [c.text for c in chunks] == [f"{paras[0]}\n\n{paras[1]}", f"{paras[2]}\n\n{paras[3]}", paras[4]]


def test_overlap_repeats_whole_trailing_units_within_budget():
    paras = [para(t, 4) for t in "abcdef"]
    chunks = chunk_text("\n\n".join(paras), words, size=12, overlap=4)
    assert len(chunks) > 1
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        shared = [p for p in paras if p in prev.text and p in nxt.text]
        assert shared and words(" ".join(shared)) <= 4  # one 4-word paragraph carried over, no partial text
        assert nxt.text.startswith(shared[0])
    covered = " ".join(c.text for c in chunks)
    assert all(p in covered for p in paras)


def test_long_paragraph_splits_at_sentences_then_words():
    long_sentence = " ".join(f"w{i}" for i in range(25)) + "."
    text = "Short one here. Another short one. " + long_sentence
    chunks = chunk_text(text, words, size=10, overlap=0)
    assert all(c.tokens <= 10 for c in chunks)
    assert chunks[0].text == "Short one here. Another short one."
    assert " ".join(c.text for c in chunks[1:]) == long_sentence
    assert chunks[1].start == text.index("w0")  # offsets point into the document


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="overlap < size"):
        chunk_text("x", words, size=10, overlap=10)
