"""The on-disk index: chunk texts and file hashes in SQLite, vectors in FAISS, a BM25 index beside them.

Why FAISS + SQLite: both install from PyPI as self-contained wheels and run embedded (no server); SQLite
(Python's stdlib) gives transactions for the file/chunk bookkeeping that incremental re-ingest needs,
and FAISS' ``IndexIDMap2`` over an exact inner-product index keys each vector by its SQLite chunk id,
so a changed file's vectors are removed by id. sqlite-vec was the first choice for a single file, but
CPython's sqlite3 here is built without extension loading; LanceDB works but pulls ~75 MB plus pyarrow.

Layout of an index directory::

    meta.sqlite      info (embedder, chunking), files (path, sha256, error), chunks (id, text, ...)
    vectors.faiss    IndexIDMap2(IndexFlatIP(dim)): unit vectors, inner product = cosine
    bm25/            bm25s index over the same chunks, plus ids.json (row -> chunk id)
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftatlas.extras import require

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, n_chunks INTEGER NOT NULL,
                                  error TEXT);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL, doc_id TEXT NOT NULL,
                                   ordinal INTEGER NOT NULL, start INTEGER NOT NULL, tokens INTEGER NOT NULL,
                                   text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file);
"""


class RagIndexError(ValueError):
    """A missing, foreign or inconsistent index directory."""


@dataclass(frozen=True)
class StoredChunk:
    id: int
    file: str
    doc_id: str
    ordinal: int
    text: str

    @property
    def cite(self) -> str:
        """A short source id for prompts and citations: file name (or name:line) and chunk number."""
        return f"{Path(self.doc_id).name}#{self.ordinal}"


class IndexStore:
    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        db = self.path / "meta.sqlite"
        if not db.is_file():
            if not create:
                raise RagIndexError(f"{self.path} is not a RAG index (no meta.sqlite); "
                                  f"build one with: ftatlas rag ingest DOCS --index {self.path}")
            self.path.mkdir(parents=True, exist_ok=True)
        # A server loads the index at start-up and reads it from its one context thread (never two at once).
        self.db = sqlite3.connect(db, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self._vectors = None
        self._bm25 = None

    # -- info -------------------------------------------------------------------------------------------
    def info(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM info"))

    def set_info(self, **values: object) -> None:
        self.db.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    # -- files and chunks -------------------------------------------------------------------------------
    def file_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, sha256 FROM files"))

    def file_errors(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, error FROM files WHERE error IS NOT NULL"))

    def remove_file(self, file: str) -> int:
        ids = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE file = ?", (file,))]
        if ids:
            self.vectors().remove_ids(np.asarray(ids, dtype=np.int64))
        self.db.execute("DELETE FROM chunks WHERE file = ?", (file,))
        self.db.execute("DELETE FROM files WHERE path = ?", (file,))
        return len(ids)

    def add_file(self, file: str, sha256: str, rows: list[tuple[str, int, int, int, str]],
                 vectors: np.ndarray | None, error: str | None = None) -> None:
        """``rows``: (doc_id, ordinal, start, tokens, text) per chunk, aligned with ``vectors``."""
        ids = []
        for row in rows:
            cur = self.db.execute("INSERT INTO chunks (file, doc_id, ordinal, start, tokens, text) "
                                  "VALUES (?, ?, ?, ?, ?, ?)", (file, *row))
            ids.append(cur.lastrowid)
        if ids:
            self.vectors().add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (file, sha256, len(ids), error))

    def chunks(self, ids: list[int] | None = None) -> list[StoredChunk]:
        q = "SELECT id, file, doc_id, ordinal, text FROM chunks"
        if ids is None:
            return [StoredChunk(*r) for r in self.db.execute(q + " ORDER BY id")]
        found = {r[0]: StoredChunk(*r) for r in self.db.execute(
            q + f" WHERE id IN ({','.join('?' * len(ids))})", ids)}
        return [found[i] for i in ids if i in found]

    def count(self) -> tuple[int, int]:
        """(files ingested without error, chunks)."""
        files = self.db.execute("SELECT COUNT(*) FROM files WHERE error IS NULL").fetchone()[0]
        return files, self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    # -- vectors ----------------------------------------------------------------------------------------
    def vectors(self):
        faiss = require("faiss", "rag", "the rag vector index")

        if self._vectors is None:
            f = self.path / "vectors.faiss"
            if f.is_file():
                self._vectors = faiss.read_index(str(f))
            else:
                dim = int(self.info().get("dim", 0))
                if not dim:
                    raise RagIndexError(f"{self.path}: the index records no embedding dimension")
                self._vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        return self._vectors

    def search_vectors(self, queries: np.ndarray, n: int) -> list[list[tuple[int, float]]]:
        index = self.vectors()
        if index.ntotal == 0:
            return [[] for _ in range(len(queries))]
        scores, ids = index.search(queries, min(n, index.ntotal))
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_s, strict=True) if i >= 0]
                for row_ids, row_s in zip(ids, scores, strict=True)]

    # -- lexical ----------------------------------------------------------------------------------------
    def build_bm25(self) -> None:
        from ftatlas.context.retrieval.lexical import build_bm25

        build_bm25(self.chunks(), self.path / "bm25")
        self._bm25 = None

    def search_bm25(self, queries: list[str], n: int) -> list[list[tuple[int, float]]]:
        from ftatlas.context.retrieval.lexical import Bm25Index

        if self._bm25 is None:
            self._bm25 = Bm25Index(self.path / "bm25")
        return self._bm25.search(queries, n)

    # -- persistence ------------------------------------------------------------------------------------
    def commit(self) -> None:
        """Vectors first (atomic rename), then the SQLite transaction that makes them visible."""
        faiss = require("faiss", "rag", "the rag vector index")

        if self._vectors is not None:
            tmp = self.path / ".vectors.faiss.tmp"
            faiss.write_index(self._vectors, str(tmp))
            os.replace(tmp, self.path / "vectors.faiss")
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def describe(self) -> dict[str, object]:
        files, chunks = self.count()
        return {"index": str(self.path), "files": files, "chunks": chunks, "failed_files": len(self.file_errors()),
                **{k: (json.loads(v) if v.isdigit() else v) for k, v in self.info().items()}}
