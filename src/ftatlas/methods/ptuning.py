"""P-tuning via peft (Liu et al. 2021, "GPT Understands, Too"): ``num_virtual_tokens`` virtual token
embeddings are produced by a small prompt encoder (an MLP, or an LSTM followed by an MLP) and
prepended to the input embeddings; the model's own weights stay frozen.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from peft import PromptEncoderConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class PTuningParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 3e-2  # train.lr: auto; from a sweep on contacts (examples/ptuning.yaml)
    num_virtual_tokens: int = Field(16, ge=1, description="number of virtual tokens prepended to the input")
    encoder_hidden_size: int | None = Field(
        None, ge=1, description="hidden size of the prompt encoder; null = the model's hidden size")
    encoder_reparameterization_type: Literal["MLP", "LSTM"] = Field(
        "MLP", description="prompt encoder: MLP, or a bidirectional LSTM followed by an MLP")


@register("ptuning")
class PTuning(PeftMethod):
    summary = "P-tuning: virtual tokens from a small MLP/LSTM prompt encoder, prepended to the input (peft)"
    merge_note = ("p-tuning prepends encoder-produced virtual token embeddings at run time; "
                  "there is no weight delta to fold into the base")
    Params = PTuningParams
    prompt_learning = True
    prepends_tokens = True
    score_head = False

    def peft_config(self, params: PTuningParams, model: nn.Module) -> PromptEncoderConfig:
        return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens,
                                   encoder_hidden_size=params.encoder_hidden_size,
                                   encoder_reparameterization_type=params.encoder_reparameterization_type)
