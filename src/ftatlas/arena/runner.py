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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ftatlas.allocator import preload_env
from ftatlas.arena.exports import export_rows
from ftatlas.arena.spec import ArenaSpec, Cell, recipe_hash
from ftatlas.recipe import Recipe, RecipeError, dump_recipe, format_errors
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


@dataclass
class CellJob:
    """A cell that needs its ``ftatlas train`` run: its written recipe, log file and recipe hash."""

    cell: Cell
    recipe: Recipe
    digest: str
    recipe_file: Path
    log_file: Path


# An executor runs the jobs it is handed (lazily, in order or in parallel) and yields each job with the
# train command's return code and its wall seconds.
Executor = Callable[[Iterable[CellJob]], Iterator[tuple[CellJob, int, float]]]


def run_locally(jobs: Iterable[CellJob]) -> Iterator[tuple[CellJob, int, float]]:
    """One cell after another on this machine."""
    for job in jobs:
        yield job, *execute_cell(str(job.recipe_file), str(job.log_file), str(Path.cwd()))


def run_arena(spec: ArenaSpec, only: list[str] | None = None, log: Callable[[str], None] = print,
              executor: Executor = run_locally) -> tuple[Path, list[dict[str, Any]]]:
    """Run the cells (all, or ``only``), write table.md, table.csv and report.html; return folder and rows.

    ``executor`` runs the cells that need training: sequentially here by default, or e.g. as Ray tasks
    (``ftatlas.arena.ray_runner``); skipping finished cells and recording results happen here either way."""
    from ftatlas.arena.report import write_reports

    root = Path(spec.output.get("dir", "arena")) / spec.name
    cells_dir = root / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only or []) - {c.name for c in spec.cells})
    if unknown:
        raise ArenaError(f"no cell named {', '.join(unknown)}; cells: {', '.join(c.name for c in spec.cells)}")
    rows: dict[str, dict[str, Any]] = {}

    def jobs() -> Iterator[CellJob]:
        for i, cell in enumerate(spec.cells, 1):
            if only and cell.name not in only:
                row = _previous(cells_dir, cell)
                if row is not None:
                    rows[cell.name] = row
                continue
            log(f"[{i}/{len(spec.cells)}] {cell.name}")
            prepared = prepare_cell(spec, cell, cells_dir, log)
            if isinstance(prepared, CellJob):
                yield prepared
            else:
                rows[cell.name] = prepared

    for job, returncode, wall in executor(jobs()):
        rows[job.cell.name] = finish_cell(job, returncode, wall, log)
    ordered = []
    for cell in spec.cells:
        row = rows.get(cell.name)
        if row is None:
            continue
        ordered.append(row)
        if cell.export and row.get("status") == "ok":  # earlier exports of an unchanged cell are reused
            ordered += export_rows(row, cell.export, cells_dir, log)
    if not spec.allow_overlap:
        _mark_overlap(ordered)
    write_reports(spec, ordered, root)
    return root, ordered


def _mark_overlap(rows: list[dict[str, Any]]) -> None:
    """A held-out score trained on its own rows is no evidence: such rows get no verdict, with the reason."""
    for r in rows:
        n = r.get("train_eval_overlap")
        if n:
            r["no_verdict"] = (f"no verdict: {n} training rows overlap the held-out rows "
                               "(ftatlas data decontaminate, or allow_overlap: true)")


def prepare_cell(spec: ArenaSpec, cell: Cell, cells_dir: Path, log: Callable[[str], None]) -> CellJob | dict[str, Any]:
    """The cell's row if nothing needs running (invalid recipe, or finished before with the same recipe);
    otherwise its recipe written to ``cells/<cell>.yaml`` as a job."""
    try:
        recipe = spec.recipe_for(cell, str(cells_dir))
    except RecipeError as e:
        return _record(cells_dir / f"{cell.name}.json", {"cell": cell.name, "status": "failed", "error": str(e)})
    digest = recipe_hash(recipe)
    previous = _previous(cells_dir, cell)
    if previous and previous.get("status") == "ok" and previous.get("hash") == digest:
        log(f"  {cell.name}: finished before with the same recipe; skipped")
        return previous
    recipe_file = cells_dir / f"{cell.name}.yaml"
    atomic_write(recipe_file, dump_recipe(recipe))
    return CellJob(cell, recipe, digest, recipe_file, cells_dir / f"{cell.name}.log")


def cell_command(recipe_file: str) -> list[str]:
    """The command that runs a cell: ``ftatlas train`` with this interpreter, in its own process."""
    return [sys.executable, "-m", "ftatlas.cli", "train", recipe_file]


def execute_cell(recipe_file: str, log_file: str, cwd: str) -> tuple[int, float]:
    """Run a cell's command (from ``cwd``, where relative paths in its recipe resolve), output to ``log_file``;
    return its exit code and wall seconds. Plain strings in and out, so it can run on a Ray worker."""
    t0 = time.perf_counter()
    with open(log_file, "w") as logf:
        proc = subprocess.run(cell_command(recipe_file), stdout=logf, stderr=subprocess.STDOUT, cwd=cwd,
                              env=preload_env())
    return proc.returncode, time.perf_counter() - t0


def finish_cell(job: CellJob, returncode: int, wall: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Record the cell's row from its run dir (ok), or from the last error line of its log (failed)."""
    cells_dir, cell, recipe = job.recipe_file.parent, job.cell, job.recipe
    base = {"cell": cell.name, "hash": job.digest, "wall_seconds": round(wall, 1), "method": recipe.method.name,
            "objective": recipe.objective.name, "context": recipe.context.name}
    status_file = cells_dir / f"{cell.name}.json"
    run_dir = cells_dir / cell.name
    if returncode != 0 or not (run_dir / "eval.json").is_file():
        text = job.log_file.read_text(errors="replace") if job.log_file.is_file() else ""
        error = _last_error(text)
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
        "lower_is_better": ev.get("lower_is_better", []),
        "scales": ev.get("scales", {}),
        "n": n,
        "prompt_tokens": ev.get("prompt_tokens_per_request"),
        "latency_s": round(ev["seconds"] / n, 3) if n and ev.get("seconds") else None,
        "trainable_params": summary.get("trainable_params", 0),
        "peak_bytes": summary.get("train_peak_bytes") or summary.get("eval_peak_bytes") or ev.get("peak_memory_bytes"),
        "memory_kind": summary.get("memory_kind", "rss"),
        "train_seconds": summary.get("train_seconds", 0.0),
        "tokens_per_s": summary.get("tokens_per_s"),
        "losses": losses,
        "eval_losses": summary.get("eval_loss_curve") or [],
        "kept_step": summary.get("kept_step"),
        "planned_steps": summary.get("planned_steps"),
        "stopped_early": summary.get("stopped_early", False),
        "train_eval_overlap": _overlap(run_dir),
    }


def _overlap(run_dir: Path) -> int:
    f = run_dir / "data_checks.json"
    return int(json.loads(f.read_text()).get("train_eval_overlap", 0)) if f.is_file() else 0


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
