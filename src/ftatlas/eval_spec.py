"""The recipe's ``eval:`` block: decoding, the LLM judge and model-scored metrics' settings (re-exported by
``ftatlas.recipe``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DecodeSpec(Strict):
    max_new_tokens: int = Field(64, ge=1, description="tokens generated per answer")
    do_sample: bool = Field(False, description="sample instead of greedy/beam")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_k: int = Field(50, ge=0, description="sample from the k most likely tokens (0 = off)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    num_beams: int = Field(1, ge=1, description="beam search width (1 = greedy/sampling)")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 discourages repeats")
    seed: int = Field(0, description="sampling seed")


def _absolute_if_exists(v: Any) -> Any:
    """An existing relative path is kept absolute, so ``ftatlas eval RUN`` finds it from any directory."""
    return str(Path(v).resolve()) if isinstance(v, str) and Path(v).exists() else v


class JudgeSpec(Strict):
    model: str = Field(..., description="local: run dir, model dir or alias; endpoint: the model name it serves")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (e.g. http://host:8000/v1); "
                                 "unset = load `model` locally")
    api_key_env: str | None = Field(None, description="environment variable holding the endpoint's API key")
    allow_insecure: bool = Field(False, description="send the API key over plain http to a non-loopback host")
    rubric: str | None = Field(None, description="pointwise rubric; default ftatlas.evaluate.judge.DEFAULT_RUBRIC")
    show_reference: bool = Field(True, description="show the reference answer to the pointwise judge")
    max_new_tokens: int = Field(64, ge=1, description="tokens the judge may write per verdict")
    timeout_s: float = Field(60.0, gt=0, description="seconds per endpoint request")
    workers: int = Field(4, ge=1, description="endpoint requests in flight at once")
    opponent: str | None = Field(None, description="another run's eval.json on the same rows: judge_pairwise "
                                 "compares against its predictions instead of the reference answers")

    _absolute = field_validator("opponent", mode="after")(_absolute_if_exists)


class EvalSpec(Strict):
    metrics: list[str] | None = Field(None, description="metric names; default: the task's, else exact_match")
    max_examples: int | None = Field(None, ge=1, description="score only the first N held-out rows")
    batch_size: int = Field(16, ge=1, description="prompts generated together (left padded, KV cache)")
    decode: DecodeSpec = Field(default_factory=DecodeSpec)
    json_schema: str | dict[str, Any] | None = Field(
        None, description="JSON schema (file path or inline mapping) for the json_schema metric")
    reward_model: str | None = Field(None, description="reward run dir or model dir for the reward_score metric")
    judge: JudgeSpec | None = Field(None, description="LLM judge for the judge_score / judge_pairwise metrics")

    _absolute = field_validator("json_schema", "reward_model", mode="after")(_absolute_if_exists)

    @model_validator(mode="after")
    def _metric_config(self) -> EvalSpec:
        """Metrics that need configuration (a schema, a reward model, a judge) say so when the recipe loads."""
        from ftatlas.evaluate.model_metrics import missing_config

        problem = missing_config(self.metrics or [], self)
        if problem:
            raise ValueError(problem)
        return self
