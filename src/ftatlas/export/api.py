"""``ftatlas export RUN --to FORMAT [--quant Q]``: write the artifact, open it in its real consumer, re-score it
on the run's held-out split next to the run itself, and record everything in ``export.json``."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

from ftatlas.allocator import release_free_memory
from ftatlas.export.formats import Artifact, Consumer, Exporter, get_exporter
from ftatlas.export.parity import Heldout, as_dict, drops, heldout, logit_parity, prompt_ids, run_reference, score
from ftatlas.export.source import Source, load_source
from ftatlas.phase_stats import Measure, rss_bytes
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
    consumer, exported, cost = _open_and_score(exporter, artifact, src, held, progress)
    try:
        logits = logit_parity(consumer, src, prompt_ids(src, held, PARITY_PROMPTS), exporter.tolerance(quant))
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
        "consumer_cost": cost,
        **artifact.notes,
        "logit_parity": as_dict(logits),
        "export": _row(exported),
        "reference": _row(reference),
        "drops": flagged,
        "ok": not flagged and logits.within_tolerance is not False,
    }
    atomic_write(target / "export.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _open_and_score(exporter: Exporter, artifact: Artifact, src: Source, held: Heldout,
                    progress: bool) -> tuple[Consumer, dict[str, Any], dict[str, Any]]:
    """Load the artifact in its consumer and score it, measuring what that costs: load and scoring seconds, and
    peak memory. On CPU the peak is the RSS the artifact adds over this process's RSS just before loading it (the
    process already holds the fp32 source, which is not the artifact's); on CUDA, max allocated (the source is
    on CPU)."""
    device = artifact.notes.get("device", "cpu")
    gc.collect()
    release_free_memory()  # pages freed by the write phase would otherwise hide part of the artifact's memory
    before = rss_bytes()
    with Measure(device) as meas:
        t0 = time.perf_counter()
        consumer = exporter.open(artifact, src)
        load_s = time.perf_counter() - t0
        try:
            exported = score(consumer, src, held, progress)
        except BaseException:
            consumer.close()
            raise
    st = meas.stats
    cost = {"load_seconds": round(load_s, 2), "score_seconds": round(exported.get("seconds") or 0.0, 2),
            "peak_bytes": st.peak_bytes if st.kind == "cuda" else max(st.peak_bytes - before, 0),
            "memory_kind": "cuda" if st.kind == "cuda" else "rss_added"}
    return consumer, exported, cost
