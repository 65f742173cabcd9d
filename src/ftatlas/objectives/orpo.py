"""ORPO: odds-ratio preference optimisation (SFT loss on chosen + an odds-ratio penalty), no reference model.

Built on TRL's ORPOTrainer, which TRL 1.16 keeps in ``trl.experimental.orpo``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import VIRTUAL_TOKENS, finish, refuse_methods, to_dataset, trl_args

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we pin TRL and test the experimental trainers we use


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
        refuse_methods(recipe, {"prompt": VIRTUAL_TOKENS, "ptuning": VIRTUAL_TOKENS}, "ORPOTrainer")

    def build(self, ctx: TrainContext) -> Any:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        p: ORPOParams = ctx.recipe.objective_params()
        train, held = to_dataset(ctx.train_rows), to_dataset(ctx.eval_rows, ctx.recipe.eval.max_examples)
        args = trl_args(ctx, ORPOConfig, held is not None, beta=p.beta)
        trainer = ORPOTrainer(model=ctx.model, args=args, train_dataset=train, eval_dataset=held,
                              processing_class=ctx.tokenizer)
        return finish(trainer, ctx, {"objective": "orpo", "beta": p.beta, "reference": "none (ORPO needs none)"})
