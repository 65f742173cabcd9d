"""Glue shared by the objectives built on TRL trainers (dpo, orpo, kto, cpo/simpo, reward).

- :func:`trl_args`: the recipe's ``train`` block as a TRL config (via ``training_arguments``), so TRL's own
  defaults (bf16, gradient checkpointing on, lr 1e-6, logging every 10 steps) never override the recipe.
- :func:`reference_for`: the reference model, chosen explicitly and said in the run log.
- :func:`to_dataset` and :func:`finish`: rows -> ``datasets.Dataset`` (file-backed under ``data.cache_tokenized``,
  so the trainer's own tokenizing maps are cached: data/token_cache.py); our callbacks in, TRL's dict prints out.
- :func:`preference_trainer`: the four together, the one body of every preference objective's ``build``.
- :func:`experimental`: a ``trl.experimental`` module, imported without its notice (we pin and test TRL).
"""

from __future__ import annotations

import copy
import importlib
import math
import warnings
from collections.abc import Callable
from typing import Any

from datasets import Dataset
from peft import PeftModel
from rich.console import Console
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback

from ftatlas.data.token_cache import file_backed
from ftatlas.distributed import main_process_first
from ftatlas.methods import METHODS, Method
from ftatlas.objectives.base import TrainContext, training_arguments
from ftatlas.objectives.budget import Budget, early_stopping_callbacks, plan_budget
from ftatlas.objectives.callbacks import HeapTrim, MetricsLogger, ProgressBar
from ftatlas.recipe import DataSpec

console = Console(stderr=True)

REFERENCE_ADAPTER = ("the policy's own starting adapter, kept as a frozen copy named 'ref' beside "
                     "the trained one on the shared base (TRL switches adapters; no second model in memory)")
REFERENCE_COPY = ("a frozen copy of the starting model ({method} changes base weights, so the "
                  "reference is a second model in memory)")
REFERENCE_PRECOMPUTED = ("log-probs of the starting model computed once before training "
                         "(precompute_reference=true), so no reference model is kept during training")


# Why a method cannot run under a trainer (checked when the recipe is validated, from the method's capabilities).
FUSED_HEAD = ("TRL's {trainer} reads log-probs from a fused LM-head output that the forward of method {method} "
              "does not produce")
VIRTUAL_TOKENS = ("TRL's experimental {trainer} aligns labels with logits without the virtual tokens that "
                  "method {method} prepends")


def lacks_logits(method: type[Method]) -> bool:
    return not method.per_token_logits


def prepends_tokens(method: type[Method]) -> bool:
    return method.prepends_tokens


def refuse_methods(recipe: Any, trainer: str, why: str, cannot: Callable[[type[Method]], bool]) -> None:
    """Stop a recipe whose method ``cannot`` run under this objective's trainer, saying why and which can."""
    if not cannot(recipe.axes.method.entry):
        return
    able = [n for n in METHODS.names() if METHODS.get(n).trains and not cannot(METHODS.get(n))]
    raise ValueError(f"objective {recipe.objective.name!r} cannot train with method {recipe.method.name!r}: "
                     + why.format(trainer=trainer, method=recipe.method.name) + f"; use one of {', '.join(able)}")


def trl_args(ctx: TrainContext, args_class: type[TrainingArguments], has_eval: bool, budget: Budget | None = None,
             **fields: Any) -> Any:
    """A TRL config carrying the recipe's settings plus the objective's own ``fields`` (``budget``: see
    ``training_arguments``)."""
    return training_arguments(ctx, has_eval, args_class=args_class, budget=budget,
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


def to_dataset(rows: list[Any], limit: int | None = None, data: DataSpec | None = None) -> Dataset | None:
    """PreferencePair / UnpairedExample rows in TRL's row form (conversational or standard), first ``limit``;
    with ``data.cache_tokenized`` from an Arrow file in ``data.cache_dir``, so TRL's tokenization is cached."""
    rows = rows[:limit] if limit else rows
    return as_dataset([r.to_json() for r in rows], data) if rows else None


def as_dataset(items: list[dict[str, Any]], data: DataSpec | None = None) -> Dataset:
    """``items`` as a Dataset: file-backed (data/token_cache.py) when ``data.cache_tokenized``, else in memory."""
    if data is None or not data.cache_tokenized:
        return Dataset.from_list(items)
    with main_process_first():  # the first process writes the rows file, the others then read it
        return file_backed(items, data.cache_dir)


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


def experimental(module: str) -> Any:
    """``trl.experimental.<module>``; its import-time notice is silenced here rather than through the environment."""
    from trl.import_utils import TRLExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TRLExperimentalWarning)  # we pin TRL and test the trainers we use
        return importlib.import_module(f"trl.experimental.{module}")


def preference_trainer(ctx: TrainContext, config_class: type[TrainingArguments], trainer_class: type,
                       fields: dict[str, Any], notes: dict[str, Any], reference: bool = False,
                       precompute: bool = False) -> Any:
    """A TRL preference trainer (DPO, KTO, CPO, ORPO, reward) from the recipe: the rows as datasets, the recipe's
    ``train`` block plus the objective's ``fields`` as its config, the reference model where the loss has one
    (said in ``notes``), our callbacks, and ``notes`` written to the run dir."""
    extra: dict[str, Any] = {}
    if reference:
        extra["ref_model"], notes["reference"] = reference_for(ctx, precompute)
    data = ctx.recipe.data
    train, held = to_dataset(ctx.train_rows, data=data), to_dataset(ctx.eval_rows, ctx.recipe.eval.max_examples, data)
    budget = preference_budget(ctx, held is not None)
    args = trl_args(ctx, config_class, held is not None, budget=budget, **fields)
    trainer = trainer_class(model=ctx.model, args=args, train_dataset=train, eval_dataset=held,
                            processing_class=ctx.tokenizer, callbacks=early_stopping_callbacks(budget), **extra)
    return finish(trainer, ctx, {"objective": ctx.recipe.objective.name, **notes})


def preference_budget(ctx: TrainContext, has_eval: bool) -> Budget:
    """The budget of a TRL preference trainer. Its rows carry no loss-token count, so ``epochs: auto`` is one
    epoch and early stopping stays off unless ``train.early_stopping: true`` asks for it: then transformers'
    EarlyStoppingCallback on the trainer's held-out loss (the DPO/KTO/ORPO/CPO/reward loss of the eval pairs),
    with the best weights restored, as for SFT."""
    t = ctx.recipe.train
    steps = math.ceil(len(ctx.train_rows) / (t.batch_size * t.grad_accum))
    return plan_budget(t, steps, None, has_eval, stoppable=t.early_stopping is True)
