"""LLaMA-Adapter via peft's adaption prompts (Zhang et al. 2023, "LLaMA-Adapter: Efficient Fine-tuning
of Language Models with Zero-init Attention"): the top ``adapter_layers`` attention blocks each get
``adapter_len`` learnable prompt vectors; their keys/values (through the frozen k/v projections) are
attended to separately and added to the block's output through a zero-initialised gate, so training
starts exactly at the base model.

This is the LLaMA-Adapter (v1) prompt variant, not a Houlsby-style bottleneck MLP inserted after each
sub-layer: peft has no bottleneck adapter. peft supports it for llama/mistral (and gpt2) model types.
"""

from __future__ import annotations

from typing import ClassVar

from peft import AdaptionPromptConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, decoder_layers, register

MODEL_TYPES = ("llama", "mistral", "gpt2")  # peft's adaption_prompt TRANSFORMERS_MODEL_CONFIG


class AdapterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-2  # train.lr: auto; the rate examples/adapter.yaml trains contacts with
    adapter_len: int = Field(10, ge=1, description="learnable prompt vectors per adapted layer")
    adapter_layers: int | None = Field(
        None, ge=1, description="adapt the top N attention blocks; null = every block")


@register("adapter")
class Adapter(PeftMethod):
    summary = "LLaMA-Adapter: zero-gated learnable prompts in the top attention blocks (peft adaption prompt)"
    merge_note = ("LLaMA-Adapter adds a separate gated attention over learned prompts at run time; "
                  "there is no weight delta to fold into the base")
    Params = AdapterParams
    score_head = False  # its gated prompts live in the causal-LM forward
    per_token_logits = False  # peft AdaptionPrompt gives no fused LM-head output for TRL to read log-probs from
    decision_leaves = {"G": 2}

    def peft_config(self, params: AdapterParams, model: nn.Module) -> AdaptionPromptConfig:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in MODEL_TYPES:
            raise ValueError(f"method 'adapter' (peft adaption prompt) supports model types {', '.join(MODEL_TYPES)}; "
                             f"this model is {model_type!r}")
        n = len(decoder_layers(model))
        layers = params.adapter_layers or n
        if layers > n:
            raise ValueError(f"method.adapter_layers={layers} but the model has only {n} decoder layers")
        return AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=params.adapter_len, adapter_layers=layers)
