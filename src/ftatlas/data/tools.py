"""The data tools as library calls: read a file, apply one tool, write the kept rows and a JSON report.

Each function returns the report it wrote (a dict); the CLI (``ftatlas data dedup|decontaminate|filter|mix``)
only parses flags and prints a summary.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftatlas.data.table import Row, default_outputs, load_table, write_report, write_rows

Progress = Callable[[int], None] | None


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def _finish(rows: list[Row], kept: list[int], out: Path, report_path: Path, report: dict[str, Any],
            start: float) -> dict[str, Any]:
    write_rows(out, [rows[i] for i in kept])
    report = {**report, "rows_in": len(rows), "rows_out": len(kept), "removed": len(rows) - len(kept),
              "output": str(out), "report": str(report_path), "seconds": round(time.perf_counter() - start, 2),
              "peak_rss_mib": _peak_rss_mib(), "cpus": os.cpu_count()}
    write_report(report_path, report)
    return report


def dedup_file(path: str | Path, *, out: str | Path | None = None, report: str | Path | None = None,
               format: str = "auto", threshold: float = 0.7, ngram: int = 3, num_perm: int = 128,
               near: bool = True, keep: str = "first", score_field: str = "score",
               progress: Progress = None) -> dict[str, Any]:
    """Drop exact and near-duplicate rows, keeping one per cluster; the report lists every cluster."""
    from ftatlas.data.dedup import clusters_report, dedup_rows

    start = time.perf_counter()
    out_p, rep_p = default_outputs(path, "dedup", out, report)
    rows = load_table(path, format)
    result = dedup_rows(rows, threshold=threshold, ngram=ngram, num_perm=num_perm, near=near,
                        keep=keep, score_field=score_field, progress=progress)  # type: ignore[arg-type]
    exact = sum(c.exact_removed for c in result.clusters)
    body = {"tool": "dedup", "input": str(path),
            "params": {"threshold": threshold, "ngram": ngram, "num_perm": num_perm, "near": near, "keep": keep},
            "exact_removed": exact, "near_removed": result.removed - exact, "clusters": clusters_report(rows, result)}
    return _finish(rows, result.kept, out_p, rep_p, body, start)


def decontaminate_file(path: str | Path, against: list[str], *, out: str | Path | None = None,
                       report: str | Path | None = None, format: str = "auto", ngram: int = 13,
                       min_words: int = 3, coverage: float = 0.0, boilerplate_rows: int | None = None,
                       progress: Progress = None) -> dict[str, Any]:
    """Drop training rows sharing a non-boilerplate word n-gram with any eval source; the report names rows,
    spans and how many n-grams were ignored as boilerplate on each side."""
    from ftatlas.data.decontam import build_index, scan

    if not against:
        raise ValueError("give at least one eval source: --against FILE, builtin:NAME, lm-eval:TASK or a run dir")
    start = time.perf_counter()
    out_p, rep_p = default_outputs(path, "decontam", out, report)
    rows = load_table(path, format)
    index = build_index(against, ngram, min_words, coverage=coverage)
    result = scan(rows, index, boilerplate_rows, progress)
    dropped = {o.row for o in result.overlaps}
    body = {"tool": "decontaminate", "input": str(path), "against": against,
            "params": {"ngram": ngram, "min_words": min_words, "coverage": coverage,
                       "boilerplate_rows": result.limit},
            "eval_sequences": len(index), "boilerplate_ignored": index.ignored,
            "train_boilerplate_ignored": result.train_boilerplate,
            "train_boilerplate_examples": result.boilerplate_examples,
            "contaminated": [{"row": rows[o.row].where, "eval_rows": o.eval_rows, "spans": o.spans}
                             for o in result.overlaps]}
    return _finish(rows, [i for i in range(len(rows)) if i not in dropped], out_p, rep_p, body, start)


def filter_file(path: str | Path, spec: Any, *, out: str | Path | None = None, report: str | Path | None = None,
                format: str = "auto") -> dict[str, Any]:
    """Keep the rows inside every threshold of ``spec`` (a FilterSpec); report distributions and reasons."""
    from ftatlas.data.filters import filter_rows

    if not spec.checks:
        raise ValueError("no filter given (e.g. --min-words 3, --max-repetition 0.5, --refusals, "
                         "--max-perplexity 50 --model smollm2-135m)")
    start = time.perf_counter()
    out_p, rep_p = default_outputs(path, "filtered", out, report)
    rows = load_table(path, format)
    result = filter_rows(rows, spec)
    body = {"tool": "filter", "input": str(path),
            "checks": {k: {"min": lo, "max": hi} for k, (lo, hi) in spec.checks.items()},
            "distributions": result.distributions(), "removed_by": result.counts(),
            "removed_rows": [{"row": rows[r["index"]].where, "reasons": r["reasons"]} for r in result.removed]}
    return _finish(rows, result.kept, out_p, rep_p, body, start)


def mix_file(spec_path: str | Path, *, out: str | Path, report: str | Path | None = None,
             kind: str = "auto") -> dict[str, Any]:
    """Write the mixture a spec describes, with per-source counts in the report."""
    from ftatlas.data.mix import mix

    start = time.perf_counter()
    rows, body = mix(spec_path, kind)
    out_p = Path(out)
    rep_p = Path(report) if report else out_p.with_name(f"{out_p.stem}.report.json")
    write_rows(out_p, rows)
    body = {"tool": "mix", **body, "output": str(out_p), "report": str(rep_p),
            "seconds": round(time.perf_counter() - start, 2)}
    write_report(rep_p, body)
    return body
