"""Parity: an export re-scored in its real consumer against the run it came from.

Two checks. Logits: the consumer and the fp32 source on the same held-out prompt ids (max |difference|
relative to the largest logit, and how often the next-token argmax agrees). Metric: the run's held-out
split, metrics, decoding and context, scored through the consumer and compared with the run's own
score and its bootstrap interval.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ftatlas.context.base import context_for
from ftatlas.data.splits import load_splits
from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.metrics import METRICS
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.export.formats import Consumer, TransformersConsumer
from ftatlas.export.source import Source
from ftatlas.models.device import resolve_precision
from ftatlas.objectives import OBJECTIVES
from ftatlas.recipe import EvalSpec


@dataclass
class LogitParity:
    prompts: int
    positions: int
    max_abs_diff: float
    max_abs_logit: float
    rel_diff: float  # max_abs_diff / max_abs_logit
    top1_agreement: float  # share of positions whose argmax token is the same
    tolerance: float | None  # on rel_diff; None: judged by the metric interval only (low-bit quants)
    within_tolerance: bool | None


@dataclass
class Heldout:
    rows: list[Any]
    spec: EvalSpec
    metrics: list[str]


def heldout(src: Source, max_examples: int | None) -> Heldout:
    """The run's held-out rows, eval spec and metrics, as ``ftatlas eval RUN`` uses them."""
    recipe = src.recipe
    objective = OBJECTIVES.get(recipe.objective.name)()
    splits = load_splits(recipe.data, objective.data_kind)
    rows = objective.eval_rows(splits.eval)
    limit = max_examples or recipe.eval.max_examples
    spec = recipe.eval.model_copy(update={"max_examples": limit})
    return Heldout(rows[:limit] if limit else rows, spec, recipe.eval.metrics or splits.default_metrics)


def prompt_ids(src: Source, held: Heldout, n: int) -> list[list[int]]:
    tok = src.tokenizer
    texts = [render_prompt(tok, r.prompt_and_reference()[0]) for r in held.rows[:n]]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def logit_parity(consumer: Consumer, src: Source, ids: list[list[int]], tolerance: float | None) -> LogitParity:
    reference = TransformersConsumer(src.model)
    worst = scale = 0.0
    agree = total = 0
    for seq in ids:
        a, b = reference.logits(seq), consumer.logits(seq)
        worst = max(worst, (a - b).abs().max().item())
        scale = max(scale, a.abs().max().item())
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += len(seq)
    rel = worst / max(scale, 1e-6)
    return LogitParity(len(ids), total, worst, scale, rel, agree / max(total, 1), tolerance,
                       None if tolerance is None else rel <= tolerance)


def score(consumer: Consumer, src: Source, held: Heldout, progress: bool = True) -> dict[str, Any]:
    """The run's metrics through ``consumer``; a llama.cpp consumer scores the text metrics (the model metrics
    need transformers logits). Adds ``gen_tokens_per_s``: answer tokens (run tokenizer) per generation second."""
    tok = src.tokenizer
    ctx = context_for(src.recipe, tok)
    if consumer.model is not None:
        param = next(consumer.model.parameters())
        # fp32 weights get the run's autocast; half/quantized checkpoints run in the dtype they were saved in
        autocast = resolve_precision("auto", param.device.type).autocast if param.dtype == torch.float32 else None
        result = evaluate_rows(consumer.model, tok, held.rows, held.spec, held.metrics, progress=progress,
                               autocast=autocast, context=ctx,
                               desc=f"scoring in {consumer.name}")
    else:
        metrics = [m for m in held.metrics if m in METRICS]
        skipped = [m for m in held.metrics if m not in METRICS]
        result = evaluate_rows(None, tok, held.rows, held.spec, metrics, progress=progress, context=ctx,
                               generator=consumer.generator(held.spec.decode))
        if skipped:
            result["not_scored"] = {m: f"needs transformers logits; not available in {consumer.name}" for m in skipped}
    result["gen_tokens_per_s"] = tokens_per_s(tok, result)
    return result


def tokens_per_s(tok: Any, result: dict[str, Any]) -> float | None:
    preds = [p["prediction"] for p in result.get("predictions", [])]
    if not preds or not result.get("seconds"):
        return None
    tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in preds)
    return round(tokens / result["seconds"], 1)


def run_reference(src: Source, held: Heldout, progress: bool = True, reuse: bool = True) -> dict[str, Any]:
    """The unexported run's score: its eval.json when it covers the same rows and metrics (and ``reuse``),
    else scored now (e.g. so that tokens/s of the run and its export come from the same process)."""
    path = src.run.path / "eval.json"
    if reuse and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("n") == len(held.rows) and all(m in saved.get("metrics", {}) for m in held.metrics):
            saved.setdefault("gen_tokens_per_s", tokens_per_s(src.tokenizer, saved))
            saved["from"] = "eval.json"
            return saved
    result = score(TransformersConsumer(src.model), src, held, progress)
    result["from"] = "scored now (merged fp32)"
    return result


def drops(reference: dict[str, Any], exported: dict[str, Any]) -> dict[str, str]:
    """Metrics where the export falls outside the run's 95% interval on the bad side."""
    lower = set(reference.get("lower_is_better", []))
    flagged = {}
    for name, value in exported.get("metrics", {}).items():
        ci = reference.get("ci95", {}).get(name)
        if ci is None or value is None:
            continue
        low, high = ci
        worse = value > high if name in lower else value < low
        if worse:
            flagged[name] = f"{value:.3f} outside the run's interval [{low:.3f}, {high:.3f}]"
    return flagged


def as_dict(p: LogitParity) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(p).items()}

