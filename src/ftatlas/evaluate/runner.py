"""Score a model on held-out conversations: generate for every prompt, compute metrics, build eval.json."""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ftatlas.context.base import Augmented, Context
from ftatlas.data.records import Conversation
from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.bootstrap import bootstrap_ci
from ftatlas.evaluate.generation import generate
from ftatlas.evaluate.metrics import score
from ftatlas.recipe import EvalSpec

N_EXAMPLES = 20  # examples kept in eval.json for a human to read


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
) -> dict[str, Any]:
    """Return ``{"metrics": {...}, "n": N, "examples": [...], ...}`` per the run-directory contract."""
    rows = rows[: spec.max_examples] if spec.max_examples else rows
    if not rows:
        raise ValueError("no held-out rows to evaluate; set data.eval or data.eval_split > 0")
    pairs = [r.prompt_and_reference() for r in rows]
    augmented = context.augment([msgs for msgs, _ in pairs]) if context else [Augmented(m) for m, _ in pairs]
    prompts = [render_prompt(tokenizer, a.messages) for a in augmented]
    refs = [ref for _, ref in pairs]
    t0 = time.perf_counter()
    preds = generate(model, tokenizer, prompts, spec.decode, batch_size=spec.batch_size,
                     autocast=autocast, progress=progress, desc=desc)
    seconds = time.perf_counter() - t0
    means, per = score(metrics, preds, refs)
    ci = bootstrap_ci(metrics, per, preds, refs)
    prompt_tokens = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    examples = [
        {"source": f"{r.source}:{r.line}", "prompt": msgs[-1].content if msgs else "", "reference": ref,
         "prediction": pred, "scores": s, **a.info}
        for r, (msgs, ref), pred, s, a in zip(rows[:N_EXAMPLES], pairs, preds, per, augmented, strict=False)
    ]
    return {
        "metrics": means,
        "ci95": ci,  # bootstrap percentile interval per metric (resampling the held-out examples)
        "n": len(rows),
        "examples": examples,
        "seconds": round(seconds, 2),
        "examples_per_s": round(len(rows) / seconds, 2) if seconds else None,
        "prompt_tokens_per_request": round(prompt_tokens / len(rows), 1),
        "context": context.name if context else "zero_shot",
        "decode": spec.decode.model_dump(),
    }
