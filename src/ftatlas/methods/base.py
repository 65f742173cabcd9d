"""What every method provides: a Params model and ``apply(model, params) -> model ready to train``.

Optional hooks: ``load_options`` (extra ``from_pretrained`` kwargs, e.g. a 4-bit quantization config)
and ``merge_note`` (why the method's result cannot be folded into the base weights; None = it can).

Prompt-learning PEFT models (prefix/prompt/p-tuning) get ``keep_prompt_in_generation``: peft (0.21) looks for
the generation cache under ``past_key_values`` and puts a prefix there, while transformers 5 passes it as
``cache``. peft then took every step for the first: a prefix-tuned model generated exactly as the base model,
and prompt/p-tuning re-inserted their virtual tokens before every new token.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peft import PeftConfig, get_peft_model
from pydantic import BaseModel, ConfigDict
from torch import nn

from ftatlas.registry import Registry


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


CAPABILITIES = ("trains", "checkpointing", "mergeable", "supports_packing", "prompt_learning", "prepends_tokens",
                "quantized_base", "score_head", "per_token_logits", "bias_sized")


class Method:
    """Base class; subclasses set ``Params`` and implement ``apply``.

    The class attributes below say what the method is; the rest of ftatlas (advisor, estimates, objectives,
    merge, harness) reads them and never a method's name, so a new method is one module and no other edit.
    """

    name: str = ""
    Params: type[BaseModel] = NoParams
    summary: str = ""
    merge_note: str | None = None  # None: merge is possible (trivially so for methods that save model/)
    trains: bool = True  # False only for ``none``: the run evaluates the base model with its context
    checkpointing: bool = True  # False where checkpointing cannot work (prefix): what gradient_checkpointing=auto uses
    prompt_learning: bool = False  # peft's forward adds virtual tokens or a KV prefix (prefix, prompt, ptuning)
    prepends_tokens: bool = False  # ``num_virtual_tokens`` enter every input row, so labels no longer line up
    quantized_base: bool = False  # the base is loaded quantized (``load_options``): estimates count it at 4 bits
    score_head: bool = True  # False: its forward is wired to the causal-LM head, not a reward model's score head
    per_token_logits: bool = True  # False: its forward gives TRL's trainers no per-token log-probs (LLaMA-Adapter)
    bias_sized: bool = False  # trains a vector-sized set per layer (biases, norms, scales): the map's node H
    decision_leaves: Mapping[str, int] = {}  # leaves of the seeds' decision map it realises -> rank (0 = first choice)
    min_rows: int = 0  # fewer training rows than this: the advisor warns about overfitting
    mergeable: bool = True  # derived from merge_note in every subclass
    supports_packing: bool = True  # subclasses: not prompt_learning unless set (a KV prefix would span packed rows)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.mergeable = cls.merge_note is None
        if "supports_packing" not in cls.__dict__:
            cls.supports_packing = not cls.prompt_learning

    @classmethod
    def declared(cls) -> list[str]:
        """Yes/no capabilities where it differs from a plain method, e.g. ``["prompt_learning", "not mergeable"]``."""
        return [a if getattr(cls, a) else f"not {a}" for a in CAPABILITIES if getattr(cls, a) != getattr(Method, a)]

    def load_options(self, params: BaseModel, device: str) -> dict[str, Any]:
        """Extra kwargs for ``from_pretrained`` when loading the base for this method."""
        return {}

    def advice_params(self, config: Any) -> dict[str, Any]:
        """Params the advisor estimates this method with on a model of ``config`` (default: the defaults)."""
        return {}

    def apply_on_meta(self, model: nn.Module, params: BaseModel) -> nn.Module:
        """``apply`` on a meta-device model, for exact parameter counts (override where apply needs real weights)."""
        return self.apply(model, params)

    def check_recipe(self, params: BaseModel, recipe: Any) -> None:
        """Cross-axis checks run when the recipe is validated, before anything loads (raise ValueError)."""

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError


class PeftMethod(Method):
    """A method that is one peft config: subclasses implement ``peft_config``."""

    def peft_config(self, params: Any, model: nn.Module) -> PeftConfig:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:
        config = self.peft_config(params, model)
        if getattr(model.config, "num_labels", None) == 1 and "ForSequenceClassification" in type(model).__name__:
            config.task_type = "SEQ_CLS"  # a reward model: peft then also trains and saves the new `score` head
        try:
            return keep_prompt_in_generation(get_peft_model(model, config))
        except ValueError as e:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            targets = getattr(config, "target_modules", None)
            raise ValueError(
                f"method {self.name!r} (target_modules={targets!r}): {e}. "
                f"Linear module names in this model: {', '.join(names)}"
            ) from None


def keep_prompt_in_generation(model: nn.Module) -> nn.Module:
    """Make ``generate`` on a prompt-learning PEFT model continue as its forward does (see the module docstring);
    other models, and transformers versions that still call the cache ``past_key_values``, are left as they are."""
    config = getattr(model, "active_peft_config", None)
    inner = getattr(model, "base_model_prepare_inputs_for_generation", None)
    if not getattr(config, "is_prompt_learning", False) or inner is None:
        return model
    if "cache" not in inspect.signature(inner).parameters:
        return model

    def prepare(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = inner(*args, **kwargs)
        if "cache" in out and "past_key_values" not in out:
            out["past_key_values"] = out.pop("cache")  # where peft looks for it (and puts a prefix)
        return out

    model.base_model_prepare_inputs_for_generation = prepare
    return model


METHODS: Registry[type[Method]] = Registry("method")


def register(name: str):
    """``@register("lora")``: add the class to METHODS and record its name on it."""

    return METHODS.register_named(name)


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} / {self.total:,} ({self.share:.3%})"


def unique_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) with each tensor once: tied embeddings are one tensor."""
    seen: set[int] = set()
    out = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    return out


def count_params(model: nn.Module) -> ParamCount:
    """Counts each tensor once, adapters included in the total.

    bitsandbytes 4-bit weights are stored packed two-per-byte; they count as their logical size.
    """
    trainable = total = 0
    for _name, p in unique_parameters(model):
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return ParamCount(trainable, total)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: the ModuleList whose length is config.num_hidden_layers."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")
