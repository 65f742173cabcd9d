"""Arena rows for a cell's exports (``export: [gguf:q4_k_m, safetensors]``): each artifact is written and
re-scored by ``ftatlas export`` in its own process, and its held-out score becomes a row of the same table,
so "what does 4-bit cost on my task" is one arena run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftatlas.allocator import preload_env
from ftatlas.runs import atomic_write


def parse_export(spec: str) -> tuple[str, str | None]:
    """``gguf:q4_k_m`` -> (``gguf``, ``q4_k_m``); ``safetensors`` -> (``safetensors``, None)."""
    fmt, _, quant = spec.partition(":")
    return fmt, quant or None


def export_row_name(cell: str, spec: str) -> str:
    return f"{cell}@{spec}"


def export_command(run_dir: Path, spec: str, out: Path) -> list[str]:
    fmt, quant = parse_export(spec)
    return [sys.executable, "-m", "ftatlas.cli", "export", str(run_dir), "--to", fmt,
            *(["--quant", quant] if quant else []), "--out", str(out)]


def export_rows(cell_row: dict[str, Any], specs: list[str], cells_dir: Path,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per export of a finished cell (failed exports are rows with their error, like failed cells)."""
    run_dir = Path(cell_row["run_dir"])
    rows = []
    for spec in specs:
        name = export_row_name(cell_row["cell"], spec)
        status_file = cells_dir / f"{name}.json"
        if status_file.is_file():
            previous = json.loads(status_file.read_text())
            if previous.get("status") == "ok" and previous.get("hash") == cell_row.get("hash"):
                rows.append(previous)
                continue
        out = run_dir / "exports" / spec.replace(":", "-")
        log_file = cells_dir / f"{name}.log"
        t0 = time.perf_counter()
        with open(log_file, "w") as logf:
            proc = subprocess.run(export_command(run_dir, spec, out), stdout=logf, stderr=subprocess.STDOUT,
                                  env=preload_env())
        wall = time.perf_counter() - t0
        base = {"cell": name, "hash": cell_row.get("hash"), "wall_seconds": round(wall, 1),
                "method": f"{cell_row.get('method')} -> {spec}", "objective": cell_row.get("objective"),
                "context": cell_row.get("context")}
        if not (out / "export.json").is_file():  # exit 1 with export.json is a flagged drop, still a row
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
            row = {**base, "status": "failed", "error": (lines[-1] if lines else f"exit {proc.returncode}")[:400]}
            log(f"  {name}: failed ({row['error']})")
        else:
            row = {**base, "status": "ok", **_results(json.loads((out / "export.json").read_text()))}
            log(f"  {name}: exported and re-scored in {wall:.0f} s")
        atomic_write(status_file, json.dumps(row, indent=2) + "\n")
        rows.append(row)
    return rows


def _results(report: dict[str, Any]) -> dict[str, Any]:
    """An export row's numbers. It trains nothing, so train time and trainable params stay absent (shown "—");
    its memory is what the artifact takes in its consumer (load + scoring), and its time the scoring's."""
    exp = report["export"]
    n = exp.get("n") or 0
    cost = report.get("consumer_cost", {})
    return {
        "run_dir": report["dir"],
        "metrics": exp.get("metrics", {}),
        "ci95": exp.get("ci95", {}),
        "lower_is_better": report["reference"].get("lower_is_better", []),
        "n": n,
        "prompt_tokens": exp.get("prompt_tokens_per_request"),
        "latency_s": round(exp["seconds"] / n, 3) if n and exp.get("seconds") else None,
        "size_bytes": report["size_bytes"],
        "gen_tokens_per_s": exp.get("gen_tokens_per_s"),
        "drops": report["drops"],
        "peak_bytes": cost.get("peak_bytes"),
        "memory_kind": cost.get("memory_kind"),
        "load_seconds": cost.get("load_seconds"),
        "score_seconds": cost.get("score_seconds"),
    }
