"""Data health checks shared by ``data inspect``, ``data validate``, ``train`` and the arena: duplicate rows,
over-long rows and train/eval overlap, each as a few printable lines that name the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftatlas.data.table import record_text

SHOW = 5  # rows named per finding; the counts are always complete


def _where(r: Any) -> str:
    return f"{r.source}:{r.line}" if getattr(r, "line", 0) else str(getattr(r, "source", "?"))


def short_span(span: str, width: int = 56) -> str:
    """A long matched span as its start and end (the end usually holds the example's own words)."""
    half = width // 2 - 2
    return span if len(span) <= width else f"{span[:half]} ... {span[-half:]}"


def _near_available() -> bool:
    try:
        import datasketch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Finding:
    count: int
    lines: list[str]


def duplicates(records: list[Any], threshold: float = 0.7, ngram: int = 3) -> Finding:
    """Rows that repeat an earlier row, exactly (normalised) or nearly (MinHash, when datasketch is present)."""
    from ftatlas.data.dedup import find_clusters

    near = _near_available()
    groups = find_clusters([record_text(r) for r in records], threshold=threshold, ngram=ngram, near=near)
    count = sum(len(g) - 1 for g in groups)
    kind = f"exact or near (Jaccard >= {threshold} of word {ngram}-grams)" if near else "exact (normalised text)"
    lines = [f"duplicates: {count} rows repeat an earlier row, {kind}; `ftatlas data dedup` removes them"]
    for g in groups[:SHOW]:
        lines.append(f"  {_where(records[g[0]])} repeated at " + ", ".join(_where(records[i]) for i in g[1:4])
                     + (f" (+{len(g) - 4})" if len(g) > 4 else ""))
    return Finding(count, lines)


def long_rows(records: list[Any], lengths: list[int], max_length: int) -> Finding:
    """Rows whose token count exceeds ``max_length`` (the trainer truncates them), named with their length."""
    over = [(r, n) for r, n in zip(records, lengths, strict=True) if n > max_length]
    lines = [f"rows over max_length={max_length} tokens (truncated in training): {len(over)}"]
    lines += [f"  {_where(r)}: {n} tokens" for r, n in sorted(over, key=lambda x: -x[1])[:SHOW]]
    if len(over) > SHOW:
        lines.append(f"  ... and {len(over) - SHOW} more")
    return Finding(len(over), lines)


def overlap(train: list[Any], held: list[Any], ngram: int = 13, coverage: float = 0.0, label: str = "eval"
            ) -> Finding:
    """Training rows sharing a word n-gram (boilerplate aside) with a held-out row, or holding a whole short row."""
    from ftatlas.data.decontam import split_overlap

    found = split_overlap(train, held, ngram, coverage=coverage)
    share = "a" if coverage == 0 else f">= {coverage:.0%} of the"
    lines = [f"train/{label} overlap: {len(found)} of {len(train)} training rows share {share} {ngram}-word "
             f"sequence of one of {len(held)} {label} rows (or a whole short row; boilerplate ignored)"]
    for o in found[:SHOW]:
        lines.append(f"  {_where(train[o.row])} <- {o.eval_rows[0]}: {short_span(o.spans[0])!r}")
    if found:
        lines.append("  `ftatlas data decontaminate TRAIN --against EVAL` removes them")
    return Finding(len(found), lines)
