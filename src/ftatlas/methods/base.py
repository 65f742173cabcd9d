"""What every method provides: a Params model and ``apply(model, params) -> model ready to train``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict
from torch import nn

from ftatlas.registry import Registry


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class; subclasses set ``Params`` and implement ``apply``."""

    name: str = ""
    Params: type[BaseModel] = NoParams
    summary: str = ""

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} / {self.total:,} ({self.share:.3%})"


def count_params(model: nn.Module) -> ParamCount:
    """Counts each tensor once (tied embeddings are one tensor), adapters included in the total."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return ParamCount(trainable, total)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the ModuleList whose length is config.num_hidden_layers."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")
