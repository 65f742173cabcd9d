"""Score a model on held-out rows: generate for every prompt (when a metric needs predictions), compute the string
metrics and the model metrics (log-likelihood, reward model, judge, schema), bootstrap every one, build eval.json."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ftatlas.context.base import Augmented, Context
from ftatlas.data.records import Conversation, Message
from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.bootstrap import bootstrap_ci, bootstrap_statistic
from ftatlas.evaluate.generation import generate
from ftatlas.evaluate.metrics import METRICS, score
from ftatlas.evaluate.model_metrics import MODEL_METRICS, EvalBatch, MetricResult, check_metrics
from ftatlas.recipe import EvalSpec

N_EXAMPLES = 20  # examples kept in eval.json for a human to read


def check_eval_rows(rows: list[Any], metrics: list[str]) -> None:
    """Everything about the held-out rows that would make scoring fail, checked before training starts: no rows,
    plain-text rows for a metric that needs a prompt and a reference, a pair metric on rows that are not pairs."""
    if not rows:
        raise ValueError("no held-out rows to evaluate; set data.eval or data.eval_split > 0")
    if any(r.is_text for r in rows):
        other = [m for m in metrics if m not in MODEL_METRICS or not MODEL_METRICS.get(m).text_rows]
        if other:
            first = next(r for r in rows if r.is_text)
            able = ", ".join(n for n in MODEL_METRICS.names() if MODEL_METRICS.get(n).text_rows)
            raise ValueError(f"{first.source}:{first.line}: a plain-text row has no prompt/answer to score with "
                             f"{', '.join(other)}; plain text is scored by: {able}")
    pair_metrics = [m for m in metrics if m in MODEL_METRICS and MODEL_METRICS.get(m).rows == "pairs"]
    if pair_metrics and not any(hasattr(r, "chosen") for r in rows):
        raise ValueError(f"{rows[0].source}:{rows[0].line}: {', '.join(pair_metrics)} score chosen/rejected "
                         "pairs, and the held-out rows have none (train a preference objective, or drop them "
                         "from eval.metrics)")


def _pairs(rows: list[Any], metrics: list[str]) -> list[tuple[list[Message], str]]:
    """(prompt messages, reference) per row; plain-text rows have no prompt and are their own reference."""
    check_eval_rows(rows, metrics)
    return [([], r.text or "") if r.is_text else r.prompt_and_reference() for r in rows]


def _model_metrics(names: list[str], batch: EvalBatch) -> tuple[dict[str, MetricResult], dict[str, float]]:
    results, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = MODEL_METRICS.get(name).fn(batch)
        seconds[name] = round(time.perf_counter() - t0, 2)
    return results, seconds


def _merge(metrics: list[str], means: dict, per: list[dict], ci: dict, results: dict[str, MetricResult],
           notes: list[dict]) -> dict[str, Any]:
    """Model-metric results into the same metrics / ci95 / per-example maps as the string metrics."""
    for name, res in results.items():
        means[name] = res.value()
        ci_95 = bootstrap_statistic(res.resample, len(res.per))
        if ci_95 is not None:
            ci[name] = ci_95
        for row, note, value, extra in zip(per, notes, res.per, res.notes or [{}] * len(res.per), strict=True):
            row[name] = value
            note.update(extra)
    names = [m for m in metrics if m in MODEL_METRICS]
    extra: dict[str, Any] = {
        "lower_is_better": [m for m in names if MODEL_METRICS.get(m).lower_is_better],
        "scales": {m: MODEL_METRICS.get(m).scale for m in names if MODEL_METRICS.get(m).scale},
        "unscored": {m: results[m].unscored for m in names if results[m].unscored},
        "details": {m: results[m].info for m in names if results[m].info},
    }
    return {"metrics": {m: means[m] for m in metrics}, "ci95": {m: ci[m] for m in metrics if m in ci},
            **{k: v for k, v in extra.items() if v}}


def evaluate_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[Conversation],
    spec: EvalSpec,
    metrics: list[str],
    *,
    autocast: torch.dtype | None = None,
    progress: bool = True,
    desc: str = "evaluating",
    context: Context | None = None,
    generator: Callable[[list[str]], list[str]] | None = None,
) -> dict[str, Any]:
    """Return ``{"metrics": {...}, "ci95": {...}, "n": N, "examples": [...], ...}`` per the run-directory contract.

    Metrics that score log-likelihoods only (mc_accuracy, perplexity) need no generation; when every requested
    metric is one of those, nothing is generated and ``prediction`` is null in the examples.

    ``generator`` answers the rendered prompts instead of ``model.generate`` (another consumer of the same
    weights, e.g. llama.cpp for an exported GGUF); prompts, context and scoring stay the same."""
    rows = rows[: spec.max_examples] if spec.max_examples else rows
    check_metrics(metrics, spec)
    pairs = _pairs(rows, metrics)
    conv = [msgs for msgs, _ in pairs if msgs]
    done = iter(context.augment(conv) if context and conv else [Augmented(m) for m in conv])
    augmented = [next(done) if msgs else Augmented([]) for msgs, _ in pairs]
    prompts = [render_prompt(tokenizer, a.messages) if a.messages else "" for a in augmented]
    refs = [ref for _, ref in pairs]
    text_names = [m for m in metrics if m in METRICS]
    model_names = [m for m in metrics if m in MODEL_METRICS]
    generating = bool(text_names) or any(MODEL_METRICS.get(m).needs_predictions for m in model_names)
    t0 = time.perf_counter()
    if not generating:
        preds = None
    elif generator is not None:
        preds = generator(prompts)
    else:
        preds = generate(model, tokenizer, prompts, spec.decode, batch_size=spec.batch_size, autocast=autocast,
                         progress=progress, desc=desc)
    seconds = time.perf_counter() - t0
    means, per = score(text_names, preds, refs) if text_names else ({}, [{} for _ in rows])
    ci = bootstrap_ci(text_names, per, preds or [], refs)
    batch = EvalBatch(model, tokenizer, rows, [m for m, _ in pairs], [a.messages for a in augmented], prompts, refs,
                      preds, spec, autocast, progress)
    results, metric_seconds = _model_metrics(model_names, batch)
    notes: list[dict[str, Any]] = [{} for _ in rows]
    body = _merge(metrics, means, per, ci, results, notes)
    prompt_tokens = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    examples = [
        {"source": f"{r.source}:{r.line}", "prompt": msgs[-1].content if msgs else "", "reference": ref,
         "prediction": pred, "scores": s, **a.info, **note}
        for r, (msgs, ref), pred, s, a, note in zip(rows[:N_EXAMPLES], pairs, preds or [None] * len(rows), per,
                                                     augmented, notes, strict=False)
    ]
    if not generating:
        seconds = sum(metric_seconds.values())
    return {
        **body,  # metrics, ci95 (bootstrap percentile interval per metric), and for model metrics the extras
        "n": len(rows),
        "examples": examples,
        "seconds": round(seconds, 2),
        "examples_per_s": round(len(rows) / seconds, 2) if seconds else None,
        **({"metric_seconds": metric_seconds} if metric_seconds else {}),
        **({"predictions": [{"source": f"{r.source}:{r.line}", "prediction": p} for r, p in zip(rows, preds,
                                                                                             strict=True)]}
           if preds is not None else {}),  # every row's answer, e.g. the opponent of another run's judge
        "prompt_tokens_per_request": round(prompt_tokens / len(rows), 1),
        "context": context.name if context else "zero_shot",
        "decode": spec.decode.model_dump(),
    }
