"""The training budget: ``train.epochs: auto`` and early stopping on held-out loss.

The rule, in one sentence: **train whole epochs until the model has seen ~8k loss-carrying tokens (at least
1 epoch, at most 10 and 2000 optimizer steps), evaluate held-out loss ~10 times over that budget (at most 2
times an epoch), stop after ``patience`` evaluations without an improvement of more than 0.001 and keep the
best weights.**

Why loss tokens: what a step teaches is carried by the tokens that have a loss, not by the rows. A set of 320
one-word labels carries ~1k loss tokens an epoch and underfits after one (35% exact match on a support-ticket
set, 99% after three); 400 JSON records carry ~10k and one epoch already reaches 93% (the quickstart). The cap
keeps a large set to one bounded pass; early stopping cuts a budget that is longer than the data needs.
Objectives whose rows carry no token count here (preference pairs, online RL) train one epoch under ``auto``.

Explicit ``epochs`` or ``max_steps`` mean exactly what they say: no early stopping unless
``early_stopping: true``. Early stopping is transformers' own ``EarlyStoppingCallback`` with
``load_best_model_at_end`` (checkpoints saved only when held-out loss improves: ``save_strategy="best"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transformers import EarlyStoppingCallback

from ftatlas.recipe import TrainSpec

TARGET_LOSS_TOKENS = 8192
MAX_AUTO_EPOCHS = 10
MAX_AUTO_STEPS = 2000
EVALS_PER_BUDGET = 10
# Two an epoch, not more: a one-epoch budget cannot stop early at patience 3 anyway, and each pass (plus the
# best-checkpoint save after it) cost ~4 s of the quickstart's 50 steps (four passes: ~16 s of 166).
MAX_EVALS_PER_EPOCH = 2
# An evaluation "improves" only by more than this (nats per loss token): a loss creeping down by 1e-4 on a
# learned task would otherwise keep a run going to the end of its budget (measured on bench/advice_tasks.py
# tickets: held-out loss 6e-4 -> 3e-4 between evaluations, exact match already saturated).
MIN_DELTA = 1e-3


@dataclass(frozen=True)
class Budget:
    """What ``train`` resolves to for one run, and why (printed and written to budget.json)."""

    epochs: float
    max_steps: int  # -1: epochs decide
    eval_every: int  # 0: held-out loss only at the end
    early_stopping: bool
    patience: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def auto_epochs(steps_per_epoch: int, loss_tokens_per_epoch: int | None) -> tuple[int, int, str]:
    """(epochs, max_steps, why) of the ``epochs: auto`` rule; max_steps is -1 unless the step cap binds."""
    if loss_tokens_per_epoch is None:
        return 1, -1, "one epoch: this objective's rows carry no loss-token count"
    epochs = max(1, min(MAX_AUTO_EPOCHS, math.ceil(TARGET_LOSS_TOKENS / max(loss_tokens_per_epoch, 1))))
    why = (f"{epochs} epoch{'s' if epochs > 1 else ''} x {loss_tokens_per_epoch:,} loss tokens "
           f"(target {TARGET_LOSS_TOKENS:,}, 1-{MAX_AUTO_EPOCHS} epochs)")
    if epochs * steps_per_epoch > MAX_AUTO_STEPS:
        return epochs, MAX_AUTO_STEPS, why + f", capped at {MAX_AUTO_STEPS} steps"
    return epochs, -1, why + f" = {epochs * steps_per_epoch} steps"


def auto_eval_every(total_steps: int, steps_per_epoch: int) -> int:
    """~EVALS_PER_BUDGET evaluations over the budget, at most MAX_EVALS_PER_EPOCH an epoch."""
    return max(1, math.ceil(total_steps / EVALS_PER_BUDGET), math.ceil(steps_per_epoch / MAX_EVALS_PER_EPOCH))


def plan_budget(t: TrainSpec, steps_per_epoch: int, loss_tokens_per_epoch: int | None, has_eval: bool,
                stoppable: bool = True) -> Budget:
    """Resolve ``epochs``/``max_steps``/``eval_every``/``early_stopping`` of the recipe's ``train`` block;
    ``stoppable=False`` for objectives whose trainer does not take early stopping here (auto = off)."""
    steps_per_epoch = max(1, steps_per_epoch)
    if t.max_steps > 0:
        epochs, max_steps, why = 1.0, t.max_steps, f"max_steps={t.max_steps} (explicit)"
    elif t.epochs != "auto":
        epochs, max_steps, why = float(t.epochs), -1, f"epochs={t.epochs:g} (explicit)"
    else:
        e, max_steps, why = auto_epochs(steps_per_epoch, loss_tokens_per_epoch)
        epochs, why = float(e), f"epochs: auto -> {why}"
    total = max_steps if max_steps > 0 else math.ceil(epochs * steps_per_epoch)
    budget_is_auto = t.epochs == "auto" and t.max_steps <= 0
    stop = budget_is_auto if t.early_stopping == "auto" else bool(t.early_stopping)
    if stop and not stoppable:
        if t.early_stopping is True:
            raise ValueError("train.early_stopping=true: this objective trains without early stopping; "
                             "set an explicit budget (train.epochs or train.max_steps)")
        stop = False
    if stop and not has_eval:
        if t.early_stopping is True:
            raise ValueError("train.early_stopping=true needs held-out rows: set data.eval or data.eval_split > 0")
        stop, why = False, why + "; early stopping off: no held-out rows (data.eval_split=0)"
    if t.eval_every != "auto":
        every = int(t.eval_every)
        if stop and every == 0:
            raise ValueError("train.early_stopping needs evaluations during training: train.eval_every=0 "
                             "evaluates only at the end (set it > 0, or auto)")
    else:
        every = auto_eval_every(total, steps_per_epoch) if stop else 0
    if stop:
        why += f"; early stopping: held-out loss every {every} steps, patience {t.patience}, best weights kept"
    return Budget(epochs, max_steps, every if has_eval else 0, stop, t.patience, why)


def budget_arguments(budget: Budget, t: TrainSpec) -> dict[str, Any]:
    """The TrainingArguments fields a budget sets (early stopping: evaluate and save on the same steps,
    keep the best by eval loss and load it at the end)."""
    fields: dict[str, Any] = dict(num_train_epochs=budget.epochs, max_steps=budget.max_steps,
                                  eval_strategy="steps" if budget.eval_every else "no",
                                  eval_steps=budget.eval_every or None)
    if budget.early_stopping:
        if t.save_every and t.save_every % budget.eval_every:
            raise ValueError(f"train.save_every={t.save_every} must be a multiple of the evaluation interval "
                             f"({budget.eval_every} steps) under early stopping")
        fields |= dict(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
                       save_strategy="steps" if t.save_every else "best", save_steps=t.save_every or None)
    return fields


def early_stopping_callbacks(budget: Budget) -> list[Any]:
    """transformers' EarlyStoppingCallback where the budget stops early, else nothing."""
    if not budget.early_stopping:
        return []
    return [EarlyStoppingCallback(early_stopping_patience=budget.patience, early_stopping_threshold=MIN_DELTA)]
