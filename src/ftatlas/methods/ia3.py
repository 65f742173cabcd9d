"""(IA)^3 via peft (Liu et al. 2022): learned vectors that rescale activations, nothing else learns.

Each targeted linear gets one vector, initialised to ones: attention projections (``k_proj``, ``v_proj``)
scale their *output*; ``feedforward_modules`` (a subset of the targets, here ``down_proj``) scale their
*input*. The scales multiply into the weights, so the result merges into the base.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from peft import IA3Config
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class IA3Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-2  # train.lr: auto; the rate examples/ia3.yaml trains contacts with
    target_modules: list[str] | Literal["all-linear"] = Field(
        ["k_proj", "v_proj", "down_proj"], description="module names to rescale, or all-linear")
    feedforward_modules: list[str] = Field(
        ["down_proj"], description="targets whose input (not output) is scaled: the feed-forward down projection")

    @model_validator(mode="after")
    def _ff_subset(self) -> IA3Params:
        if isinstance(self.target_modules, list) and not set(self.feedforward_modules) <= set(self.target_modules):
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            raise ValueError(f"feedforward_modules must be a subset of target_modules; not targeted: {extra}")
        return self


@register("ia3")
class IA3(PeftMethod):
    summary = "(IA)^3: learned per-channel scales on k/v outputs and the FFN input; mergeable"
    Params = IA3Params
    bias_sized = True

    def peft_config(self, params: IA3Params, model: nn.Module) -> IA3Config:
        return IA3Config(task_type="CAUSAL_LM", target_modules=params.target_modules,
                         feedforward_modules=params.feedforward_modules)
