"""What the UI shows of run directories: one summary row per run, a run's curves, predictions and exports.

Everything is read from the run-directory contract (recipe.yaml, metrics.jsonl, eval.json, summary.json,
export.json); a half-written or malformed file is reported in the row's ``problems``, never a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: {e}")
        return None


def read_metrics(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """metrics.jsonl rows; a partly written last line (a run still writing) is skipped and named."""
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if problems is not None:
                problems.append(f"{path}:{i}: not JSON ({e.msg})")
    return rows


def _recipe(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError) as e:
        problems.append(f"{path}: {e}")
        return {}
    return data if isinstance(data, dict) else {}


def _axis(recipe: dict[str, Any], axis: str, default: str) -> str:
    block = recipe.get(axis, default)
    return block.get("name", block.get("mode", default)) if isinstance(block, dict) else str(block)


def run_dirs(runs_root: Path) -> list[Path]:
    """Folders directly under ``runs_root`` that hold a recipe.yaml, newest first (arena cells show on arena pages)."""
    if not runs_root.is_dir():
        return []
    return sorted((p.parent for p in runs_root.glob("*/recipe.yaml")), key=lambda p: p.stat().st_mtime,
                  reverse=True)


def run_row(path: Path) -> dict[str, Any]:
    """One run as a table row: axes, metrics with intervals, memory, time, status."""
    problems: list[str] = []
    recipe = _recipe(path / "recipe.yaml", problems)
    ev = _read_json(path / "eval.json", problems) or {}
    summary = _read_json(path / "summary.json", problems) or {}
    metrics = read_metrics(path / "metrics.jsonl", problems)
    status = "done" if ev else "failed" if any("error" in m for m in metrics) else "started"
    last_loss = next((m["loss"] for m in reversed(metrics) if "loss" in m), None)
    return {
        "name": path.name, "path": str(path), "status": status,
        "model": (recipe.get("model") or {}).get("name", ""),
        "method": _axis(recipe, "method", "lora"), "objective": _axis(recipe, "objective", "sft"),
        "context": _axis(recipe, "context", "zero_shot"),
        "metrics": ev.get("metrics", {}), "ci95": ev.get("ci95", {}), "n": ev.get("n"),
        "lower_is_better": ev.get("lower_is_better", []),
        "peak_bytes": summary.get("train_peak_bytes") or summary.get("eval_peak_bytes") or ev.get("peak_memory_bytes"),
        "train_seconds": summary.get("train_seconds"), "tokens_per_s": summary.get("tokens_per_s"),
        "trainable_params": summary.get("trainable_params"), "last_loss": last_loss,
        "steps": max((m.get("step", 0) for m in metrics), default=0),
        "has_checkpoint": bool(complete_checkpoints(path)),
        "weights": "adapter" if (path / "adapter").is_dir() else "model" if (path / "model").is_dir() else None,
        "mtime": path.stat().st_mtime, "problems": problems,
    }


def complete_checkpoints(path: Path) -> list[Path]:
    """``checkpoints/checkpoint-N`` folders the trainer finished writing (trainer_state.json is its last file)."""
    return [p for p in (path / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]


def set_aside_incomplete(path: Path) -> list[str]:
    """Rename checkpoints a stop cut short mid-write to ``incomplete-checkpoint-N``, so a resume starts from the
    last whole one instead of failing on the partial one (nothing is deleted)."""
    moved = []
    for p in (path / "checkpoints").glob("checkpoint-*"):
        if not (p / "trainer_state.json").is_file():
            p.rename(p.with_name(f"incomplete-{p.name}"))
            moved.append(p.name)
    return moved


def list_runs(runs_root: Path) -> list[dict[str, Any]]:
    return [run_row(p) for p in run_dirs(runs_root)]


def resolve_run(runs_root: Path, name: str) -> Path:
    """``runs_root/name`` if it is a run directory; a name that leaves ``runs_root`` is refused."""
    path = (runs_root / name).resolve()
    if path.parent != runs_root.resolve() or not (path / "recipe.yaml").is_file():
        raise FileNotFoundError(f"no run named {name!r} in {runs_root}")
    return path


def run_detail(path: Path) -> dict[str, Any]:
    """The row plus the recipe text, the curves, the held-out examples and the exports' export.json."""
    row = run_row(path)
    problems = row["problems"]
    ev = _read_json(path / "eval.json", problems) or {}
    row |= {
        "recipe_yaml": (path / "recipe.yaml").read_text(errors="replace"),
        "curves": read_metrics(path / "metrics.jsonl"),
        "examples": ev.get("examples", []),
        "exports": run_exports(path, problems),
        "report_md": (path / "report.md").read_text(errors="replace") if (path / "report.md").is_file() else None,
    }
    return row


def run_exports(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """Every ``RUN/exports/*/export.json`` (oldest first), with its table as ``ftatlas export`` prints it."""
    from ftatlas.export.report import export_rows, logit_summary, metric_names

    out = []
    for file in sorted(path.glob("exports/*/export.json"), key=lambda f: f.stat().st_mtime):
        report = _read_json(file, problems)
        if report is None:
            continue
        try:
            out.append({"name": file.parent.name, "dir": str(file.parent), "format": report["format"],
                        "quant": report.get("quant"), "ok": report["ok"], "drops": report.get("drops", {}),
                        "files": report.get("files", []), "metrics": metric_names(report),
                        "rows": export_rows(report), "logits": logit_summary(report)})
        except (KeyError, TypeError, AttributeError) as e:
            problems.append(f"{file}: not an export.json ftatlas export wrote (missing or bad field {e})")
    return out


def compare_predictions(a: Path, b: Path) -> list[dict[str, Any]]:
    """Held-out examples of two runs paired by prompt (eval.json keeps the first examples of each)."""
    problems: list[str] = []
    ea = (_read_json(a / "eval.json", problems) or {}).get("examples", [])
    eb = {ex["prompt"]: ex for ex in (_read_json(b / "eval.json", problems) or {}).get("examples", [])}
    if problems:
        raise ValueError("; ".join(problems))
    return [{"prompt": ex["prompt"], "reference": ex.get("reference"), "a": ex.get("prediction"),
             "b": eb[ex["prompt"]].get("prediction")} for ex in ea if ex["prompt"] in eb]
