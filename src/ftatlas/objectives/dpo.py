"""Direct preference optimisation on chosen/rejected pairs, with TRL's DPOTrainer and any of its loss types.

The reference model is explicit (see ``trl_glue.reference_for``): the starting adapter with PEFT methods,
a frozen copy for methods that change base weights, or precomputed log-probs (``precompute_reference``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from trl import DPOConfig, DPOTrainer

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import finish, reference_for, to_dataset, trl_args

# TRL 1.16's DPOConfig.loss_type values.
DPOLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class DPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loss: DPOLoss | list[DPOLoss] = Field("sigmoid", description="TRL loss type, or a list combined by loss_weights")
    loss_weights: list[float] | None = Field(None, description="weights for a list of losses (default: all 1)")
    beta: float = Field(0.1, gt=0, description="strength of the pull toward the reference (higher = closer)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="assumed label noise (sigmoid/robust losses)")
    ld_alpha: float | None = Field(None, ge=0, le=1, description="LD-DPO: weight of tokens past the shorter answer")
    use_weighting: bool = Field(False, description="WPO weighting of pairs by their probability")
    discopop_tau: float = Field(0.05, gt=0, description="temperature of the discopop loss")
    precompute_reference: bool = Field(False, description="score the reference once up front; none kept after")


@OBJECTIVES.register("dpo")
class DPO(Objective):
    summary = "direct preference optimisation on chosen/rejected pairs (any TRL DPO loss), reference explicit"
    data_kind = "preference"
    Params = DPOParams

    def check_recipe(self, params: DPOParams, recipe: Any) -> None:
        losses = params.loss if isinstance(params.loss, list) else [params.loss]
        if params.loss_weights is not None and len(params.loss_weights) != len(losses):
            raise ValueError(f"objective.loss_weights has {len(params.loss_weights)} weights for "
                             f"{len(losses)} losses")

    def build(self, ctx: TrainContext) -> Any:
        p: DPOParams = ctx.recipe.objective_params()
        ref, note = reference_for(ctx, p.precompute_reference)
        train, held = to_dataset(ctx.train_rows), to_dataset(ctx.eval_rows, ctx.recipe.eval.max_examples)
        args = trl_args(ctx, DPOConfig, held is not None, loss_type=p.loss, loss_weights=p.loss_weights,
                        beta=p.beta, label_smoothing=p.label_smoothing, ld_alpha=p.ld_alpha,
                        use_weighting=p.use_weighting, discopop_tau=p.discopop_tau,
                        precompute_ref_log_probs=p.precompute_reference)
        trainer = DPOTrainer(model=ctx.model, ref_model=ref, args=args, train_dataset=train, eval_dataset=held,
                             processing_class=ctx.tokenizer)
        return finish(trainer, ctx, {"objective": "dpo", "loss": p.loss, "beta": p.beta, "reference": note})
