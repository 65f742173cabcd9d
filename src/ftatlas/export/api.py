"""``ftatlas export RUN --to FORMAT [--quant Q]``: write the artifact, open it in its real consumer, re-score it
on the run's held-out split next to the run itself, and record everything in ``export.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftatlas.export.formats import get_exporter
from ftatlas.export.parity import as_dict, drops, heldout, logit_parity, prompt_ids, run_reference, score
from ftatlas.export.source import load_source
from ftatlas.runs import atomic_write

PARITY_PROMPTS = 8  # held-out prompts whose every-position logits are compared


def _row(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("metrics", "ci95", "n", "gen_tokens_per_s", "lower_is_better", "not_scored", "from", "seconds")
    return {k: result[k] for k in keep if k in result}


def export_run(run_dir: str | Path, to: str, quant: str | None = None, out: str | Path | None = None,
               max_examples: int | None = None, progress: bool = True, reuse_eval: bool = True) -> dict[str, Any]:
    """Export, check and re-score; returns the ``export.json`` body (also written into the output folder).
    ``reuse_eval=False`` re-scores the run itself too, instead of reading its eval.json."""
    exporter = get_exporter(to)
    quant = exporter.check(quant)  # a bad --quant fails before the model loads
    src = load_source(run_dir)
    target = Path(out) if out else src.run.path / "exports" / (f"{to}-{quant}" if quant else to)
    artifact = exporter.write(src, target, quant)
    held = heldout(src, max_examples)
    consumer = exporter.open(artifact, src)
    try:
        logits = logit_parity(consumer, src, prompt_ids(src, held, PARITY_PROMPTS), exporter.tolerance(quant))
        exported = score(consumer, src, held, progress)
    finally:
        consumer.close()
    reference = run_reference(src, held, progress, reuse_eval)
    flagged = drops(reference, exported)
    report = {
        "run": str(src.run.path),
        "format": to,
        "quant": quant,
        "dir": str(target),
        "path": str(artifact.path),
        "files": [str(f) for f in artifact.files],
        "size_bytes": artifact.size_bytes,
        "files_bytes": artifact.files_bytes,
        "source_fp32_bytes": sum(p.numel() * 4 for p in src.model.parameters()),
        "consumer": consumer.name,
        **artifact.notes,
        "logit_parity": as_dict(logits),
        "export": _row(exported),
        "reference": _row(reference),
        "drops": flagged,
        "ok": not flagged and logits.within_tolerance is not False,
    }
    atomic_write(target / "export.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
