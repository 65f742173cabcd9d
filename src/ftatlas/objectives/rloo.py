"""``rloo``: REINFORCE leave-one-out (TRL's RLOOTrainer), the REINFORCE-family alternative to PPO.

Each prompt gets ``num_generations`` completions; a completion's baseline is the mean reward of the
*other* completions of its prompt, so no value model is needed. The KL to the reference (``beta``) is
folded into the reward as in TRL. Same rewards, data and generation settings as ``grpo``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from trl import RLOOConfig, RLOOTrainer

from ftatlas.objectives.base import OBJECTIVES, TrainContext
from ftatlas.objectives.grpo import online_trainer
from ftatlas.objectives.online import OnlineObjective, TRLParams


class RLOOParams(TRLParams):
    num_generations: int = Field(4, ge=2, description="completions per prompt (leave-one-out needs >= 2)")
    beta: float = Field(0.05, ge=0, description="KL penalty to the reference model, folded into the reward")
    normalize_advantages: bool = Field(False, description="whiten advantages over each generation batch")


@OBJECTIVES.register("rloo")
class RLOO(OnlineObjective):
    Params = RLOOParams
    summary = "REINFORCE leave-one-out on prompts scored by reward functions (TRL RLOOTrainer)"

    def build(self, ctx: TrainContext) -> Any:
        p: RLOOParams = ctx.recipe.objective_params()  # type: ignore[assignment]
        return online_trainer(ctx, p, RLOOTrainer, RLOOConfig, normalize_advantages=p.normalize_advantages)
