"""Split a document into retrieval chunks of at most ``size`` tokens that overlap by up to ``overlap`` tokens.

Boundaries follow the text's own structure: a chunk is whole paragraphs where they fit; a paragraph
longer than ``size`` is cut at sentence ends, and only a sentence longer than ``size`` is cut at word
boundaries. The overlap is made of whole units (paragraphs/sentences) from the end of the previous chunk,
so a chunk never starts mid-sentence unless that sentence alone exceeds ``size``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CountTokens = Callable[[str], int]
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offset of the chunk's first unit in the document
    tokens: int


@dataclass(frozen=True)
class _Unit:
    text: str
    start: int
    tokens: int
    paragraph_end: bool  # the unit closes a paragraph (joined with a blank line, not a space)


def chunk_text(text: str, count: CountTokens, size: int = 200, overlap: int = 40) -> list[Chunk]:
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunk size must be >= 1 and 0 <= overlap < size (got size={size}, overlap={overlap})")
    units = _units(text, count, size)
    chunks: list[Chunk] = []
    current: list[_Unit] = []
    for unit in units:
        if current and _tokens([*current, unit], count) > size:
            chunks.append(_join(current, count))
            current = _tail(current, overlap, unit, size, count)
        current.append(unit)
    if current:
        chunks.append(_join(current, count))
    return chunks


def _units(text: str, count: CountTokens, size: int) -> list[_Unit]:
    units: list[_Unit] = []
    for para, pstart in _spans(text, _PARAGRAPH, 0):
        n = count(para)
        if n <= size:
            units.append(_Unit(para, pstart, n, True))
            continue
        sentences = _spans(para, _SENTENCE, pstart)
        for i, (sent, sstart) in enumerate(sentences):
            last = i == len(sentences) - 1
            n = count(sent)
            if n <= size:
                units.append(_Unit(sent, sstart, n, last))
            else:
                pieces = _word_windows(sent, sstart, count, size)
                units += [_Unit(t, s, count(t), last and j == len(pieces) - 1) for j, (t, s) in enumerate(pieces)]
    return units


def _spans(text: str, sep: re.Pattern, offset: int) -> list[tuple[str, int]]:
    """Non-empty stripped pieces of ``text`` between ``sep`` matches, with their start offsets."""
    out, pos = [], 0
    for m in [*sep.finditer(text), None]:
        end = m.start() if m else len(text)
        piece = text[pos:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((piece.strip(), offset + pos + lead))
        pos = m.end() if m else len(text)
    return out


def _word_windows(sentence: str, start: int, count: CountTokens, size: int) -> list[tuple[str, int]]:
    """Greedy word-boundary windows of at most ``size`` tokens (a single over-long word stands alone)."""
    words = [(m.group(), start + m.start()) for m in re.finditer(r"\S+", sentence)]
    out: list[tuple[str, int]] = []
    cur: list[tuple[str, int]] = []
    for w in words:
        if cur and count(" ".join(x for x, _ in [*cur, w])) > size:
            out.append((" ".join(x for x, _ in cur), cur[0][1]))
            cur = []
        cur.append(w)
    if cur:
        out.append((" ".join(x for x, _ in cur), cur[0][1]))
    return out


def _render(units: list[_Unit]) -> str:
    parts = []
    for i, u in enumerate(units):
        parts.append(u.text)
        if i < len(units) - 1:
            parts.append("\n\n" if u.paragraph_end else " ")
    return "".join(parts)


def _tokens(units: list[_Unit], count: CountTokens) -> int:
    return count(_render(units))


def _join(units: list[_Unit], count: CountTokens) -> Chunk:
    text = _render(units)
    return Chunk(text, units[0].start, count(text))


def _tail(units: list[_Unit], overlap: int, nxt: _Unit, size: int, count: CountTokens) -> list[_Unit]:
    """The longest run of trailing units within ``overlap`` tokens that still leaves room for the next unit."""
    tail: list[_Unit] = []
    for u in reversed(units[1:]):  # never repeat the whole previous chunk
        candidate = [u, *tail]
        if _tokens(candidate, count) > overlap or _tokens([*candidate, nxt], count) > size:
            break
        tail = candidate
    return tail
