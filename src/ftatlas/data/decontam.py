"""Train/eval overlap by word n-grams (``ftatlas data decontaminate``; the overlap checks of ``validate``,
``train`` and the arena).

The eval side is indexed as word n-grams (13 by default, the usual choice since GPT-3's contamination
study). Each eval row gives two *units*: its full text and its prompt alone, so a leaked question is caught
even when its answer differs. A unit shorter than n words is indexed whole (when it has at least
``min_words`` words), so short question/answer rows are caught when they appear verbatim.

The rule is the common one: a training row is contaminated by a unit when it shares any one of the unit's
n-grams (``coverage=0``); ``coverage`` > 0 asks for that share of the unit's n-grams instead. Boilerplate is
what makes the any-one rule flag clean rows, and it is removed on both sides rather than by a share:

- *eval boilerplate*: sequences held by more than ``max(2, 1%)`` of the eval units (a shared instruction);
- *train boilerplate*: eval n-grams held by more than ``train_boilerplate`` training rows (default
  ``max(10, 1%)``: a shared system prompt or template), and those whose first or last ``n - n//3`` words
  are (the template around a name or a number: "... message as JSON. Our new hire, 36-year-old Felix").

A unit whose every n-gram is itself held by that many training rows is not a template but the eval row
repeated (a question copied with many answers), so its n-grams are kept. Ignored sequences are counted in the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftatlas.data.table import Row, load_table, record_text
from ftatlas.data.textnorm import words

Hit = tuple[int, int, int, list[int]]  # (start, end, sequence hash, units holding it)


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
class Scan:
    """The contaminated rows of one training set, and the eval n-grams ignored as its boilerplate."""

    overlaps: list[Overlap]
    train_boilerplate: int = 0  # distinct eval n-grams ignored because many training rows hold them
    boilerplate_examples: list[str] = field(default_factory=list)  # a few of them, as normalised words
    limit: int = 0  # training rows above which an n-gram is boilerplate


def _h(toks: list[str], i: int, k: int) -> int:
    return hash(" ".join(toks[i : i + k]))


@dataclass
class NgramIndex:
    """Word sequences of the eval side: each eval row's full text and its prompt are one *unit* each."""

    n: int = 13
    min_words: int = 3
    coverage: float = 0.0  # share of a unit's sequences a training row must hold (0: any one)
    boilerplate: int | None = None  # ignore sequences in more units than this (None: max(2, 1% of units))
    grams: dict[int, list[int]] = field(default_factory=dict)  # hash -> units holding it
    edges: dict[int, tuple[int, int]] = field(default_factory=dict)  # gram -> hashes of its first/last words
    short: dict[int, dict[int, list[int]]] = field(default_factory=dict)  # length -> hash -> units
    units: list[tuple[str, int]] = field(default_factory=list)  # (eval row, distinct sequences)
    unit_grams: dict[int, list[int]] = field(default_factory=dict)  # unit -> its n-gram hashes
    ignored: int = 0  # eval boilerplate sequences dropped

    @property
    def edge(self) -> int:
        """Words of a gram's edge checked for train boilerplate (n - n//3: up to a third of the gram may be the
        example's own words, a name and an age; 0 when n < 3: no edge check)."""
        return self.n - self.n // 3 if self.n >= 3 else 0

    def add(self, text: str, where: str) -> None:
        toks = words(text)
        if len(toks) >= self.n:
            hashes: dict[int, None] = {}
            for i in range(len(toks) - self.n + 1):
                h = _h(toks, i, self.n)
                if self.edge and h not in hashes:
                    self.edges[h] = (_h(toks, i, self.edge), _h(toks, i + self.n - self.edge, self.edge))
                hashes[h] = None
            for h in hashes:
                self.grams.setdefault(h, []).append(len(self.units))
            self.unit_grams[len(self.units)] = list(hashes)
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
                self.edges.pop(h, None)
                self.ignored += 1

    def __len__(self) -> int:
        return len(self.grams) + sum(len(v) for v in self.short.values())

    def hits(self, toks: list[str]) -> list[Hit]:
        """Every indexed sequence in a text's words, with its position."""
        found: list[Hit] = []
        for k, table in ([(self.n, self.grams)] if self.grams else []) + sorted(self.short.items()):
            for i in range(len(toks) - k + 1):
                h = _h(toks, i, k)
                units = table.get(h)
                if units:
                    found.append((i, i + k, h, units))
        return found

    def edge_hashes(self, toks: list[str]) -> set[int]:
        """Hashes of every ``edge``-word sequence of a text (counted to find template-anchored n-grams)."""
        k = self.edge
        return {_h(toks, i, k) for i in range(len(toks) - k + 1)} if k and self.grams else set()

    def decide(self, toks: list[str], hits: list[Hit], skip: set[int]) -> tuple[list[str], list[str]]:
        """(eval rows matched, merged matched spans as normalised words), sequences in ``skip`` ignored."""
        kept = [x for x in hits if x[2] not in skip]
        held: dict[int, set[int]] = {}  # unit -> distinct sequences of it in this text
        for _a, _b, h, units in kept:
            for u in units:
                held.setdefault(u, set()).add(h)
        dirty = {u for u, hs in held.items() if len(hs) >= max(1e-9, self.coverage) * self.units[u][1]}
        spans_at = sorted((a, b) for a, b, _h, us in kept if dirty.intersection(us))
        if not spans_at:
            return [], []
        spans, (s, e) = [], spans_at[0]
        for a, b in spans_at[1:]:
            if a <= e:
                e = max(e, b)
            else:
                spans.append((s, e))
                s, e = a, b
        spans.append((s, e))
        sources = list(dict.fromkeys(self.units[u][0] for u in sorted(dirty)))
        return sources, [" ".join(toks[a:b]) for a, b in spans]

    def match(self, text: str) -> tuple[list[str], list[str]]:
        """(eval rows matched, matched spans) for one text on its own (no train boilerplate known)."""
        toks = words(text)
        return self.decide(toks, self.hits(toks), set())

    def train_boilerplate(self, counts: Counter, limit: int) -> set[int]:
        """Eval n-grams that more than ``limit`` training rows hold, themselves or by an edge. A unit whose
        n-grams the training rows all hold themselves is the eval row repeated, and keeps them."""
        frequent = {h for h, c in counts.items() if c > limit}
        held = {g for g in self.grams if g in frequent}
        skip = held | {g for g, (first, last) in self.edges.items() if first in frequent or last in frequent}
        for u in {u for g in held for u in self.grams[g]}:
            if all(g in held or g not in self.grams for g in self.unit_grams[u]):  # eval boilerplate aside
                skip.difference_update(self.unit_grams[u])
        return skip


def eval_rows(source: str, format: str = "auto") -> list[Any]:
    """Rows to check against: a data file, ``builtin:<name>`` (its eval split), ``lm-eval:<task>`` (the task's
    documents from the local cache) or a run dir's held-out split."""
    from ftatlas.data.splits import load_builtin, load_splits

    if source.startswith("builtin:"):
        return load_builtin(source.removeprefix("builtin:"), "eval")
    if source.startswith("lm-eval:"):
        from ftatlas.data.lm_eval_docs import lm_eval_rows

        return lm_eval_rows(source.removeprefix("lm-eval:"))
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
                coverage: float = 0.0, boilerplate: int | None = None) -> NgramIndex:
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


def scan(rows: list[Row] | list[Any], index: NgramIndex, train_boilerplate: int | None = None,
         progress: Callable[[int], None] | None = None) -> Scan:
    """Every training row sharing a non-boilerplate eval sequence (see the module doc). Two passes: the first
    counts how many rows hold each eval n-gram (and edge), the second decides each row."""
    if train_boilerplate is not None and train_boilerplate < 1:
        raise ValueError(f"--boilerplate-rows must be >= 1, got {train_boilerplate}")
    limit = train_boilerplate if train_boilerplate is not None else max(10, len(rows) // 100)
    edge_keys = {e for pair in index.edges.values() for e in pair}
    counts: Counter = Counter()
    seen: list[tuple[list[str], list[Hit]]] = []
    for r in rows:
        toks = words(r.text if isinstance(r, Row) else record_text(r))
        hits = index.hits(toks)
        counts.update({h for *_, h, _u in hits} | (index.edge_hashes(toks) & edge_keys))
        seen.append((toks, hits) if hits else ([], []))
        if progress:
            progress(1)
    skip = index.train_boilerplate(counts, limit)
    examples: dict[int, str] = {}
    found = []
    for i, (toks, hits) in enumerate(seen):
        for a, b, h, _u in hits:
            if h in skip and len(examples) < 5:
                examples.setdefault(h, " ".join(toks[a:b]))
        matched, spans = index.decide(toks, hits, skip) if hits else ([], [])
        if matched:
            found.append(Overlap(i, matched, spans))
    return Scan(found, len(skip), list(examples.values()), limit)


def find_overlaps(rows: list[Row] | list[Any], index: NgramIndex, progress: Callable[[int], None] | None = None,
                  train_boilerplate: int | None = None) -> list[Overlap]:
    """Every row that shares a non-boilerplate indexed sequence with the eval side."""
    return scan(rows, index, train_boilerplate, progress).overlaps


def split_overlap(train: list[Any], held: list[Any], n: int = 13, min_words: int = 3, coverage: float = 0.0,
                  train_boilerplate: int | None = None) -> list[Overlap]:
    """Training rows that overlap the held-out rows (records or Rows): the check ``train`` and the arena run."""
    index = NgramIndex(n, min_words, coverage)
    index.add_rows(held, _label("held-out"))
    return find_overlaps(train, index, train_boilerplate=train_boilerplate)
