"""LoRA via peft: W x + (alpha/r) B A x on chosen linear layers; DoRA and rsLoRA as switches."""

from __future__ import annotations

from typing import Literal

from peft import LoraConfig, get_peft_model
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import METHODS, Method


class LoraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1, description="rank of the update")
    alpha: float = Field(32, gt=0, description="scale numerator; usually 2*r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear but the LM head)")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction separately")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stabler at high rank")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases also train")


@METHODS.register("lora")
class Lora(Method):
    summary = "low-rank adapters on linear layers (peft); small, fast, mergeable"
    Params = LoraParams

    def apply(self, model: nn.Module, params: LoraParams) -> nn.Module:
        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=params.r,
            lora_alpha=params.alpha,
            lora_dropout=params.dropout,
            target_modules=params.target_modules,
            use_dora=params.use_dora,
            use_rslora=params.use_rslora,
            bias=params.bias,
        )
        try:
            return get_peft_model(model, config)
        except ValueError as e:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(
                f"method.target_modules={params.target_modules!r}: {e}. Linear module names in this model: "
                f"{', '.join(names)}"
            ) from None
