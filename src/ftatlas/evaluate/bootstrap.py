"""Bootstrap confidence intervals for every metric of a run: resample the examples with replacement.

Mean metrics resample the per-example scores (vectorised); corpus metrics (BLEU, chrF) recompute the
corpus statistic on each resample. Percentile intervals; seeded, so the same eval gives the same CI.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ftatlas.evaluate.metrics import CORPUS

N_RESAMPLES = 1000
N_RESAMPLES_CORPUS = 200  # each corpus resample re-runs sacrebleu


def bootstrap_ci(names: list[str], per: list[dict[str, float]], predictions: list[str], references: list[str],
                 level: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """``{metric: [low, high]}`` at ``level`` (e.g. 0.95) over ``len(per)`` examples."""
    n = len(per)
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        if name in CORPUS:
            stats = []
            for _ in range(N_RESAMPLES_CORPUS):
                idx = rng.integers(0, n, n)
                stats.append(CORPUS[name]([predictions[i] for i in idx], [references[i] for i in idx]))
            samples = np.asarray(stats)
        else:
            values = np.asarray([row[name] for row in per], dtype=np.float64)
            samples = values[rng.integers(0, n, (N_RESAMPLES, n))].mean(axis=1)
        out[name] = _percentile_interval(samples, level)
    return out


def bootstrap_statistic(statistic: Callable[[np.ndarray], np.ndarray], n: int, level: float = 0.95,
                        seed: int = 0) -> list[float] | None:
    """Percentile interval of ``statistic`` (``(R, n)`` resampled row indices -> R values; NaN = not defined on
    that resample, e.g. no scored example in it). None when no resample gives a value."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    samples = np.asarray(statistic(rng.integers(0, n, (N_RESAMPLES, n))), dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    return _percentile_interval(samples, level) if samples.size else None


def _percentile_interval(samples: np.ndarray, level: float) -> list[float]:
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return [round(float(np.percentile(samples, lo_q)), 4), round(float(np.percentile(samples, hi_q)), 4)]
