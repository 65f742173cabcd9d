"""What every objective provides: a Params model and ``build(ctx) -> a trainer with .train()``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedTokenizerBase, TrainingArguments

from ftatlas.data.records import Conversation
from ftatlas.distributed import preset, shard_on_cpu
from ftatlas.models.accel import check_cuda_options
from ftatlas.models.device import Precision
from ftatlas.objectives.budget import Budget, budget_arguments, plan_budget
from ftatlas.objectives.tracking import tracker_arguments
from ftatlas.recipe import Recipe
from ftatlas.registry import Registry
from ftatlas.runs import RunDir


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class TrainContext:
    """Everything an objective needs to build its trainer."""

    recipe: Recipe
    model: Any
    tokenizer: PreTrainedTokenizerBase
    train_rows: list[Conversation]
    eval_rows: list[Conversation]
    run: RunDir
    device: str
    precision: Precision
    progress: bool = True
    checkpointing: bool | None = None  # decided from memory by the pipeline (memory_plan); None: recipe's fallback
    budget: Budget | None = None  # set by training_arguments: the resolved epochs/steps/early stopping


class Objective:
    name: str = ""
    Params: type[BaseModel] = NoParams
    summary: str = ""
    needs_chat_template: bool = True
    # What rows it trains on: "conversations" (SFT-style), "prompts" (prompt-only rows with optional
    # reference columns, for objectives that generate and score), "preference" (chosen/rejected pairs),
    # "unpaired" (KTO: prompt, completion, label), "text" (plain text, e.g. continued pretraining).
    data_kind: str = "conversations"
    head: str = "causal_lm"  # or "reward": the base is loaded with a one-output classification head
    eval_metrics: list[str] | None = None  # metrics its own ``evaluate`` reports (None: generation metrics)
    experimental: str | None = None  # why its results are not trusted yet: printed at run time and in report.md
    pair_eval: bool = False  # trains a policy on chosen/rejected: held-out preference accuracy and margin

    def default_metrics(self, eval_rows: list[Any], data_metrics: list[str]) -> list[str]:
        """Metrics when the recipe names none: the data's (e.g. a built-in's), and for a ``pair_eval`` objective
        the preference metrics first, with generation metrics only where the rows give a prompt and a reference."""
        if not self.pair_eval:
            return data_metrics
        generation = data_metrics if eval_rows and not any(r.is_text for r in eval_rows) else []
        return ["preference_accuracy", "preference_margin", *generation]

    def build(self, ctx: TrainContext) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def eval_rows(self, rows: list[Any]) -> list[Any]:
        """The held-out rows generation is scored on (each has ``prompt_and_reference()``)."""
        return rows

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, rows: list[Any], recipe: Recipe,
                 progress: bool = True) -> dict | None:
        """The objective's own held-out evaluation (eval.json body); None = generate and score (the default)."""
        return None

    def check_recipe(self, params: BaseModel, recipe: Recipe) -> None:
        """Cross-axis checks run when the recipe is validated, before anything loads (raise ValueError)."""

    def stats(self) -> dict[str, Any]:
        """Per-split templating stats (EncodeStats) after build; {} for objectives that generate their data."""
        return {}


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def training_arguments(ctx: TrainContext, has_eval: bool, args_class: type[TrainingArguments] = TrainingArguments,
                       budget: Budget | None = None, **extra: Any) -> TrainingArguments:
    """Map the recipe's ``train`` block onto TrainingArguments, or a subclass such as TRL's DPOConfig
    (``args_class``; ``extra`` carries its own fields and may override these), so every objective trains
    under the same settings. ``budget``: the objective's resolved budget (objectives/budget.py); by default
    one planned from the row count, without early stopping. It is kept on ``ctx.budget``."""
    t = ctx.recipe.train
    half = ctx.precision.autocast
    checkpointing = ctx.recipe.checkpointing() if ctx.checkpointing is None else ctx.checkpointing
    if budget is None:
        steps = math.ceil(len(ctx.train_rows) / (t.batch_size * t.grad_accum))
        budget = plan_budget(t, steps, None, has_eval, stoppable=False)
    ctx.budget = budget
    fields: dict[str, Any] = dict(
        output_dir=str(ctx.run.checkpoints_dir),
        learning_rate=ctx.recipe.learning_rate(),
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        bf16=half is not None and str(half) == "torch.bfloat16",
        fp16=half is not None and str(half) == "torch.float16",
        use_cpu=ctx.device == "cpu",
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        logging_steps=t.log_every,
        logging_nan_inf_filter=False,  # Trainer would hide NaN/inf losses from logs; MetricsLogger stops on them
        save_strategy="steps" if t.save_every else "no",
        save_steps=t.save_every or None,
        save_total_limit=t.save_total_limit,
        **tracker_arguments(ctx.recipe, ctx.run),  # train.report_to: TensorBoard, MLflow, W&B, ...
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,  # our ProgressBar callback shows loss and tokens/s instead of printed dicts
        dataloader_num_workers=0,
    )
    fields |= budget_arguments(budget, t)  # epochs/max_steps, eval steps, early stopping's best-checkpoint keeping
    fields |= preset(ctx.recipe, ctx.device)  # train.distributed: DDP / FSDP / DeepSpeed settings
    fields |= check_cuda_options(t, ctx.device)  # train.optim / train.liger, or a clear stop where they cannot run
    args = args_class(**(fields | extra))
    shard_on_cpu(args, ctx.device)  # train.distributed=fsdp on CPU processes: FSDP2 through gloo
    return args
