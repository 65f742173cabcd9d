"""LoHa via peft (Hyeon-Woo et al. 2022, FedPara; LyCORIS): the update is a Hadamard product of two
low-rank products, dW = (alpha/r) (B1 A1) * (B2 A2), on chosen linear layers.

Four rank-r factors per layer: twice LoRA's parameters at the same r, but the product can reach rank
r^2. The update is a weight delta, so it merges into the base.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from peft import LoHaConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class LoHaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 5e-3  # train.lr: auto; from a sweep on contacts (examples/loha.yaml)
    r: int = Field(8, ge=1, description="rank of each of the two factor products")
    alpha: float = Field(8, gt=0, description="scale numerator (update scaled by alpha/r)")
    rank_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on rows of the update during training")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="probability of skipping a layer's update in a step")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear but the LM head)")


@register("loha")
class LoHa(PeftMethod):
    summary = "LoHa: Hadamard product of two low-rank updates (LyCORIS, peft); mergeable"
    Params = LoHaParams

    def peft_config(self, params: LoHaParams, model: nn.Module) -> LoHaConfig:
        return LoHaConfig(task_type="CAUSAL_LM", r=params.r, alpha=params.alpha, rank_dropout=params.rank_dropout,
                          module_dropout=params.module_dropout, target_modules=params.target_modules)
