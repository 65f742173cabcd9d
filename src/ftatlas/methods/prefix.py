"""Prefix tuning via peft (Li & Liang 2021): learned key/value vectors for ``num_virtual_tokens``
positions are prepended to every attention layer's cache; the model's own weights stay frozen.

peft sizes each prefix to the model's key/value width (num_key_value_heads * head_dim with GQA).
With ``prefix_projection`` the prefixes are produced by a 2-layer MLP (hidden ``encoder_hidden_size``)
from smaller embeddings during training, the reparameterisation the paper uses for stability; the
saved adapter stores the resulting prefixes.

Not with ``train.gradient_checkpointing``: the prefixes live in the KV cache, and the checkpoint's
recompute appends the layer's keys to it a second time (peft #869). peft only checks this when the
adapter is added, before Trainer switches checkpointing on, so ``apply`` adds a check at forward time
that turns the shape mismatch into a clear error.
"""

from __future__ import annotations

from typing import Any, ClassVar

from peft import PrefixTuningConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register

CHECKPOINTING_ERROR = ("method 'prefix' does not work with train.gradient_checkpointing: the learned prefixes live "
                       "in the KV cache, which the checkpoint recompute corrupts; set "
                       "train.gradient_checkpointing=false (or use prompt/ptuning)")


class PrefixParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-1  # train.lr: auto; from a sweep on contacts (examples/prefix.yaml)
    num_virtual_tokens: int = Field(16, ge=1, description="prefix length (key/value positions per layer)")
    prefix_projection: bool = Field(False, description="produce the prefixes with an MLP (reparameterisation)")
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="hidden size of that MLP; null = the prefix width")


@register("prefix")
class Prefix(PeftMethod):
    summary = "prefix tuning: learned key/value prefixes in every attention layer (peft)"
    merge_note = ("prefix tuning adds learned key/value prefixes to every attention layer at run time; "
                  "there is no weight delta to fold into the base")
    Params = PrefixParams
    checkpointing = False  # train.gradient_checkpointing=auto leaves it off
    prompt_learning = True
    score_head = False
    decision_leaves = {"G": 3}

    def peft_config(self, params: PrefixParams, model: nn.Module) -> PrefixTuningConfig:
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens,
                                  prefix_projection=params.prefix_projection,
                                  encoder_hidden_size=params.encoder_hidden_size)

    def check_recipe(self, params: PrefixParams, recipe: Any) -> None:
        if recipe.train.gradient_checkpointing is True:
            raise ValueError(CHECKPOINTING_ERROR)

    def apply(self, model: nn.Module, params: PrefixParams) -> nn.Module:
        peft_model = super().apply(model, params)
        peft_model.register_forward_pre_hook(_refuse_checkpointing)
        return peft_model


def _refuse_checkpointing(module: nn.Module, args: tuple) -> None:
    if module.training and any(getattr(m, "gradient_checkpointing", False) for m in module.modules()):
        raise ValueError(CHECKPOINTING_ERROR)
