"""ORPO: odds-ratio preference optimisation (SFT loss on chosen + an odds-ratio penalty), no reference model.

Built on TRL's ORPOTrainer, which TRL 1.16 keeps in ``trl.experimental.orpo``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import (
    VIRTUAL_TOKENS,
    experimental,
    preference_trainer,
    prepends_tokens,
    refuse_methods,
)


class ORPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = Field(0.1, gt=0, description="weight of the odds-ratio term (lambda in the ORPO paper)")


@OBJECTIVES.register("orpo")
class ORPO(Objective):
    summary = "SFT on chosen plus an odds-ratio penalty against rejected; no reference model"
    data_kind = "preference"
    pair_eval = True
    Params = ORPOParams

    def check_recipe(self, params: ORPOParams, recipe: Any) -> None:
        refuse_methods(recipe, "ORPOTrainer", VIRTUAL_TOKENS, prepends_tokens)

    def build(self, ctx: TrainContext) -> Any:
        orpo = experimental("orpo")
        p: ORPOParams = ctx.recipe.objective_params()
        return preference_trainer(ctx, orpo.ORPOConfig, orpo.ORPOTrainer, {"beta": p.beta},
                                  {"beta": p.beta, "reference": "none (ORPO needs none)"})
