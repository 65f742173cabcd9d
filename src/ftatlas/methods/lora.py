"""LoRA via peft: W x + (alpha/r) B A x on chosen linear layers.

Variants are options of ``lora`` (one spelling, documented): ``use_dora`` (DoRA), ``use_rslora``
(rsLoRA: alpha/sqrt(r)), and ``init`` for the start point: ``default`` (B = 0), ``gaussian``,
``pissa`` (principal singular vectors; ``pissa_niter_N`` is the fast randomised SVD), ``olora``
(QR-based), ``loftq`` (quantization-aware; peft runs it on CUDA/XPU only).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from peft import LoftQConfig, LoraConfig
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ftatlas.methods.base import PeftMethod, register

INITS = ("default", "gaussian", "pissa", "olora", "loftq")


class LoraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 2e-4  # train.lr: auto; LoRA's usual rate
    r: int = Field(16, ge=1, description="rank of the update")
    alpha: float = Field(32, gt=0, description="scale numerator; usually 2*r")
    # 0 (peft's own default): with dropout each adapted layer keeps a dropped copy of its input for the backward;
    # on SmolLM2 0.05 costs ~35% of tokens/s and 1.5x peak memory (bench/train_throughput.py, docs/defaults.md)
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input (0: no copy of the input kept)")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear but the LM head)")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction separately")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stabler at high rank")
    init: str = Field("default", description="default | gaussian | pissa | pissa_niter_N | olora | loftq")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases also train")

    @field_validator("init")
    @classmethod
    def _known_init(cls, v: str) -> str:
        if v not in INITS and not (v.startswith("pissa_niter_") and v.removeprefix("pissa_niter_").isdigit()):
            raise ValueError(f"unknown init {v!r}; allowed: {', '.join(INITS)}, pissa_niter_N")
        return v


def lora_config(params: LoraParams, model: nn.Module) -> LoraConfig:
    init: bool | str = True if params.init == "default" else params.init
    loftq = None
    if params.init == "loftq":
        device = next(model.parameters()).device.type
        if device not in ("cuda", "xpu") or not torch.cuda.is_available():
            raise ValueError("method.init=loftq: peft's LoftQ initialisation runs on CUDA/XPU only; "
                             "on CPU use init=pissa (also SVD-based) or the default init")
        loftq = LoftQConfig(loftq_bits=4, loftq_iter=1)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=0.0 if params.init.startswith(("pissa", "olora")) else params.dropout,
        target_modules=params.target_modules,
        use_dora=params.use_dora,
        use_rslora=params.use_rslora,
        init_lora_weights=init,
        loftq_config=loftq or {},
        bias=params.bias,
    )


@register("lora")
class Lora(PeftMethod):
    summary = "low-rank adapters on linear layers (peft); DoRA/rsLoRA/PiSSA/OLoRA as options; mergeable"
    Params = LoraParams
    decision_leaves = {"E": 0, "G": 0, "K": 0}  # E: LoRA beat freeze on label tasks (issue #19: 98.8% vs 42.5%)
    min_rows = 50

    def peft_config(self, params: LoraParams, model: nn.Module) -> LoraConfig:
        return lora_config(params, model)
