"""LN-tuning (Zhao et al., 2023) via peft: only the normalisation layers train (trained copies of them).

With ``target_modules`` unset, peft's per-architecture defaults are used where it has them (Llama:
input_layernorm, post_attention_layernorm and the final norm); for architectures peft does not know,
every module whose class name contains "Norm" is targeted. Note peft's Qwen2 default is only
post_attention_layernorm; list the names to train more. Mergeable: merge swaps in the trained norms.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

from peft import LNTuningConfig
from peft.utils import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as PEFT_DEFAULTS
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class LNTuningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-2  # train.lr: auto; the rate examples/lntuning.yaml trains contacts with
    target_modules: list[str] | None = Field(
        None, description="norm module names to train; unset: peft's defaults for the architecture, else all norms")


def norm_module_names(model: nn.Module) -> list[str]:
    """Leaf names of the model's normalisation modules (LayerNorm, RMSNorm, ...)."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and "Norm" in type(m).__name__})


@register("lntuning")
class LNTuning(PeftMethod):
    summary = "only the norm layers train (LN-tuning, peft); tiny parameter count; mergeable"
    Params = LNTuningParams
    bias_sized = True

    def peft_config(self, params: LNTuningParams, model: nn.Module) -> LNTuningConfig:
        targets = params.target_modules
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if targets is None and model_type not in PEFT_DEFAULTS:
            targets = norm_module_names(model) or None
        return LNTuningConfig(task_type="CAUSAL_LM", target_modules=targets)

    def apply(self, model: nn.Module, params: LNTuningParams) -> nn.Module:
        with warnings.catch_warnings():  # peft asks every wrapped norm for in/out features and warns; harmless
            warnings.filterwarnings("ignore", message="Unsupported layer type", category=UserWarning)
            return super().apply(model, params)
