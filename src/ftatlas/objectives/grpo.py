"""``grpo``: group-relative policy optimisation (TRL's GRPOTrainer) with reward functions.

Each prompt is answered ``num_generations`` times; every completion is scored by the recipe's reward
functions (weighted sum); a completion's advantage is its reward relative to its group's mean (scaled by
the group's std, ``scale_rewards``), and the policy takes a clipped step toward the better ones, with a
KL penalty ``beta`` to the reference model (for adapters: the base with the adapter disabled; for full /
freeze: a second copy loaded from the same weights). Generation runs with transformers (on CPU here);
``use_vllm: true`` hands it to vLLM where vLLM and a GPU are installed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from ftatlas.objectives.base import OBJECTIVES, TrainContext, training_arguments
from ftatlas.objectives.callbacks import HeapTrim, MetricsLogger, ProgressBar
from ftatlas.objectives.online import LOGGED, OnlineObjective, TRLParams, prompt_dataset, trl_fields
from ftatlas.rewards import build_rewards


class GRPOParams(TRLParams):
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = Field(
        "dapo", description="TRL's loss aggregation (grpo = per-sequence mean; dapo = token-level, TRL default)")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the group's std, the batch's std, or not at all")


@OBJECTIVES.register("grpo")
class GRPO(OnlineObjective):
    Params = GRPOParams
    summary = "group-relative policy optimisation on prompts scored by reward functions (TRL GRPOTrainer)"

    def build(self, ctx: TrainContext) -> Any:
        p: GRPOParams = ctx.recipe.objective_params()  # type: ignore[assignment]
        return online_trainer(ctx, p, GRPOTrainer, GRPOConfig, loss_type=p.loss_type, scale_rewards=p.scale_rewards)


def online_trainer(ctx: TrainContext, p: TRLParams, trainer_cls: type, config_cls: type, **fields: Any) -> Any:
    """A TRL online trainer (GRPO/RLOO) on the recipe's prompts, rewards and train settings."""
    every = ctx.recipe.train.eval_every  # auto: no held-out passes during online training
    held = prompt_dataset(ctx, ctx.eval_rows) if ctx.eval_rows and every not in (0, "auto") else None
    args = training_arguments(ctx, has_eval=held is not None, args_class=config_cls,
                              **trl_fields(p, ctx.recipe.train.batch_size), **fields)
    args.include_num_input_tokens_seen = "no"  # TRL counts tokens itself (logged as num_tokens)
    funcs, _weights = build_rewards(p.rewards)
    trainer = trainer_cls(
        model=ctx.model,
        reward_funcs=funcs,
        args=args,
        train_dataset=prompt_dataset(ctx, ctx.train_rows),
        eval_dataset=held,
        processing_class=ctx.tokenizer,
        callbacks=[MetricsLogger(ctx.run, extra=LOGGED), ProgressBar(ctx.progress), HeapTrim()],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
