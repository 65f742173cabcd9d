"""CPO: contrastive preference optimisation (a reference-free DPO-style loss plus NLL on chosen).

Built on TRL's CPOTrainer (``trl.experimental.cpo`` in TRL 1.16). ``simpo`` (simpo.py) is this trainer
with the SimPO loss.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import VIRTUAL_TOKENS, finish, refuse_methods, to_dataset, trl_args

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we pin TRL and test the experimental trainers we use


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
        refuse_methods(recipe, {"prompt": VIRTUAL_TOKENS, "ptuning": VIRTUAL_TOKENS}, "CPOTrainer")

    def build(self, ctx: TrainContext) -> Any:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        p = ctx.recipe.objective_params()
        train, held = to_dataset(ctx.train_rows), to_dataset(ctx.eval_rows, ctx.recipe.eval.max_examples)
        args = trl_args(ctx, CPOConfig, held is not None, loss_type=p.loss, beta=p.beta, cpo_alpha=p.cpo_alpha,
                        simpo_gamma=p.simpo_gamma, alpha=p.alpha, label_smoothing=p.label_smoothing)
        trainer = CPOTrainer(model=ctx.model, args=args, train_dataset=train, eval_dataset=held,
                             processing_class=ctx.tokenizer)
        notes = {"objective": ctx.recipe.objective.name, "loss": p.loss, "beta": p.beta, "cpo_alpha": p.cpo_alpha,
                 "reference": "none (reference-free: rewards are length-normalised log-probs of the policy)"}
        return finish(trainer, ctx, notes)
