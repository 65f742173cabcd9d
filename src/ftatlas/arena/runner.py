"""``ftatlas arena ARENA.yaml``: run every cell (resumable), then write the side-by-side table and report.

Each cell runs as ``ftatlas train`` in its own subprocess, so peak memory is the cell's own and one
crashing cell cannot take the arena down; its log is kept in ``cells/<cell>.log``. A cell whose resolved
recipe is unchanged and whose last run finished is skipped; a failed cell is recorded with its error
and re-run next time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ftatlas.arena.spec import ArenaSpec, Cell, recipe_hash
from ftatlas.recipe import RecipeError, dump_recipe, format_errors
from ftatlas.runs import atomic_write


class ArenaError(ValueError):
    """An arena file that cannot be read or validated."""


def load_arena(path: str | Path) -> ArenaSpec:
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"arena file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return ArenaSpec.model_validate(data)
    except yaml.YAMLError as e:
        raise ArenaError(f"{path}: not valid YAML: {e}") from None
    except ValidationError as e:
        raise ArenaError(f"{path}: invalid arena\n{format_errors(e, root=ArenaSpec)}") from None


def run_arena(spec: ArenaSpec, only: list[str] | None = None,
              log: Callable[[str], None] = print) -> tuple[Path, list[dict[str, Any]]]:
    """Run the cells (all, or ``only``), write table.md, table.csv and report.html; return folder and rows."""
    from ftatlas.arena.report import write_reports

    root = Path(spec.output.get("dir", "arena")) / spec.name
    cells_dir = root / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only or []) - {c.name for c in spec.cells})
    if unknown:
        raise ArenaError(f"no cell named {', '.join(unknown)}; cells: {', '.join(c.name for c in spec.cells)}")
    rows = []
    for i, cell in enumerate(spec.cells, 1):
        if only and cell.name not in only:
            row = _previous(cells_dir, cell)
            if row is not None:
                rows.append(row)
            continue
        log(f"[{i}/{len(spec.cells)}] {cell.name}")
        rows.append(run_cell(spec, cell, cells_dir, log))
    write_reports(spec, rows, root)
    return root, rows


def run_cell(spec: ArenaSpec, cell: Cell, cells_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    status_file = cells_dir / f"{cell.name}.json"
    try:
        recipe = spec.recipe_for(cell, str(cells_dir))
    except RecipeError as e:
        return _record(status_file, {"cell": cell.name, "status": "failed", "error": str(e)})
    digest = recipe_hash(recipe)
    previous = _previous(cells_dir, cell)
    if previous and previous.get("status") == "ok" and previous.get("hash") == digest:
        log(f"  {cell.name}: finished before with the same recipe; skipped")
        return previous
    recipe_file = cells_dir / f"{cell.name}.yaml"
    atomic_write(recipe_file, dump_recipe(recipe))
    t0 = time.perf_counter()
    with open(cells_dir / f"{cell.name}.log", "w") as logf:
        proc = subprocess.run([sys.executable, "-m", "ftatlas.cli", "train", str(recipe_file)],
                              stdout=logf, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    base = {"cell": cell.name, "hash": digest, "wall_seconds": round(wall, 1), "method": recipe.method.name,
            "objective": recipe.objective.name, "context": recipe.context.name}
    run_dir = cells_dir / cell.name
    if proc.returncode != 0 or not (run_dir / "eval.json").is_file():
        error = _last_error((cells_dir / f"{cell.name}.log").read_text(errors="replace"))
        log(f"  {cell.name}: failed ({error})")
        return _record(status_file, {**base, "status": "failed", "error": error})
    row = {**base, "status": "ok", **_results(run_dir)}
    log(f"  {cell.name}: done in {wall:.0f} s")
    return _record(status_file, row)


def _results(run_dir: Path) -> dict[str, Any]:
    ev = json.loads((run_dir / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    losses = []
    if (run_dir / "metrics.jsonl").is_file():
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if "loss" in entry and "step" in entry:
                losses.append([entry["step"], entry["loss"]])
    n = ev.get("n") or 0
    return {
        "run_dir": str(run_dir),
        "metrics": ev.get("metrics", {}),
        "ci95": ev.get("ci95", {}),
        "n": n,
        "prompt_tokens": ev.get("prompt_tokens_per_request"),
        "latency_s": round(ev["seconds"] / n, 3) if n and ev.get("seconds") else None,
        "trainable_params": summary.get("trainable_params", 0),
        "peak_bytes": summary.get("train_peak_bytes") or summary.get("eval_peak_bytes") or ev.get("peak_memory_bytes"),
        "memory_kind": summary.get("memory_kind", "rss"),
        "train_seconds": summary.get("train_seconds", 0.0),
        "tokens_per_s": summary.get("tokens_per_s"),
        "losses": losses,
    }


def _previous(cells_dir: Path, cell: Cell) -> dict[str, Any] | None:
    f = cells_dir / f"{cell.name}.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _record(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    atomic_write(path, json.dumps(row, indent=2) + "\n")
    return row


def _last_error(log_text: str) -> str:
    """The most useful line of a failed run's log: ftatlas' own 'error:' message, else the last line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln.split(":")[0]]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:400]
