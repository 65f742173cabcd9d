"""KTO: Kahneman-Tversky optimisation on unpaired examples (prompt, completion, desirable or not).

Built on TRL's KTOTrainer. Reads KTO rows, or preference pairs split into one desirable (chosen) and one
undesirable (rejected) example each. The reference model is explicit, as for DPO (trl_glue.reference_for).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from trl import KTOConfig, KTOTrainer

from ftatlas.data.preference import pair_up
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import (
    FUSED_HEAD,
    lacks_logits,
    preference_trainer,
    refuse_methods,
)


class KTOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loss: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="TRL KTO loss type")
    beta: float = Field(0.1, gt=0, description="strength of the pull toward the reference")
    desirable_weight: float = Field(1.0, gt=0, description="loss weight of desirable examples")
    undesirable_weight: float = Field(1.0, gt=0, description="loss weight of undesirable examples")
    precompute_reference: bool = Field(False, description="score the reference once up front; none kept after")


@OBJECTIVES.register("kto")
class KTO(Objective):
    summary = "KTO on unpaired desirable/undesirable completions (or pairs split in two), reference explicit"
    data_kind = "unpaired"
    pair_eval = True
    Params = KTOParams

    def check_recipe(self, params: KTOParams, recipe: Any) -> None:
        refuse_methods(recipe, "KTOTrainer", FUSED_HEAD, lacks_logits)
        if params.loss == "kto" and recipe.train.batch_size < 2:
            raise ValueError("objective kto estimates its KL term from mismatched pairs within a batch; "
                             "set train.batch_size >= 2 (or objective.loss=apo_zero_unpaired)")

    def eval_rows(self, rows: list[Any]) -> list[Any]:
        return pair_up(rows)  # desirable + undesirable of one prompt -> a pair; generation scores desirable only

    def build(self, ctx: TrainContext) -> Any:
        p: KTOParams = ctx.recipe.objective_params()
        fields = dict(loss_type=p.loss, beta=p.beta, desirable_weight=p.desirable_weight,
                      undesirable_weight=p.undesirable_weight, precompute_ref_log_probs=p.precompute_reference)
        return preference_trainer(ctx, KTOConfig, KTOTrainer, fields, {"loss": p.loss, "beta": p.beta},
                                  reference=True, precompute=p.precompute_reference)
