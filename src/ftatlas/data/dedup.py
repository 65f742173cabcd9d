"""Exact and near-duplicate detection (``ftatlas data dedup``, and the duplicate count of ``inspect``).

Exact: rows whose normalised text (case, punctuation, spacing removed) hashes equal. Near: MinHash LSH
from ``datasketch`` over word n-gram shingles finds candidate pairs; each candidate is then checked with
the true Jaccard similarity of the two shingle sets, so the threshold means what it says. Rows joined
by either test form a cluster (union-find); one row per cluster is kept and every other row is named
in the report with its similarity to the kept one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ftatlas.data.errors import DataError
from ftatlas.data.table import Row
from ftatlas.data.textnorm import jaccard, normal_hash, shingles, words

Keep = Literal["first", "longest", "score"]


@dataclass
class Cluster:
    """Rows (indices into the input) that duplicate each other; ``kept`` survives, the rest are removed."""

    kind: Literal["exact", "near"]
    kept: int
    removed: list[int]
    similarity: list[float]  # of each removed row to the kept one (1.0 for exact)
    exact: list[bool]  # per removed row: same normalised text as the kept one

    @property
    def exact_removed(self) -> int:
        return sum(self.exact)


@dataclass
class DedupResult:
    kept: list[int]
    clusters: list[Cluster] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(len(c.removed) for c in self.clusters)


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _identity(x: int) -> int:  # shingles are already 32-bit hashes
    return x


def _datasketch() -> Any:
    try:
        import datasketch
    except ImportError:
        raise ValueError("near-duplicate detection needs datasketch: pip install 'ftatlas[data]' "
                         "(or use --exact-only)") from None
    return datasketch


def _packed(shingle_set: set[int]) -> np.ndarray:
    """A sorted uint32 array: about 4 bytes per shingle instead of ~70 for a Python set of ints."""
    return np.fromiter(sorted(shingle_set), dtype=np.uint32, count=len(shingle_set))


def _packed_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


def _near_pass(texts: list[str], reps: list[int], union: _Union, threshold: float, ngram: int, num_perm: int,
               seed: int, progress: Callable[[int], None] | None) -> None:
    """MinHash LSH over the distinct texts ``reps``; candidates joined only when their true Jaccard passes."""
    ds = _datasketch()
    # LSH only proposes candidates (its banding cannot be tuned to 1.0); the exact Jaccard below decides
    lsh = ds.MinHashLSH(threshold=min(threshold, 0.9), num_perm=num_perm)
    proto = ds.MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)  # permutations built once, shared
    packed: list[np.ndarray] = []
    for k, i in enumerate(reps):
        arr = _packed(shingles(words(texts[i]), ngram))
        packed.append(arr)
        m = proto.copy()
        if arr.size:
            m.update_batch(arr.astype(np.uint64))
        for j in lsh.query(m):
            if _packed_jaccard(arr, packed[j]) >= threshold:
                union.join(reps[j], i)
        lsh.insert(k, m)
        if progress:
            progress(1)


def find_clusters(texts: list[str], *, threshold: float = 0.7, ngram: int = 3, num_perm: int = 128,
                  near: bool = True, seed: int = 1, progress: Callable[[int], None] | None = None
                  ) -> list[list[int]]:
    """Groups of indices whose texts are exact (normalised) or near duplicates, each in input order.
    Singletons are left out."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    union = _Union(len(texts))
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        h = normal_hash(t)
        if h in first:
            union.join(first[h], i)
        else:
            first[h] = i
    if near:
        _near_pass(texts, sorted(first.values()), union, threshold, ngram, num_perm, seed, progress)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(union.find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _score(row: Row, score_field: str) -> float:
    value = row.raw.get(score_field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        got = "missing" if score_field not in row.raw else f"not a number ({value!r})"
        raise DataError(row.source, row.line, score_field, f"--keep score needs a numeric field: {got}")
    return float(value)


def _keeper(rows: list[Row], members: list[int], keep: Keep, score_field: str) -> int:
    if keep == "first":
        return members[0]
    if keep == "longest":
        return max(members, key=lambda i: (len(rows[i].text), -i))
    return max(members, key=lambda i: (_score(rows[i], score_field), -i))


def dedup_rows(rows: list[Row], *, threshold: float = 0.7, ngram: int = 3, num_perm: int = 128, near: bool = True,
               keep: Keep = "first", score_field: str = "score",
               progress: Callable[[int], None] | None = None) -> DedupResult:
    """Which rows to keep, and the duplicate clusters with the reason each other row goes."""
    if keep not in ("first", "longest", "score"):
        raise ValueError(f"unknown --keep {keep!r}; expected first, longest or score")
    texts = [r.text for r in rows]
    groups = find_clusters(texts, threshold=threshold, ngram=ngram, num_perm=num_perm, near=near,
                           progress=progress)
    dropped: set[int] = set()
    clusters = []
    for members in groups:
        kept = _keeper(rows, members, keep, score_field)
        base = shingles(words(texts[kept]), ngram)
        gone = [i for i in members if i != kept]
        exact = [normal_hash(texts[i]) == normal_hash(texts[kept]) for i in gone]
        sims = [1.0 if e else round(jaccard(base, shingles(words(texts[i]), ngram)), 3)
                for i, e in zip(gone, exact, strict=True)]
        clusters.append(Cluster("exact" if all(exact) else "near", kept, gone, sims, exact))
        dropped.update(gone)
    return DedupResult([i for i in range(len(rows)) if i not in dropped], clusters)


def clusters_report(rows: list[Row], result: DedupResult, chars: int = 160) -> list[dict[str, Any]]:
    """Every cluster as JSON, largest first: the kept row, each removed row (file:line, similarity, text)."""
    out = []
    for c in sorted(result.clusters, key=lambda c: -len(c.removed)):
        out.append({
            "kind": c.kind,
            "kept": rows[c.kept].where,
            "kept_text": rows[c.kept].text[:chars],
            "removed": [{"row": rows[i].where, "match": "exact" if e else "near", "similarity": s,
                         "text": rows[i].text[:chars]}
                        for i, s, e in zip(c.removed, c.similarity, c.exact, strict=True)],
        })
    return out
