"""``ftatlas eval``: score a run (its own held-out split by default) or any model on a data file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftatlas.context.base import context_for
from ftatlas.data.readers import read_file
from ftatlas.data.splits import load_splits
from ftatlas.evaluate.model_metrics import check_metrics
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.models.device import resolve_precision
from ftatlas.models.trained import load_run_or_model
from ftatlas.phase_stats import Measure
from ftatlas.recipe import DecodeSpec, EvalSpec
from ftatlas.runs import atomic_write

FALLBACK_METRICS = ["exact_match", "token_f1"]


def objective_evaluation(target: str, data: str | None, max_examples: int | None,
                         out: Path | None) -> tuple[dict[str, Any], Path] | None:
    """A run whose objective has its own evaluation (``Objective.eval_metrics``): its held-out split, or
    ``data`` read as that objective's rows. None for every other target."""
    from ftatlas.data.splits import read_rows
    from ftatlas.resolve import load_recipe

    if not (Path(target) / "recipe.yaml").is_file():
        return None
    objective = load_recipe(Path(target) / "recipe.yaml").axes.objective.entry
    if not objective.eval_metrics:
        return None
    kind = objective.data_kind
    rows = read_rows(data, "auto", kind) if data is not None else None
    loaded, recipe, run = load_run_or_model(target)
    if rows is None:
        rows = load_splits(recipe.data, kind).eval
    rows = rows[:max_examples] if max_examples else rows
    device = next(loaded.model.parameters()).device.type
    with Measure(device) as meas:
        result = objective().evaluate(loaded.model, loaded.tokenizer, rows, recipe)
    result["peak_memory_bytes"] = meas.stats.peak_bytes
    result["target"], result["data"] = target, data or "run held-out split"
    out = out or run.path / ("eval.json" if data is None else f"eval-{Path(data).stem}.json")
    atomic_write(out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result, out


def _saved_eval(target: str) -> EvalSpec | None:
    """A run's own ``eval:`` block (its schema, reward model, judge), read without loading the model."""
    from ftatlas.resolve import load_recipe

    recipe_file = Path(target) / "recipe.yaml"
    return load_recipe(recipe_file).eval if recipe_file.is_file() else None


def _spec(saved: EvalSpec | None, metrics: list[str], max_examples: int | None, batch_size: int,
          decode: DecodeSpec, options: dict[str, Any] | None) -> EvalSpec:
    base = saved.model_dump(exclude={"metrics", "max_examples", "batch_size", "decode"}) if saved else {}
    return EvalSpec(**{**base, **(options or {}), "metrics": metrics, "max_examples": max_examples,
                       "batch_size": batch_size, "decode": decode})


def evaluate_target(
    target: str,
    data: str | None,
    metrics: list[str] | None,
    decode: DecodeSpec,
    *,
    max_examples: int | None = None,
    batch_size: int = 16,
    out: Path | None = None,
    progress: bool = True,
    context: str | None = None,
    context_options: list[str] | None = None,
    eval_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Generate and score; the run's recipe context applies unless ``context``/``context_options`` change it.
    Runs whose objective evaluates itself (a reward model: pairwise accuracy) are scored that way.

    ``eval_options`` sets fields of the recipe's ``eval:`` block (e.g. ``json_schema``, ``reward_model``,
    ``judge``) over the run's own; for a bare model they are the whole configuration."""
    own = objective_evaluation(target, data, max_examples, out)
    if own is not None:
        return own
    saved = _saved_eval(target)
    if metrics:  # unknown names and missing configuration fail before the model loads
        check_metrics(metrics, _spec(saved, metrics, max_examples, batch_size, decode, eval_options))
    if data is not None:
        rows = read_file(data)
    loaded, recipe, run = load_run_or_model(target)
    if data is None:
        if recipe is None:
            raise ValueError(f"{target} is a model, not a run directory: pass --data FILE to evaluate it")
        objective = recipe.axes.objective.entry()
        splits = load_splits(recipe.data, objective.data_kind)  # e.g. pairs: scored against `chosen`
        rows = objective.eval_rows(splits.eval)
        metrics = metrics or recipe.eval.metrics or objective.default_metrics(rows, splits.default_metrics)
    metrics = metrics or (recipe.eval.metrics if recipe else None) or FALLBACK_METRICS
    ctx = context_for(recipe, loaded.tokenizer, context, context_options)
    device = next(loaded.model.parameters()).device.type
    spec = _spec(saved, metrics, max_examples, batch_size, decode, eval_options)  # evaluate_rows checks it
    with Measure(device) as meas:
        result = evaluate_rows(loaded.model, loaded.tokenizer, rows, spec, metrics,
                               autocast=resolve_precision("auto", device).autocast, progress=progress,
                               context=ctx)
    result["peak_memory_bytes"] = meas.stats.peak_bytes
    result["target"], result["data"] = target, data or "run held-out split"
    if out is None:
        name = "eval.json" if data is None else f"eval-{Path(data).stem}.json"
        out = (run.path if run else Path.cwd()) / name
    atomic_write(out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result, out
