"""BitFit (Ben Zaken et al., 2021): only the bias terms train; every weight matrix stays frozen.

"Bias terms" are all parameters whose name ends in ``.bias``, as in the paper, so on GPT-2 the
LayerNorm biases (ln_1/ln_2/ln_f) train along with the attention and MLP biases.

Llama-family models (SmolLM2 included) have no biases at all: ``add_bias: true`` sets the config's
``attention_bias`` / ``mlp_bias`` flags and gives the targeted linears zero-initialised biases, so
outputs are unchanged at the start and ``save_pretrained`` + plain ``from_pretrained`` rebuilds the
same modules. Each flag covers a whole group (q/k/v/o or gate/up/down), so targets must list whole
groups. The result is a plain model (saved to model/); there is nothing to merge.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from ftatlas.methods.base import Method, register

GROUPS: dict[str, tuple[str, ...]] = {
    "attention_bias": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp_bias": ("gate_proj", "up_proj", "down_proj"),
}


class BitFitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 1e-2  # train.lr: auto; the rate examples/bitfit.yaml trains contacts with
    add_bias: bool = Field(False, description="add zero-initialised trainable biases (for models without any)")
    targets: list[str] = Field(
        default_factory=lambda: [n for g in GROUPS.values() for n in g],
        description="linears that get a bias when add_bias: whole groups q/k/v/o_proj and/or gate/up/down_proj")

    @field_validator("targets")
    @classmethod
    def _whole_groups(cls, v: list[str]) -> list[str]:
        known = {n for g in GROUPS.values() for n in g}
        if unknown := sorted(set(v) - known):
            raise ValueError(f"unknown targets {unknown}; allowed: {', '.join(sorted(known))}")
        for flag, group in GROUPS.items():
            if set(v) & set(group) and not set(group) <= set(v):
                raise ValueError(f"the config flag {flag} adds biases to all of {', '.join(group)}; "
                                 "list the whole group or none of it")
        if not v:
            raise ValueError("targets is empty")
        return v


@register("bitfit")
class BitFit(Method):
    summary = "only bias terms train (BitFit); add_bias adds zero-init biases to Llama-family linears"
    Params = BitFitParams
    bias_sized = True
    decision_leaves = {"I": 0}

    def advice_params(self, config: Any) -> dict[str, Any]:
        """A bias-free model (Llama family) gets zero-initialised biases; otherwise BitFit has nothing to train."""
        if not getattr(config, "attention_bias", True) and not getattr(config, "mlp_bias", True):
            return {"add_bias": True}
        return {}

    def apply(self, model: nn.Module, params: BitFitParams) -> nn.Module:
        if params.add_bias:
            add_biases(model, params.targets)
        biases = [p for name, p in model.named_parameters() if name.endswith(".bias")]
        if not biases:
            raise ValueError(f"method bitfit: {type(model).__name__} has 0 bias parameters; set method.add_bias=true "
                             "to add zero-initialised trainable biases to the linears in method.targets")
        for p in model.parameters():
            p.requires_grad_(False)
        for p in biases:
            p.requires_grad_(True)
        return model


def add_biases(model: nn.Module, targets: list[str]) -> None:
    """Set the config's bias flags and add exactly the biases a model built from that config has."""
    cfg = model.config
    flags = [flag for flag, group in GROUPS.items() if set(group) & set(targets)]
    if missing := [f for f in flags if not hasattr(cfg, f)]:
        raise ValueError(f"method bitfit: the {cfg.model_type!r} config has no {', '.join(missing)}; add_bias is "
                         "supported for configs with attention_bias/mlp_bias (Llama family)")
    before = {flag: getattr(cfg, flag) for flag in flags}
    for flag in flags:
        setattr(cfg, flag, True)
    with torch.device("meta"):  # what from_pretrained will build from the saved config; no memory used
        reference = dict(type(model)(cfg).named_modules())
    mods = dict(model.named_modules())
    linears = {n: m for n, m in mods.items() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets}
    wrong = [n for n in linears if getattr(reference.get(n), "bias", None) is None]  # flag misses a target
    wrong += [n for n, m in reference.items() if isinstance(m, nn.Linear) and m.bias is not None
              and n not in linears and getattr(mods.get(n), "bias", None) is None]  # flag adds beyond targets
    if wrong or not linears:
        for flag, value in before.items():
            setattr(cfg, flag, value)
        raise ValueError(f"method bitfit: on {cfg.model_type!r}, {', '.join(flags)} does not add biases to exactly "
                         f"{', '.join(targets)} (mismatch: {', '.join(wrong[:4]) or 'no targeted linears'}); "
                         "add_bias is not supported here")
    for lin in linears.values():
        if lin.bias is None:
            lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype, device=lin.weight.device))
