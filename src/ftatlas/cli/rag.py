"""``ftatlas rag ...``: ingest, query, eval, info."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ftatlas.cli.common import USER_ERRORS, err, fail, group, out

rag_app = group("rag", "Retrieval-augmented generation: build, query and score a document index.")

IndexOpt = Annotated[Path, typer.Option("--index", help="index folder (created on first ingest)")]


@rag_app.command("ingest")
def rag_ingest(
    docs: Annotated[list[str], typer.Argument(help="files or folders (.txt .md .jsonl .pdf), or builtin:knowledge")],
    index: IndexOpt,
    embedder: Annotated[str, typer.Option(help="sentence-transformers model name or path")] = "all-MiniLM-L6-v2",
    chunk_size: Annotated[int, typer.Option(help="max embedder tokens per chunk")] = 200,
    overlap: Annotated[int, typer.Option(help="tokens shared by consecutive chunks (whole sentences)")] = 40,
    text_field: Annotated[str, typer.Option(help="field holding the text in .jsonl rows")] = "text",
    prune: Annotated[bool, typer.Option(help="drop files that vanished from an ingested folder")] = True,
) -> None:
    """Chunk, embed and index documents; unchanged files are skipped, changed ones re-embedded."""
    from ftatlas.context.retrieval.ingest import ingest

    try:
        report = ingest(docs, index, embedder=embedder, chunk_size=chunk_size, overlap=overlap,
                        text_field=text_field, prune=prune, progress=sys.stderr.isatty())
    except USER_ERRORS as e:  # DocumentError, EmbedderError, RagIndexError are ValueErrors
        fail(e)
    for msg in report.failed.values():
        err.print(f"[yellow]skipped[/] {escape(msg)}", highlight=False)
    for path, why in report.skipped.items():
        err.print(f"[yellow]skipped[/] {escape(path)}: {escape(why)}", highlight=False)
    out.print(f"{index}: {report.summary()}", highlight=False, soft_wrap=True)  # one line, however long the path


@rag_app.command("query")
def rag_query(
    index: Annotated[Path, typer.Argument(help="index folder")],
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int, typer.Option("-k", help="passages to show")] = 4,
    retrieval: Annotated[str, typer.Option(help="hybrid, dense or bm25")] = "hybrid",
    width: Annotated[int, typer.Option(help="characters of each passage to show (0 = all)")] = 160,
) -> None:
    """Show the top-k passages for a question, with scores and each retriever's rank."""
    from ftatlas.context.retrieval.retrieve import Retriever
    from ftatlas.run_report import rich_table

    try:
        retriever = Retriever(index)
        hits = retriever.search(question, k=k, mode=retrieval)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        fail(e)
    rows = [{"#": str(i), "source": h.chunk.cite, "score": f"{h.score:.4f}",
             "dense rank": str(h.ranks.get("dense", "-")), "bm25 rank": str(h.ranks.get("bm25", "-")),
             "passage": " ".join(h.chunk.text.split())[: width or None]} for i, h in enumerate(hits, 1)]
    out.print(rich_table(rows, f"{retrieval} retrieval: {question}", left=("source", "passage")))


@rag_app.command("eval")
def rag_eval(
    index: Annotated[Path, typer.Argument(help="index folder")],
    data: Annotated[str, typer.Option(help="builtin:knowledge or a jsonl of {question, evidence|answer|source}")]
    = "builtin:knowledge",
    k: Annotated[int, typer.Option("-k", help="cut-off for recall@k")] = 4,
) -> None:
    """Retrieval quality: recall@1, recall@k and MRR@10 for dense, BM25 and hybrid, side by side."""
    from ftatlas.context.retrieval.evaluation import evaluate_retrieval, load_probes
    from ftatlas.run_report import rich_table

    try:
        probes = load_probes(data)
        results = evaluate_retrieval(index, probes, k=k)
    except USER_ERRORS as e:
        fail(e)
    rows = [{"retrieval": mode, **{m: f"{100 * v:.1f}" for m, v in r.items()}} for mode, r in results.items()]
    out.print(rich_table(rows, f"{index} on {data} (n={len(probes)}, %)", left=("retrieval",)))


@rag_app.command("info")
def rag_info(index: Annotated[Path, typer.Argument(help="index folder")]) -> None:
    """What an index holds: files, chunks, embedder, chunking, and files that failed to ingest."""
    from ftatlas.context.retrieval.store import IndexStore

    try:
        store = IndexStore(index)
    except USER_ERRORS as e:
        fail(e)
    out.print_json(json.dumps(store.describe()))
    for msg in store.file_errors().values():
        err.print(f"[yellow]failed[/] {msg}", highlight=False)
