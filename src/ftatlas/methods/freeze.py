"""Partial fine-tuning: freeze everything, then unfreeze the top N blocks, chosen layers, head or norms.

With tied embeddings (SmolLM2) the LM head *is* the input embedding matrix, so ``head: true``
trains both; the parameter count reports it once.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import Method, decoder_layers, register


class FreezeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-4  # train.lr: auto; full fine-tuning's rate x2 (fewer, top layers train)
    top_n: int = Field(2, ge=0, description="train the last N transformer blocks")
    layers: list[int] | None = Field(None, description="train these block indices (negative counts from the end)")
    head: bool = Field(False, description="train the LM head (tied with the embeddings on many models)")
    norm: bool = Field(True, description="train the final norm")
    modules: list[str] = Field(default_factory=list, description="also train params whose name matches a regex")


@register("freeze")
class Freeze(Method):
    summary = "only the top N blocks / chosen layers / head / norms train"
    Params = FreezeParams
    decision_leaves = {"E": 1}  # partial FT: measured behind LoRA on label tasks (issue #19), the fallback
    min_rows = 200

    def apply(self, model: nn.Module, params: FreezeParams) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        n = len(layers)
        chosen = set(range(n - params.top_n, n)) if params.top_n else set()
        for i in params.layers or []:
            if not -n <= i < n:
                raise ValueError(f"method.layers: index {i} is out of range for a {n}-layer model")
            chosen.add(i % n)
        for i in chosen:
            layers[i].requires_grad_(True)
        if params.head:
            model.get_output_embeddings().requires_grad_(True)
        if params.norm:
            _final_norm(model).requires_grad_(True)
        self._unfreeze_matching(model, params.modules)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("method freeze: nothing left to train; set top_n, layers, head, norm or modules")
        return model

    @staticmethod
    def _unfreeze_matching(model: nn.Module, patterns: list[str]) -> None:
        for pat in patterns:
            rx = re.compile(pat)
            hits = [p for name, p in model.named_parameters() if rx.search(name)]
            if not hits:
                raise ValueError(f"method.modules: pattern {pat!r} matches no parameter name")
            for p in hits:
                p.requires_grad_(True)


def _final_norm(model: nn.Module) -> nn.Module:
    base = getattr(model, "model", model)
    norm = getattr(base, "norm", None) or getattr(base, "final_layernorm", None) or getattr(base, "ln_f", None)
    if norm is None:
        raise ValueError(f"cannot find the final norm of {type(model).__name__}; set norm: false")
    return norm
