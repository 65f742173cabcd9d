"""VeRA via peft (Kopiczko et al. 2024): one pair of frozen random matrices A (r x in), B (out x r)
shared by every adapted layer; each layer learns only two scaling vectors, dW = diag(b) B diag(d) A.

Trainable per layer: out_features + r. peft sizes the shared A/B to the largest in/out among the
targets, so layers of different shapes (q/k/v/o, MLP) can be adapted together; r may exceed the
layer widths (the paper uses r=256 and larger). A and B are regenerated from ``projection_prng_key``
and also saved with the adapter (``save_projection``), so a saved adapter reloads identically.
The update is a weight delta, so it merges into the base.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from peft import VeraConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class VeraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 5e-2  # train.lr: auto; from a sweep on contacts (examples/vera.yaml)
    r: int = Field(256, ge=1, description="rank of the shared frozen random projections")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear but the LM head)")
    projection_prng_key: int = Field(0, description="seed of the shared random A/B")
    save_projection: bool = Field(True, description="store A/B in the adapter (else regenerated from the seed)")
    vera_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the VeRA input")
    d_initial: float = Field(0.1, description="initial value of the learned d vector (b starts at zero)")


@register("vera")
class Vera(PeftMethod):
    summary = "VeRA: shared frozen random low-rank matrices, per-layer learned scaling vectors; mergeable"
    Params = VeraParams

    def peft_config(self, params: VeraParams, model: nn.Module) -> VeraConfig:
        return VeraConfig(task_type="CAUSAL_LM", r=params.r, target_modules=params.target_modules,
                          projection_prng_key=params.projection_prng_key, save_projection=params.save_projection,
                          vera_dropout=params.vera_dropout, d_initial=params.d_initial)
