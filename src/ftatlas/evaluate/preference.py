"""Held-out preference metrics for policies trained on chosen/rejected pairs (dpo, orpo, cpo, simpo, kto).

Per pair the model's mean log-probability per answer token is computed for ``chosen`` and for ``rejected``
(rendered exactly as at generation time: chat template and context for conversational pairs, raw
``prompt + answer + eos`` for standard-form pairs). ``preference_margin`` is chosen minus rejected (nats per
token); ``preference_accuracy`` is the share of pairs with a positive margin. Length normalisation keeps a
longer answer from losing just for having more tokens (SimPO's reward; the base model is scored the same way,
so before/after compare like with like). Rows that are not pairs (a KTO example with no opposite label for its
prompt) are counted as unscored, never dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ftatlas.evaluate import loglik  # the module, not its names: loglik may be mid-import (it imports model_metrics)
from ftatlas.evaluate.model_metrics import EvalBatch, MetricResult, register


def _is_pair(row: Any) -> bool:
    return hasattr(row, "chosen") and hasattr(row, "rejected")


def _render(batch: EvalBatch, i: int, answer: str) -> tuple[str, tuple[int, int]]:
    row = batch.rows[i]
    if row.is_text:
        text = row.prompt_text + answer + (batch.tokenizer.eos_token or "")
        return text, (len(row.prompt_text), len(text))
    return loglik.answer_span(batch.tokenizer, batch.messages[i], batch.prompts[i], answer)


def _margins(batch: EvalBatch) -> tuple[list[float | None], list[dict[str, Any]]]:
    """Per row: mean log-prob per token of chosen minus rejected (None for a row that is not a pair)."""
    if "pref" not in batch.cache:
        idx = [i for i, r in enumerate(batch.rows) if _is_pair(r)]
        texts, spans = [], []
        for i in idx:
            for answer in (batch.rows[i].chosen, batch.rows[i].rejected):
                text, span = _render(batch, i, answer)
                texts.append(text)
                spans.append(span)
        scored = loglik.span_logprobs(batch.model, batch.tokenizer, texts, spans, batch_size=batch.spec.batch_size,
                               autocast=batch.autocast, progress=batch.progress, desc="preference pairs")
        margins: list[float | None] = [None] * len(batch.rows)
        notes: list[dict[str, Any]] = [{} for _ in batch.rows]
        for k, i in enumerate(idx):
            (lc, nc), (lr, nr) = scored[2 * k], scored[2 * k + 1]
            c, r = lc / max(nc, 1), lr / max(nr, 1)
            margins[i] = c - r
            notes[i] = {"chosen_logp_per_token": round(c, 4), "rejected_logp_per_token": round(r, 4)}
        batch.cache["pref"] = margins, notes
    return batch.cache["pref"]


def _info(margins: list[float | None]) -> dict[str, Any]:
    got = np.asarray([m for m in margins if m is not None], dtype=np.float64)
    return {"pairs": int(got.size), "not_pairs": len(margins) - int(got.size)}


@register("preference_accuracy", needs_predictions=False, text_rows=True, rows="pairs")
def preference_accuracy(batch: EvalBatch) -> MetricResult:
    """Share of held-out pairs whose chosen answer gets a higher mean log-prob per token than the rejected one."""
    margins, notes = _margins(batch)
    per = [None if m is None else float(m > 0) for m in margins]
    return MetricResult(per, info=_info(margins), notes=notes)


@register("preference_margin", needs_predictions=False, text_rows=True, rows="pairs",
          scale="nats per token (chosen - rejected)")
def preference_margin(batch: EvalBatch) -> MetricResult:
    """Mean over held-out pairs of (mean log-prob per token of chosen) - (that of rejected)."""
    margins, _ = _margins(batch)
    return MetricResult(list(margins), info=_info(margins))
