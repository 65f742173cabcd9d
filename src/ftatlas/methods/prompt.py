"""Prompt tuning via peft (Lester et al. 2021): ``num_virtual_tokens`` learned input embeddings are
prepended to every sequence; the model's own weights stay frozen.

``init: text`` starts the soft prompt from the token embeddings of ``init_text`` (repeated or cut to
length), which peft tokenizes with the tokenizer saved beside the model, so the base must have been loaded from a
local directory (``model.name_or_path``, as ftatlas's loader does); ``init: random`` starts from random vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from peft import PromptTuningConfig
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register


class PromptParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_lr: ClassVar[float] = 3e-2  # train.lr: auto; the rate examples/prompt.yaml trains contacts with
    num_virtual_tokens: int = Field(16, ge=1, description="length of the learned soft prompt")
    init: Literal["random", "text"] = Field("random", description="random vectors, or the embeddings of init_text")
    init_text: str = Field("Extract the requested fields and answer in the expected format.",
                           min_length=1, description="text whose token embeddings start the prompt (init=text)")


def model_path(model: nn.Module) -> str:
    """Where the model was loaded from (a local dir or hub id), or '' for a model built in memory."""
    return getattr(model, "name_or_path", "") or getattr(getattr(model, "config", None), "_name_or_path", "") or ""


@register("prompt")
class Prompt(PeftMethod):
    summary = "prompt tuning: a learned soft prompt prepended to the input embeddings (peft)"
    merge_note = ("prompt tuning prepends learned input embeddings at run time; "
                  "there is no weight delta to fold into the base")
    Params = PromptParams
    prompt_learning = True
    prepends_tokens = True
    score_head = False

    def peft_config(self, params: PromptParams, model: nn.Module) -> PromptTuningConfig:
        if params.init == "random":
            return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens)
        path = model_path(model)
        if not path or not Path(path).is_dir():
            raise ValueError(f"method.init=text tokenizes init_text with the tokenizer saved beside the model, but "
                             f"the model's name_or_path ({path!r}) is not a local directory; "
                             "use init=random, or load the model from a directory")
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=params.num_virtual_tokens,
                                  prompt_tuning_init="TEXT", prompt_tuning_init_text=params.init_text,
                                  tokenizer_name_or_path=path)
