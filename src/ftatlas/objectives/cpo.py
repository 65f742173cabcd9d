"""CPO: contrastive preference optimisation (a reference-free DPO-style loss plus NLL on chosen).

Built on TRL's CPOTrainer (``trl.experimental.cpo`` in TRL 1.16). ``simpo`` (simpo.py) is this trainer
with the SimPO loss.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import (
    VIRTUAL_TOKENS,
    experimental,
    preference_trainer,
    prepends_tokens,
    refuse_methods,
)


class CPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loss: Literal["sigmoid", "hinge", "ipo", "simpo", "alphapo"] = Field("sigmoid", description="TRL CPO loss type")
    beta: float = Field(0.1, gt=0, description="temperature of the preference term")
    cpo_alpha: float = Field(1.0, ge=0, description="weight of the NLL term on chosen (0 = pure preference loss)")
    simpo_gamma: float = Field(0.5, ge=0, description="target reward margin (simpo/alphapo losses)")
    alpha: float = Field(0.0, description="AlphaPO reward shape (alphapo loss)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="assumed label noise (sigmoid loss)")


@OBJECTIVES.register("cpo")
class CPO(Objective):
    summary = "contrastive preference optimisation: reference-free preference loss + NLL on chosen"
    data_kind = "preference"
    pair_eval = True
    Params = CPOParams

    def check_recipe(self, params: CPOParams, recipe: Any) -> None:
        refuse_methods(recipe, "CPOTrainer", VIRTUAL_TOKENS, prepends_tokens)

    def build(self, ctx: TrainContext) -> Any:
        cpo = experimental("cpo")
        p = ctx.recipe.objective_params()
        fields = dict(loss_type=p.loss, beta=p.beta, cpo_alpha=p.cpo_alpha, simpo_gamma=p.simpo_gamma, alpha=p.alpha,
                      label_smoothing=p.label_smoothing)
        notes = {"loss": p.loss, "beta": p.beta, "cpo_alpha": p.cpo_alpha,
                 "reference": "none (reference-free: rewards are length-normalised log-probs of the policy)"}
        return preference_trainer(ctx, cpo.CPOConfig, cpo.CPOTrainer, fields, notes)
