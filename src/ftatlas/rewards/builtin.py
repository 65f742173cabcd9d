"""Built-in reward functions, registered by name; each takes its own params from the recipe entry.

- against the row's ``reference`` column (any evaluation metric): ``exact_match``, ``normalized_match``,
  ``contains``, ``token_f1``, ``json_match``;
- format: ``regex`` (the completion matches a pattern), ``json_valid`` (it parses as JSON);
- ``length_penalty``: 0 up to ``target`` tokens, then minus ``per_token`` for each token beyond;
- ``reward_model``: the score of a trained reward model (a run dir of the ``reward`` objective, or any
  sequence-classification model dir) on prompt + completion.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftatlas.evaluate.metrics import METRICS, first_json
from ftatlas.rewards.base import REWARDS, BuiltinReward, completion_text


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceParams(_Params):
    column: str = Field("reference", description="data column holding the correct answer")


class ReferenceMetric(BuiltinReward):
    """1.0/0.0 (or a share, for token_f1) from an evaluation metric against the ``reference`` column."""

    Params = ReferenceParams
    metric = ""

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        col = self.params.column
        if col not in kwargs:
            have = ", ".join(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric")) or "none"
            raise KeyError(f"needs a {col!r} column in the prompt data (columns: {have})")
        fn = METRICS.get(self.metric)
        return [None if ref is None else fn(completion_text(c), str(ref))
                for c, ref in zip(completions, kwargs[col], strict=True)]


for _name in ("exact_match", "normalized_match", "contains", "token_f1", "json_match"):
    REWARDS.register(_name)(type(f"Reward_{_name}", (ReferenceMetric,), {
        "metric": _name, "summary": f"metric {_name!r} of the completion against the reference column"}))


class RegexParams(_Params):
    pattern: str = Field(description="Python regular expression")
    mode: Literal["fullmatch", "search"] = Field("fullmatch", description="whole (stripped) completion, or anywhere")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v


@REWARDS.register("regex")
class Regex(BuiltinReward):
    """1.0 when the completion matches ``pattern`` (format rewards, e.g. ``^\\d+$`` for a bare number)."""

    Params = RegexParams

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        rx = re.compile(self.params.pattern, re.DOTALL)
        match = rx.fullmatch if self.params.mode == "fullmatch" else rx.search
        return [float(match(completion_text(c).strip()) is not None) for c in completions]


class JsonParams(_Params):
    anywhere: bool = Field(False, description="accept JSON embedded in other text (else the whole completion)")


@REWARDS.register("json_valid")
class JsonValid(BuiltinReward):
    """1.0 when the completion is valid JSON."""

    Params = JsonParams

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        return [float(self._ok(completion_text(c))) for c in completions]

    def _ok(self, text: str) -> bool:
        if self.params.anywhere:
            return first_json(text) is not None
        try:
            json.loads(text)
        except ValueError:
            return False
        return True


class LengthParams(_Params):
    target: int = Field(32, ge=1, description="tokens allowed without penalty")
    per_token: float = Field(0.01, ge=0, description="penalty per token beyond target")


@REWARDS.register("length_penalty")
class LengthPenalty(BuiltinReward):
    """``-per_token * max(0, tokens - target)``; tokens from ``completion_ids`` (else whitespace words)."""

    Params = LengthParams

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        ids = kwargs.get("completion_ids")
        lengths = [len(x) for x in ids] if ids is not None else [len(completion_text(c).split()) for c in completions]
        return [0.0 - self.params.per_token * max(0, n - self.params.target) for n in lengths]


class RewardModelParams(_Params):
    path: str = Field(description="run dir of the reward objective, or a sequence-classification model dir")
    batch_size: int = Field(8, ge=1, description="texts scored together")

    @field_validator("path")
    @classmethod
    def _exists(cls, v: str) -> str:
        if not Path(v).exists():
            raise ValueError(f"{v} does not exist")
        return v


@functools.cache
def _scorer(path: str, batch_size: int) -> Any:
    from ftatlas.objectives.reward import load_reward_scorer

    return load_reward_scorer(path, batch_size=batch_size)


@REWARDS.register("reward_model")
class RewardModel(BuiltinReward):
    """The scalar score of a trained reward model on (prompt, completion), rendered with the reward model's
    own chat template from the ``prompt_messages`` column (ftatlas adds it; plain prompts count as user text)."""

    Params = RewardModelParams

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        scorer = _scorer(self.params.path, self.params.batch_size)
        turns = kwargs.get("prompt_messages") or list(prompts)
        return list(scorer(turns, [completion_text(c) for c in completions]))
