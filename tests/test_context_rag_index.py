"""RAG index: persistence, incremental re-ingest, per-file errors, fusion ordering, retrieval eval."""

from __future__ import annotations

import json

import pytest

from ftatlas.context.retrieval import ingest as ingest_mod
from ftatlas.context.retrieval.evaluation import Probe, evaluate_retrieval, load_probes
from ftatlas.context.retrieval.fusion import reciprocal_rank_fusion
from ftatlas.context.retrieval.ingest import ingest
from ftatlas.context.retrieval.retrieve import Retriever
from ftatlas.context.retrieval.store import RagIndexError
from ftatlas.data.errors import DataError

DOCS = {
    "ships.md": "# Ships\n\nThe Albatross is a cargo ship with a blue hull, built in Quorva.\n\n"
                "The Bellwether is a ferry that carries four hundred passengers across the strait.",
    "birds.txt": "Herons wade in shallow water to hunt fish.\n\nSwifts spend most of their lives flying.",
    "recipes.jsonl": json.dumps({"text": "Bake the lemon cake for forty minutes at 180 degrees."}) + "\n"
                     + json.dumps({"text": "Knead bread dough for ten minutes until smooth."}) + "\n",
}


def text_pdf(text: str) -> bytes:
    """A minimal one-page PDF with a text layer (no PDF writer library needed)."""
    stream = b"BT /F1 12 Tf 72 720 Td (" + text.encode() + b") Tj ET"
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def top_text(index, q, mode="hybrid"):
    r = Retriever(index)
    try:
        return r.search(q, k=1, mode=mode)[0].chunk.text
    finally:
        r.close()


def test_ingest_persists_and_reingest_of_unchanged_files_does_no_work(docs, tmp_path, monkeypatch):
    index = tmp_path / "idx"
    first = ingest([str(docs)], index, progress=False)
    assert len(first.added) == 3 and not first.failed and first.chunks_embedded == 4  # ships, birds, 2 rows
    assert "Albatross" in top_text(index, "which ship has a blue hull?")

    def no_embedder(*a, **k):
        raise AssertionError("unchanged files must not load the embedder")

    monkeypatch.setattr(ingest_mod, "load_embedder", no_embedder)
    again = ingest([str(docs)], index, progress=False)
    assert len(again.unchanged) == 3 and again.chunks_embedded == 0 and not again.added and not again.updated
    assert again.totals["chunks"] == 4


def test_changed_file_is_reembedded_and_vanished_file_removed(docs, tmp_path):
    index = tmp_path / "idx"
    ingest([str(docs)], index, progress=False)
    (docs / "birds.txt").write_text("Penguins cannot fly but swim fast in cold seas.")
    (docs / "recipes.jsonl").unlink()
    report = ingest([str(docs)], index, progress=False)
    assert [p.rsplit("/", 1)[-1] for p in report.updated] == ["birds.txt"]
    assert [p.rsplit("/", 1)[-1] for p in report.removed] == ["recipes.jsonl"]
    assert report.chunks_embedded == 1 and report.totals["chunks"] == 2
    assert "Penguins" in top_text(index, "birds that swim in cold water", mode="dense")
    r = Retriever(index)
    texts = {c.text for c in r.store.chunks()}
    assert not any("Herons" in t or "lemon" in t for t in texts)  # old chunks gone from text and vectors
    assert r.store.vectors().ntotal == 2
    r.close()


def test_bad_documents_get_a_clear_error_each_and_the_rest_is_ingested(docs, tmp_path):
    (docs / "blob.txt").write_bytes(b"\x89PNG\x00\x00\x01binary")
    (docs / "empty.md").write_text("  \n")
    (docs / "latin.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "rows.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "manual.pdf").write_bytes(text_pdf("The Albatross was refitted in Ostmere in 2019."))
    report = ingest([str(docs)], tmp_path / "idx", progress=False)
    errors = {k.rsplit("/", 1)[-1]: v for k, v in report.failed.items()}
    assert set(errors) == {"blob.txt", "empty.md", "latin.txt", "rows.jsonl", "broken.pdf"}
    assert "broken.pdf" in errors["broken.pdf"] and "PDF" in errors["broken.pdf"]
    assert "binary" in errors["blob.txt"] and "empty" in errors["empty.md"]
    assert "not UTF-8" in errors["latin.txt"] and "byte 3" in errors["latin.txt"]
    assert "rows.jsonl:2" in errors["rows.jsonl"] and "'text'" in errors["rows.jsonl"]
    assert report.totals["files"] == 4 and report.totals["chunks"] == 5  # the good files (and the PDF) are there
    assert "Ostmere" in top_text(tmp_path / "idx", "where was the Albatross refitted?", mode="bm25")


def test_index_refuses_other_settings_and_missing_index(docs, tmp_path):
    index = tmp_path / "idx"
    ingest([str(docs)], index, progress=False)
    with pytest.raises(RagIndexError, match="chunk_size: index has '200', asked for '100'"):
        ingest([str(docs)], index, chunk_size=100, progress=False)
    with pytest.raises(RagIndexError, match="ftatlas rag ingest"):
        Retriever(tmp_path / "nowhere")


def test_reciprocal_rank_fusion_orders_by_summed_reciprocal_ranks():
    fused = reciprocal_rank_fusion({"dense": [1, 2, 3], "bm25": [3, 4, 1]}, k=60)
    ids = [i for i, _ in fused]
    assert ids == [1, 3, 2, 4]  # 1: 1/61+1/63 > 3: 1/63+1/61 tie -> best single rank (1 is dense #1)
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2][1] == pytest.approx(1 / 62) and fused[3][1] == pytest.approx(1 / 62)  # tie: dense before bm25


def test_hybrid_puts_a_passage_both_retrievers_like_first(docs, tmp_path):
    index = tmp_path / "idx"
    ingest([str(docs)], index, progress=False)
    r = Retriever(index)
    hits = r.search("ferry passengers strait", k=3, mode="hybrid")
    assert "Bellwether" in hits[0].chunk.text and set(hits[0].ranks) == {"dense", "bm25"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert r.search("zzzz qqqq", k=3, mode="bm25") == []  # no shared term: BM25 returns nothing, not noise
    r.close()


def test_retrieval_eval_reports_recall_and_mrr(docs, tmp_path):
    index = tmp_path / "idx"
    ingest([str(docs)], index, progress=False)
    probes = [Probe("Where was the Albatross built?", ["Albatross", "Quorva"]),
              Probe("How long to bake the cake?", source="recipes.jsonl")]
    res = evaluate_retrieval(index, probes, k=2, modes=("bm25",))
    assert res["bm25"]["recall@2"] == 1.0 and res["bm25"]["mrr@10"] == pytest.approx(1.0)
    bad = tmp_path / "probes.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": ""}\n')
    with pytest.raises(DataError, match=r"probes.jsonl:2.*question"):
        load_probes(str(bad))
