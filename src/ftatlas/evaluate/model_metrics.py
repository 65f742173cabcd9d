"""Metrics that need more than a (prediction, reference) pair: the model itself (log-likelihoods), another model
(a reward model, an LLM judge) or configuration (a JSON schema).

Each is a function ``(EvalBatch) -> MetricResult`` registered with ``@register(name, ...)``; the runner builds
one ``EvalBatch`` per evaluation (rows, rendered prompts, references, predictions when some metric needs them)
and bootstraps a confidence interval for every result, exactly as for the string metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftatlas.data.records import Conversation, Message
from ftatlas.evaluate.metrics import METRICS
from ftatlas.registry import Registry, UnknownNameError


@dataclass
class EvalBatch:
    """Everything a model metric may look at, for the rows of one evaluation."""

    model: Any
    tokenizer: Any
    rows: list[Conversation]
    originals: list[list[Message]]  # prompt messages as written in the data
    messages: list[list[Message]]  # prompt messages as the model saw them (context applied)
    prompts: list[str]  # rendered prompts (chat template, generation prompt); "" for plain-text rows
    references: list[str]
    predictions: list[str] | None
    spec: Any  # EvalSpec
    autocast: Any = None  # torch dtype for autocast, or None
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)  # shared by the metrics of one evaluation


@dataclass
class MetricResult:
    """Per-example scores (None: the example could not be scored; counted, never dropped silently).

    ``statistic`` maps an ``(R, n)`` array of resampled row indices to R run-level values; unset, the run value
    is the mean of the scored examples. ``info`` goes into eval.json under ``details[name]``; ``notes`` (one
    dict per example) into that example.
    """

    per: list[float | None]
    statistic: Callable[[np.ndarray], np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] | None = None

    def resample(self, idx: np.ndarray) -> np.ndarray:
        if self.statistic is not None:
            return self.statistic(idx)
        values = np.asarray([np.nan if v is None else v for v in self.per], dtype=np.float64)[idx]
        scored = ~np.isnan(values)
        counts = scored.sum(axis=-1)
        sums = np.where(scored, values, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def value(self) -> float | None:
        v = float(self.resample(np.arange(len(self.per))[None, :])[0]) if self.per else float("nan")
        return v if np.isfinite(v) else None

    @property
    def unscored(self) -> int:
        return sum(v is None for v in self.per)


@dataclass(frozen=True)
class ModelMetric:
    fn: Callable[[EvalBatch], MetricResult]
    needs_predictions: bool = True  # False: scored from the model's log-likelihoods, no generation
    lower_is_better: bool = False
    text_rows: bool = False  # can score plain-text rows (no prompt/answer split)
    needs: str | None = None  # the EvalSpec field it cannot run without
    scale: str | None = None  # set when the value is not a fraction in [0, 1] (eval.json "scales")
    check: Callable[[Any], None] | None = None  # validates its configuration before any model loads
    rows: str | None = None  # "pairs": scores chosen/rejected pairs only (preference metrics)


MODEL_METRICS: Registry[ModelMetric] = Registry("model metric")


def register(name: str, **options: Any) -> Callable[[Callable[[EvalBatch], MetricResult]], Callable]:
    def deco(fn: Callable[[EvalBatch], MetricResult]) -> Callable[[EvalBatch], MetricResult]:
        MODEL_METRICS.register(name)(ModelMetric(fn, **options))
        return fn

    return deco


def all_names() -> list[str]:
    return sorted([*METRICS.names(), *MODEL_METRICS.names()])


def check_metrics(names: list[str], spec: Any) -> None:
    """Unknown names and missing/broken configuration fail here, before a model loads or anything generates."""
    for name in names:
        if name not in METRICS and name not in MODEL_METRICS:
            raise UnknownNameError(f"unknown metric {name!r}; known: {', '.join(all_names())}")
    problem = missing_config(names, spec)
    if problem:
        raise ValueError(problem)
    for name in names:
        if name in MODEL_METRICS and MODEL_METRICS.get(name).check is not None:
            MODEL_METRICS.get(name).check(spec)


def missing_config(names: list[str], spec: Any) -> str | None:
    for name in names:
        metric = MODEL_METRICS.get(name) if name in MODEL_METRICS else None
        if metric is not None and metric.needs and getattr(spec, metric.needs) is None:
            return f"metric {name!r} needs eval.{metric.needs} (see the README's `ftatlas eval` section)"
    return None


# The metric families register themselves on import (they import ``register`` from here).
from ftatlas.evaluate import json_schema, judge, loglik, preference, reward_score  # noqa: E402, F401
