"""Printing the advice: the walk, the method table (with measured columns after ``--measure``), notes, recipes."""

from __future__ import annotations

from typing import Any

from ftatlas import allocator
from ftatlas.advise.advisor import Advice, Row, candidate_params, load_config
from ftatlas.advise.probes import dry_run


def _fmt_time(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def table_rows(advice: Advice) -> list[dict[str, str]]:
    out = []
    for r in advice.rows:
        e = r.estimate
        if e is None:
            out.append({"method": r.method, "trainable": "-", "weights GB": "-", "grads+optim GB": "-",
                        "activations GB": "-", "peak GB": "-", "peak in": "-", "epoch": "-", "fits": f"n/a: {r.note}"})
            continue
        m = e.params
        row = {"method": r.method, "trainable": f"{m.trainable_params:,}",
               "weights GB": f"{(m.frozen_bytes + m.trainable_bytes) / 1e9:.2f}",
               "grads+optim GB": f"{(m.grad_bytes + m.optimizer_bytes) / 1e9:.2f}",
               "activations GB": f"{(e.parts['activations'] + e.parts['autocast_copies'] + e.parts['loss']) / 1e9:.2f}",
               "peak GB": f"{e.peak_bytes / 1e9:.2f}", "peak in": e.peak_phase, "epoch": _fmt_time(r.epoch_seconds),
               "fits": "yes" if r.fits else "no"}
        if r.measured:
            got = r.measured
            row["measured peak GB"] = ("err: " + got["error"][:60]) if "error" in got else \
                f"{(e.base_bytes + got['delta_bytes']) / 1e9:.2f}"
            row["measured tok/s"] = "" if "error" in got else f"{got['tokens_per_s']:.0f}"
            row["est. tok/s"] = f"{e.tokens / max(e.seconds_per_step(advice.throughput), 1e-9):.0f}"
        out.append(row)
    if any(r.measured for r in advice.rows):
        for row in out:
            row.setdefault("measured peak GB", "")
            row.setdefault("measured tok/s", "")
            row.setdefault("est. tok/s", "")
    return out


def measure_candidates(advice: Advice, data: str, steps: int = 3) -> None:
    """A few real optimizer steps of every method that fits, each in a fresh process; fills ``Row.measured``."""
    from ftatlas.advise.recipes import _data_block

    config = load_config(advice.model)
    length = max(16, advice.data.shape.p90)
    for r in advice.rows:
        if not r.fits:
            continue
        recipe: dict[str, Any] = {
            "model": {"name": advice.model, "device": advice.device},
            "data": _data_block(data, length) | {"max_train": advice.spec.batch_size * steps, "eval_split": 0.0},
            "method": {"name": r.method, **candidate_params(r.method, config)},
            "objective": "dpo" if advice.goal == "alignment" else "sft",  # the path the estimate models
            "train": {"batch_size": advice.spec.batch_size, "precision": "auto",
                      "gradient_checkpointing": "auto" if advice.spec.gradient_checkpointing is None
                      else advice.spec.gradient_checkpointing}}
        if "builtin" in recipe["data"]:
            recipe["data"].pop("eval_split")
        r.measured = dry_run(recipe, steps=steps)


def summary_lines(advice: Advice) -> list[str]:
    d = advice.data
    return [
        f"model {advice.model} on {advice.device}, budget {advice.budget_gb:g} GB, goal {advice.goal}",
        f"data: {d.shape.rows} rows; tokens per row p50 {d.shape.p50}, p90 {d.shape.p90}, p99 {d.shape.p99}, "
        f"max {d.shape.max}; {d.shape.loss_share:.0%} carry loss; answers median {d.answer_p50} tokens",
        f"device throughput: {advice.throughput.flops / 1e12:.2f} TFLOP/s matmul, "
        f"{advice.throughput.bandwidth / 1e9:.0f} GB/s ({advice.throughput.source})"
        + (f"; heap allocator {allocator.for_training()}" if advice.device == "cpu" else ""),
    ]


def recommendation_lines(advice: Advice) -> list[str]:
    what = "no training (the base model with a context)" if advice.method == "none" else advice.method
    return [f"recommended: {what}", *[f"  because {r}" for r in advice.reasons]]


def row_by(advice: Advice, method: str) -> Row | None:
    return next((r for r in advice.rows if r.method == method), None)
