"""Train/eval overlap by word n-grams (``ftatlas data decontaminate``; the overlap checks of ``validate``,
``train`` and the arena).

The eval side is indexed as word n-grams (13 by default, the usual choice since GPT-3's contamination
study) of each eval row's full text and of its prompt alone. An eval row shorter than n words is indexed
whole (when it has at least ``min_words`` words), so short question/answer rows are caught when they
appear verbatim. A training row that contains any indexed sequence is contaminated; the report gives the
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
    """Hashes of eval word sequences -> the eval row (file:line) they came from."""

    n: int = 13
    min_words: int = 3
    grams: dict[int, str] = field(default_factory=dict)
    short: dict[int, dict[int, str]] = field(default_factory=dict)  # length -> hash -> eval row

    def add(self, text: str, where: str) -> None:
        toks = words(text)
        if len(toks) >= self.n:
            for i in range(len(toks) - self.n + 1):
                self.grams.setdefault(hash(" ".join(toks[i : i + self.n])), where)
        elif len(toks) >= self.min_words:
            self.short.setdefault(len(toks), {}).setdefault(hash(" ".join(toks)), where)

    def add_rows(self, rows: Iterable[Any], label: Callable[[Any], str]) -> None:
        for r in rows:
            record = r.record if isinstance(r, Row) else r
            self.add(record_text(record), label(r))
            prompt = prompt_text(record)
            if prompt:
                self.add(prompt, label(r))

    def __len__(self) -> int:
        return len(self.grams) + sum(len(v) for v in self.short.values())

    def match(self, text: str) -> tuple[list[str], list[str]]:
        """(eval rows matched, merged matched spans as normalised words) for one text."""
        toks = words(text)
        hits: list[tuple[int, int]] = []
        sources: dict[str, None] = {}
        lengths = [(self.n, self.grams)] if self.grams else []
        lengths += sorted(self.short.items())
        for k, table in lengths:
            for i in range(len(toks) - k + 1):
                where = table.get(hash(" ".join(toks[i : i + k])))
                if where is not None:
                    hits.append((i, i + k))
                    sources.setdefault(where, None)
        if not hits:
            return [], []
        hits.sort()
        spans, (s, e) = [], hits[0]
        for a, b in hits[1:]:
            if a <= e:
                e = max(e, b)
            else:
                spans.append((s, e))
                s, e = a, b
        spans.append((s, e))
        return list(sources), [" ".join(toks[a:b]) for a, b in spans]


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


def build_index(sources: list[str], n: int = 13, min_words: int = 3, format: str = "auto") -> NgramIndex:
    if n < 1:
        raise ValueError(f"--ngram must be >= 1, got {n}")
    index = NgramIndex(n, min_words)
    for src in sources:
        index.add_rows(eval_rows(src, format), _label(src))
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


def split_overlap(train: list[Any], held: list[Any], n: int = 13, min_words: int = 3) -> list[Overlap]:
    """Training rows that overlap the held-out rows (records or Rows): the check ``train`` and the arena run."""
    index = NgramIndex(n, min_words)
    index.add_rows(held, _label("held-out"))
    return find_overlaps(train, index)
