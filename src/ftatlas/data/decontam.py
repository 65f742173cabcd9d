"""Train/eval overlap by word n-grams (``ftatlas data decontaminate``; the overlap checks of ``validate``,
``train`` and the arena).

The eval side is indexed as word n-grams (13 by default, the usual choice since GPT-3's contamination
study). Each eval row gives two *units*: its full text and its prompt alone, so a leaked question is caught
even when its answer differs. A unit shorter than n words is indexed whole (when it has at least
``min_words`` words), so short question/answer rows are caught when they appear verbatim.

A training row is contaminated by a unit when it holds at least ``coverage`` of that unit's n-grams (0.5
by default; 0 flags any single shared n-gram, GPT-3's rule). The share, not a single hit, is what keeps
templated data honest: rows built from one instruction template share many 13-grams ("Extract the contact
record from this message as JSON. Meet ...") without sharing an example. Sequences held by more than
``max(2, 1%)`` of the units are the eval set's own boilerplate and are ignored. The report gives the
matched spans and the eval rows they come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftatlas.data.table import Row, load_table, record_text
from ftatlas.data.textnorm import words


def prompt_text(record: Any) -> str | None:
    """The prompt part of a record (everything but the answers); None for plain text."""
    if getattr(record, "text", None) is not None and not hasattr(record, "chosen"):
        return None
    if hasattr(record, "chosen") or hasattr(record, "completion"):
        return record.prompt_text if record.is_text else "\n".join(m.content for m in record.prompt)
    if hasattr(record, "columns"):
        return "\n".join(m.content for m in record.messages)
    try:
        prompt, _ = record.prompt_and_reference()
    except ValueError:
        return None
    return "\n".join(m.content for m in prompt)


@dataclass
class Overlap:
    """One contaminated training row: which eval rows it shares sequences with, and the shared spans."""

    row: int
    eval_rows: list[str]
    spans: list[str]


@dataclass
class NgramIndex:
    """Word sequences of the eval side: each eval row's full text and its prompt are one *unit* each."""

    n: int = 13
    min_words: int = 3
    coverage: float = 0.5  # share of a unit's sequences a training row must hold (0: any one)
    boilerplate: int | None = None  # ignore sequences in more units than this (None: max(2, 1% of units))
    grams: dict[int, list[int]] = field(default_factory=dict)  # hash -> units holding it
    short: dict[int, dict[int, list[int]]] = field(default_factory=dict)  # length -> hash -> units
    units: list[tuple[str, int]] = field(default_factory=list)  # (eval row, distinct sequences)
    ignored: int = 0  # boilerplate sequences dropped

    def add(self, text: str, where: str) -> None:
        toks = words(text)
        if len(toks) >= self.n:
            hashes = {hash(" ".join(toks[i : i + self.n])) for i in range(len(toks) - self.n + 1)}
            for h in hashes:
                self.grams.setdefault(h, []).append(len(self.units))
            self.units.append((where, len(hashes)))
        elif len(toks) >= self.min_words:
            self.short.setdefault(len(toks), {}).setdefault(hash(" ".join(toks)), []).append(len(self.units))
            self.units.append((where, 1))

    def add_rows(self, rows: Iterable[Any], label: Callable[[Any], str]) -> None:
        for r in rows:
            record = r.record if isinstance(r, Row) else r
            full, prompt = record_text(record), prompt_text(record)
            self.add(full, label(r))
            if prompt and prompt != full:
                self.add(prompt, label(r))
        limit = self.boilerplate if self.boilerplate is not None else max(2, len(self.units) // 100)
        for table in (self.grams, *self.short.values()):
            for h in [h for h, us in table.items() if len(set(us)) > limit]:
                del table[h]
                self.ignored += 1

    def __len__(self) -> int:
        return len(self.grams) + sum(len(v) for v in self.short.values())

    def match(self, text: str) -> tuple[list[str], list[str]]:
        """(eval rows matched, merged matched spans as normalised words) for one text."""
        toks = words(text)
        found: list[tuple[int, int, list[int]]] = []  # (start, end, units)
        held: dict[int, set[int]] = {}  # unit -> distinct sequences of it in this text
        for k, table in ([(self.n, self.grams)] if self.grams else []) + sorted(self.short.items()):
            for i in range(len(toks) - k + 1):
                h = hash(" ".join(toks[i : i + k]))
                units = table.get(h)
                if units:
                    found.append((i, i + k, units))
                    for u in units:
                        held.setdefault(u, set()).add(h)
        dirty = {u for u, hs in held.items() if len(hs) >= max(1e-9, self.coverage) * self.units[u][1]}
        hits = sorted((a, b) for a, b, us in found if dirty.intersection(us))
        if not hits:
            return [], []
        spans, (s, e) = [], hits[0]
        for a, b in hits[1:]:
            if a <= e:
                e = max(e, b)
            else:
                spans.append((s, e))
                s, e = a, b
        spans.append((s, e))
        sources = list(dict.fromkeys(self.units[u][0] for u in sorted(dirty)))
        return sources, [" ".join(toks[a:b]) for a, b in spans]


def eval_rows(source: str, format: str = "auto") -> list[Any]:
    """Rows to check against: a data file, ``builtin:<name>`` (its eval split) or a run dir's held-out split."""
    from ftatlas.data.splits import load_builtin, load_splits

    if source.startswith("builtin:"):
        return load_builtin(source.removeprefix("builtin:"), "eval")
    p = Path(source)
    if p.is_dir():
        from ftatlas.objectives import OBJECTIVES
        from ftatlas.recipe import load_recipe
        from ftatlas.runs import RunDir

        recipe = load_recipe(RunDir.open(p).recipe_file)
        return load_splits(recipe.data, OBJECTIVES.get(recipe.objective.name).data_kind).eval
    return load_table(source, format)


def _label(source: str) -> Callable[[Any], str]:
    return lambda r: r.where if isinstance(r, Row) else f"{r.source or source}:{r.line}"


def build_index(sources: list[str], n: int = 13, min_words: int = 3, format: str = "auto",
                coverage: float = 0.5, boilerplate: int | None = None) -> NgramIndex:
    if n < 1:
        raise ValueError(f"--ngram must be >= 1, got {n}")
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"--coverage must be in [0, 1], got {coverage}")
    index = NgramIndex(n, min_words, coverage, boilerplate)
    rows: list[Any] = []
    labels: dict[int, str] = {}
    for src in sources:
        for r in eval_rows(src, format):
            labels[id(r)] = _label(src)(r)
            rows.append(r)
    index.add_rows(rows, lambda r: labels[id(r)])  # one pass, so boilerplate counts span every source
    return index


def find_overlaps(rows: list[Row] | list[Any], index: NgramIndex,
                  progress: Callable[[int], None] | None = None) -> list[Overlap]:
    """Every row that shares an indexed sequence with the eval side."""
    found = []
    for i, r in enumerate(rows):
        text = r.text if isinstance(r, Row) else record_text(r)
        matched, spans = index.match(text)
        if matched:
            found.append(Overlap(i, matched, spans))
        if progress:
            progress(1)
    return found


def split_overlap(train: list[Any], held: list[Any], n: int = 13, min_words: int = 3,
                  coverage: float = 0.5) -> list[Overlap]:
    """Training rows that overlap the held-out rows (records or Rows): the check ``train`` and the arena run."""
    index = NgramIndex(n, min_words, coverage)
    index.add_rows(held, _label("held-out"))
    return find_overlaps(train, index)
