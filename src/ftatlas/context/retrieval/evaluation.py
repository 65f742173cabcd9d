"""``ftatlas rag eval``: how often retrieval finds the passage that holds the answer (recall@k, MRR@10).

Relevance is decided without labels per chunk: a chunk is relevant to a question when it contains every
``evidence`` string of the question (case-insensitive; the built-in knowledge task gives the product name
and the answer), or, for rows that name a ``source`` file, when it comes from that file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ftatlas.context.retrieval.retrieve import MODES, Hit, Retriever
from ftatlas.data.errors import DataError

MRR_DEPTH = 10


@dataclass(frozen=True)
class Probe:
    question: str
    evidence: list[str] = field(default_factory=list)
    source: str | None = None

    def relevant(self, hit: Hit) -> bool:
        if self.source is not None:
            return Path(hit.chunk.doc_id.split(":")[0]).name == Path(self.source).name
        text = hit.chunk.text.lower()
        return all(e.lower() in text for e in self.evidence)


def load_probes(data: str) -> list[Probe]:
    """``builtin:knowledge`` (its held-out questions) or a jsonl of {question, evidence: [...] | answer | source}."""
    if data.startswith("builtin:"):
        from ftatlas.data.splits import load_builtin

        rows = load_builtin(data.removeprefix("builtin:"), "eval")
        probes = [Probe(r.messages[0].content, list(r.meta.get("evidence", []))) for r in rows]
        if not all(p.evidence for p in probes):
            raise DataError(data, None, "evidence", "this built-in task has no retrieval evidence")
        return probes
    path = Path(data)
    if not path.is_file():
        raise DataError(data, None, "data", "no such file")
    probes = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            probes.append(_probe(path, i, line))
    if not probes:
        raise DataError(str(path), None, "question", "no rows")
    return probes


def _probe(path: Path, i: int, line: str) -> Probe:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(str(path), i, "row", f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
        raise DataError(str(path), i, "question", "missing or not a non-empty string")
    evidence = row.get("evidence", [row["answer"]] if isinstance(row.get("answer"), str) else [])
    if not isinstance(evidence, list) or not all(isinstance(e, str) and e for e in evidence):
        raise DataError(str(path), i, "evidence", "must be a list of non-empty strings")
    source = row.get("source")
    if not evidence and not isinstance(source, str):
        raise DataError(str(path), i, "evidence", "give evidence (list), answer (string) or source (file name)")
    return Probe(row["question"], evidence, source)


def evaluate_retrieval(index: str | Path, probes: list[Probe], k: int = 4,
                       modes: tuple[str, ...] = MODES) -> dict[str, dict[str, float]]:
    """``{mode: {"recall@1", "recall@k", "mrr@10"}}`` over the probes."""
    retriever = Retriever(index)
    depth = max(k, MRR_DEPTH)
    results = {}
    try:
        for mode in modes:
            first = []
            for probe, hits in zip(probes, retriever.search_many([p.question for p in probes], depth, mode),
                                   strict=True):
                first.append(next((r for r, h in enumerate(hits, 1) if probe.relevant(h)), None))
            n = len(probes)
            results[mode] = {
                "recall@1": sum(r == 1 for r in first) / n,
                f"recall@{k}": sum(r is not None and r <= k for r in first) / n,
                f"mrr@{MRR_DEPTH}": sum(1 / r for r in first if r is not None and r <= MRR_DEPTH) / n,
            }
    finally:
        retriever.close()
    return results
