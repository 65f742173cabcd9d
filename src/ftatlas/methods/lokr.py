"""LoKr via peft (LyCORIS; Edalati et al. 2022, KronA): the update is a Kronecker product,
dW = (alpha/r) W1 (x) W2, of a small full matrix W1 and a (by default low-rank, B A) matrix W2.

The layer's in/out sizes are factorised (``decompose_factor``, -1 = as square as possible); with
``decompose_both`` W1 is low-rank too. The update is a weight delta, so it merges into the base.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from peft import LoKrConfig
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class LoKrParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 2e-3  # train.lr: auto; from a sweep on contacts (examples/lokr.yaml)
    r: int = Field(8, ge=1, description="rank of the low-rank Kronecker factor")
    alpha: float = Field(8, gt=0, description="scale numerator (update scaled by alpha/r)")
    decompose_both: bool = Field(False, description="also make the small Kronecker factor low-rank")
    decompose_factor: int = Field(-1, description="factor used to split each dimension; -1 = near-square")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear but the LM head)")

    @field_validator("decompose_factor")
    @classmethod
    def _factor(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("decompose_factor must be -1 (automatic) or a positive integer")
        return v


@register("lokr")
class LoKr(PeftMethod):
    summary = "LoKr: Kronecker-product update with a low-rank factor (LyCORIS, peft); mergeable"
    Params = LoKrParams

    def peft_config(self, params: LoKrParams, model: nn.Module) -> LoKrConfig:
        return LoKrConfig(task_type="CAUSAL_LM", r=params.r, alpha=params.alpha,
                          decompose_both=params.decompose_both, decompose_factor=params.decompose_factor,
                          target_modules=params.target_modules)
