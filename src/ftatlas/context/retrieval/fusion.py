"""Reciprocal rank fusion: combine rankings from retrievers whose scores are not comparable."""

from __future__ import annotations

RRF_K = 60


def reciprocal_rank_fusion(rankings: dict[str, list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """``{"dense": [ids best first], "bm25": [...]}`` -> [(id, sum of 1/(k + rank))], best first.

    Ranks start at 1. Ties are broken by the best single rank an id reached, then by the order of the
    rankings given (the first retriever wins), so the result is deterministic.
    """
    fused: dict[int, float] = {}
    best: dict[int, tuple[int, int]] = {}
    for order, ranking in enumerate(rankings.values()):
        for rank, doc in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
            best[doc] = min(best.get(doc, (rank, order)), (rank, order))
    return sorted(fused.items(), key=lambda kv: (-kv[1], best[kv[0]]))
