"""Top-k passages for a query from an index: dense (FAISS), lexical (BM25) or hybrid (reciprocal rank fusion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ftatlas.context.retrieval.embedding import load_embedder
from ftatlas.context.retrieval.fusion import reciprocal_rank_fusion
from ftatlas.context.retrieval.store import IndexStore, RagIndexError, StoredChunk

Mode = Literal["hybrid", "dense", "bm25"]
MODES = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class Hit:
    chunk: StoredChunk
    score: float  # cosine for dense, BM25 for bm25, fused RRF score for hybrid
    ranks: dict[str, int] = field(default_factory=dict)  # rank in each retriever's list (1 = best)


class Retriever:
    """Opens an index once and answers many queries (the embedder named by the index is loaded lazily)."""

    def __init__(self, index: str | Path) -> None:
        self.store = IndexStore(index)
        info = self.store.info()
        if "embedder" not in info:
            raise RagIndexError(f"{index}: the index records no embedder; re-run ftatlas rag ingest")
        self.embedder_name = info["embedder"]
        if self.store.count()[1] == 0:
            raise RagIndexError(f"{index}: the index holds no chunks (were all files unreadable?)")

    def search(self, query: str, k: int = 4, mode: Mode = "hybrid", pool: int = 50) -> list[Hit]:
        return self.search_many([query], k, mode, pool)[0]

    def search_many(self, queries: list[str], k: int = 4, mode: Mode = "hybrid", pool: int = 50) -> list[list[Hit]]:
        """``pool`` candidates per retriever go into fusion; ``k`` hits come out per query."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; known: {', '.join(MODES)}")
        n = max(pool, k)
        dense = self._dense(queries, n) if mode in ("hybrid", "dense") else [[] for _ in queries]
        lexical = self.store.search_bm25(queries, n) if mode in ("hybrid", "bm25") else [[] for _ in queries]
        out = []
        for d, b in zip(dense, lexical, strict=True):
            ranks = {"dense": {i: r for r, (i, _) in enumerate(d, 1)}, "bm25": {i: r for r, (i, _) in enumerate(b, 1)}}
            if mode == "hybrid":
                scored = reciprocal_rank_fusion({"dense": [i for i, _ in d], "bm25": [i for i, _ in b]})
            else:
                scored = d if mode == "dense" else b
            top = scored[:k]
            chunks = {c.id: c for c in self.store.chunks([i for i, _ in top])}
            out.append([Hit(chunks[i], s, {name: r[i] for name, r in ranks.items() if i in r})
                        for i, s in top if i in chunks])
        return out

    def _dense(self, queries: list[str], n: int) -> list[list[tuple[int, float]]]:
        return self.store.search_vectors(load_embedder(self.embedder_name).encode(queries), n)

    def close(self) -> None:
        self.store.close()
