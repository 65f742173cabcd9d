"""BM25 over the index's chunks (bm25s), saved beside the vectors and rebuilt when the chunk set changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ftatlas.context.retrieval.store import StoredChunk
from ftatlas.extras import require


def _tokens(texts: list[str]) -> list[list[str]]:
    bm25s = require("bm25s", "rag", "the rag BM25 index")

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def build_bm25(chunks: list[StoredChunk], folder: Path) -> None:
    bm25s = require("bm25s", "rag", "the rag BM25 index")

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "ids.json").write_text(json.dumps([c.id for c in chunks]))
    if not chunks:
        return
    retriever = bm25s.BM25()
    retriever.index(_tokens([c.text for c in chunks]), show_progress=False)
    retriever.save(str(folder / "index"))


class Bm25Index:
    """A saved BM25 index, loaded once and queried many times."""

    def __init__(self, folder: Path) -> None:
        bm25s = require("bm25s", "rag", "the rag BM25 index")

        self.ids = json.loads((folder / "ids.json").read_text()) if (folder / "ids.json").is_file() else []
        self.retriever = bm25s.BM25.load(str(folder / "index")) if self.ids else None

    def search(self, queries: list[str], n: int) -> list[list[tuple[int, float]]]:
        """Top ``n`` (chunk id, BM25 score) per query; chunks sharing no term with the query are left out."""
        out = []
        for q in _tokens(queries):
            if not q or self.retriever is None:
                out.append([])
                continue
            docs, scores = self.retriever.retrieve([q], k=min(n, len(self.ids)), show_progress=False)
            out.append([(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0])
        return out
