"""Glue shared by the objectives built on TRL trainers (dpo, orpo, kto, cpo/simpo, reward).

- :func:`trl_args`: the recipe's ``train`` block as a TRL config (via ``training_arguments``), so TRL's own
  defaults (bf16, gradient checkpointing on, lr 1e-6, logging every 10 steps) never override the recipe.
- :func:`reference_for`: the reference model, chosen explicitly and said in the run log.
- :func:`to_dataset` and :func:`finish`: rows -> ``datasets.Dataset``; our callbacks in, TRL's dict prints out.
"""

from __future__ import annotations

import copy
from typing import Any

from datasets import Dataset
from peft import PeftModel
from rich.console import Console
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback

from ftatlas.objectives.base import TrainContext, training_arguments
from ftatlas.objectives.callbacks import HeapTrim, MetricsLogger, ProgressBar

console = Console(stderr=True)

REFERENCE_ADAPTER = ("the policy's own starting adapter, kept as a frozen copy named 'ref' beside "
                     "the trained one on the shared base (TRL switches adapters; no second model in memory)")
REFERENCE_COPY = ("a frozen copy of the starting model ({method} changes base weights, so the "
                  "reference is a second model in memory)")
REFERENCE_PRECOMPUTED = ("log-probs of the starting model computed once before training "
                         "(precompute_reference=true), so no reference model is kept during training")


# Method/trainer pairs that cannot work, and why (checked when the recipe is validated).
FUSED_HEAD = ("TRL's {trainer} reads log-probs from a fused LM-head output that peft's AdaptionPrompt "
              "(method adapter) forward does not produce; use lora, ia3, prefix or another method")
VIRTUAL_TOKENS = ("TRL's experimental {trainer} aligns labels with logits without the virtual tokens that "
                  "method {method} prepends; use lora, ia3, prefix or another method")


def refuse_methods(recipe: Any, unsupported: dict[str, str], trainer: str) -> None:
    """Stop a recipe whose method cannot run under this objective's trainer, saying why."""
    why = unsupported.get(recipe.method.name)
    if why is not None:
        raise ValueError(f"objective {recipe.objective.name!r} cannot train with method {recipe.method.name!r}: "
                         + why.format(trainer=trainer, method=recipe.method.name))


def trl_args(ctx: TrainContext, args_class: type[TrainingArguments], has_eval: bool, **fields: Any) -> Any:
    """A TRL config carrying the recipe's settings plus the objective's own ``fields``."""
    return training_arguments(ctx, has_eval, args_class=args_class,
                              gradient_checkpointing=ctx.recipe.checkpointing() if ctx.checkpointing is None
                              else ctx.checkpointing,
                              max_length=ctx.recipe.data.max_length, **fields)


def reference_for(ctx: TrainContext, precompute: bool = False) -> tuple[Any, str]:
    """(ref_model or None, what the run log says about it).

    Adapters (LoRA family, QLoRA, prompt learning): None; TRL then copies the starting adapter into a frozen
    'ref' adapter and computes reference log-probs with it, which is right even for inits that move base
    weights (PiSSA). Methods that change base weights (full, freeze, bitfit): a deep copy taken now, before
    any update.
    """
    if isinstance(ctx.model, PeftModel):
        note = REFERENCE_ADAPTER
        ref = None
    elif precompute:
        note, ref = REFERENCE_PRECOMPUTED, None  # TRL scores the untouched policy once, before step 1
    else:
        note = REFERENCE_COPY.format(method=ctx.recipe.method.name)
        ref = copy.deepcopy(ctx.model).eval().requires_grad_(False)
    return ref, note


def to_dataset(rows: list[Any], limit: int | None = None) -> Dataset | None:
    """PreferencePair / UnpairedExample rows in TRL's row form (conversational or standard), first ``limit``."""
    rows = rows[:limit] if limit else rows
    return Dataset.from_list([r.to_json() for r in rows]) if rows else None


def finish(trainer: Any, ctx: TrainContext, notes: dict[str, Any]) -> Any:
    """Our metrics/progress callbacks instead of dict prints; the objective's notes into the run dir and log."""
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(MetricsLogger(ctx.run))
    trainer.add_callback(ProgressBar(ctx.progress))
    trainer.add_callback(HeapTrim())
    ctx.run.write_json("objective.json", notes)
    for key in ("reference", "loss"):
        if key in notes:
            console.print(f"[bold]{key}[/] {notes[key]}")
    return trainer
