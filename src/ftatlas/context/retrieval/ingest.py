"""``ftatlas rag ingest``: documents -> chunks -> embeddings + BM25, incrementally.

A file whose bytes did not change since the last ingest is skipped (no reading, no embedding); a changed
file's old chunks are removed and its new ones embedded; a file that disappeared from an ingested folder
is removed. Unreadable files are recorded with their error and the rest is ingested.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftatlas.context.retrieval.chunking import chunk_text
from ftatlas.context.retrieval.documents import DocumentError, find_files, read_documents, skipped_files
from ftatlas.context.retrieval.embedding import DEFAULT_EMBEDDER, load_embedder
from ftatlas.context.retrieval.store import IndexStore, RagIndexError

BUILTIN_PREFIX = "builtin:"


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # files in the folders that are not documents, and why
    chunks_embedded: int = 0
    seconds: float = 0.0
    totals: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        ok = [f for f in self.added if f not in self.failed], [f for f in self.updated if f not in self.failed]
        return (f"{len(ok[0])} added, {len(ok[1])} updated, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed, {len(self.failed)} failed, {len(self.skipped)} skipped; "
                f"{self.chunks_embedded} chunks embedded "
                f"in {self.seconds:.1f} s; index holds {self.totals.get('files')} files / "
                f"{self.totals.get('chunks')} chunks")


def resolve_sources(sources: list[str]) -> list[Path]:
    """Paths as given, with ``builtin:NAME`` replaced by that built-in task's documents folder."""
    from ftatlas.data.knowledge import builtin_documents

    out = []
    for s in sources:
        out.append(builtin_documents(s.removeprefix(BUILTIN_PREFIX)) if s.startswith(BUILTIN_PREFIX) else Path(s))
    return out


def ingest(sources: list[str], index: str | Path, *, embedder: str = DEFAULT_EMBEDDER, chunk_size: int = 200,
           overlap: int = 40, text_field: str = "text", prune: bool = True, progress: bool = True) -> IngestReport:
    t0 = time.perf_counter()
    report = IngestReport()
    paths = resolve_sources(sources)
    files = find_files(paths)
    report.skipped = skipped_files(paths)
    store = IndexStore(index, create=True)
    try:
        _check_settings(store, embedder, chunk_size, overlap, text_field)
        emb = None
        known = store.file_hashes()
        pending: list[tuple[str, str, list[tuple[str, int, int, int, str]]]] = []
        for f in files:
            key = str(f.resolve())
            sha = hashlib.sha256(f.read_bytes()).hexdigest()
            if known.get(key) == sha:
                report.unchanged.append(key)
                continue
            (report.updated if key in known else report.added).append(key)
            emb = emb or load_embedder(embedder)  # loaded only when some file needs (re)chunking
            try:
                rows = [(doc.doc_id, i, c.start, c.tokens, c.text) for doc in read_documents(f, text_field)
                        for i, c in enumerate(chunk_text(doc.text, emb.count_tokens, chunk_size, overlap))]
            except DocumentError as e:
                report.failed[key] = str(e)
                rows = []
            pending.append((key, sha, rows))
        if prune:
            report.removed = _vanished(known, files, paths)
        for key in report.removed:
            store.remove_file(key)
        texts = [r[4] for _, _, rows in pending for r in rows]
        vectors = emb.encode(texts, progress=progress) if emb is not None and texts else None
        start = 0
        for key, sha, rows in pending:
            if key in known:
                store.remove_file(key)
            store.add_file(key, sha, rows, vectors[start:start + len(rows)] if vectors is not None else None,
                           report.failed.get(key))
            start += len(rows)
        report.chunks_embedded = len(texts)
        if pending or report.removed or not (store.path / "bm25").is_dir():
            store.build_bm25()
        store.commit()
        report.totals = store.describe()
    finally:
        store.close()
    report.seconds = time.perf_counter() - t0
    return report


def _check_settings(store: IndexStore, embedder: str, chunk_size: int, overlap: int, text_field: str) -> None:
    """An index keeps one embedder and one chunking; mixing them would make scores meaningless."""
    want = {"embedder": embedder, "chunk_size": str(chunk_size), "overlap": str(overlap), "text_field": text_field}
    have = store.info()
    if not have:
        dim = load_embedder(embedder).dim
        store.set_info(**want, dim=dim)
        return
    diff = [f"{k}: index has {have.get(k)!r}, asked for {v!r}" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise RagIndexError(f"{store.path} was built with other settings ({'; '.join(diff)}); "
                            "use a new --index folder or the same settings")


def _vanished(known: dict[str, str], files: list[Path], roots: list[Path]) -> list[str]:
    """Files recorded under an ingested folder that are no longer there."""
    present = {str(f.resolve()) for f in files}
    dirs = [str(r.resolve()) + "/" for r in roots if r.is_dir()]
    return sorted(k for k in known if k not in present and any(k.startswith(d) for d in dirs))
