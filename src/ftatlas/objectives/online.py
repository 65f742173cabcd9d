"""What the generate-then-score objectives (grpo, rloo, ppo) share: sampling/reward params, the prompt
dataset, and the TRL config fields they have in common. Not an objective itself (registers nothing).

Batch sizes: ``train.batch_size`` counts *prompts* per micro-batch; each prompt is answered
``num_generations`` times, so a micro-batch holds ``batch_size * num_generations`` completions.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from datasets import Dataset
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftatlas.data.prompts import PromptRow
from ftatlas.data.templating import render_prompt
from ftatlas.objectives.base import Objective, TrainContext
from ftatlas.objectives.trl_glue import lacks_logits, refuse_methods
from ftatlas.rewards import RewardSpec

# Keys TRL's online trainers log besides loss/lr, kept in metrics.jsonl (prefix match).
LOGGED = ("reward", "kl", "entropy", "clip_ratio", "completions/", "num_tokens")


class SamplingParams(BaseModel):
    """Rewards and sampling, shared by every online objective."""

    model_config = ConfigDict(extra="forbid")
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(name="exact_match")], min_length=1,
        description="reward functions with weights: built-ins or 'module:function' (summed, weighted)")
    num_generations: int = Field(8, ge=2, description="completions sampled per prompt (the group)")
    max_completion_length: int = Field(32, ge=1, description="tokens generated per completion")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="sample from the k most likely tokens (0 = off)")
    beta: float = Field(0.04, ge=0, description="KL penalty to the reference model (0 = no reference kept)")


class TRLParams(SamplingParams):
    """Fields of TRL's GRPOConfig/RLOOConfig that both objectives expose."""

    epsilon: float = Field(0.2, gt=0, description="policy-ratio clip range")
    num_iterations: int = Field(1, ge=1, description="optimisation passes per generated batch (mu)")
    use_vllm: bool = Field(False, description="generate with vLLM (GPU, where installed); default: transformers")

    @field_validator("use_vllm")
    @classmethod
    def _vllm_installed(cls, v: bool) -> bool:
        if v and importlib.util.find_spec("vllm") is None:
            raise ValueError("use_vllm=true needs vLLM (a CUDA GPU; pip install 'ftatlas[cuda]'), not installed here. "
                             "Leave it false: generation then runs with transformers (on CPU here)")
        return v


class OnlineObjective(Objective):
    """An objective that samples completions for prompt rows and learns from their rewards."""

    data_kind = "prompts"

    def check_recipe(self, params: BaseModel, recipe: Any) -> None:
        """Methods whose forward the trainer cannot use stop here, before anything loads."""
        refuse_methods(recipe, "online trainer", "method {method} trains nothing", lambda m: not m.trains)
        refuse_methods(recipe, "online trainer", "method {method} returns no per-token log-probs through TRL's "
                       "online trainers", lacks_logits)


def prompt_dataset(ctx: TrainContext, rows: list[PromptRow]) -> Dataset:
    """``{"prompt": rendered text, <columns>}`` per row: the chat template is applied here, by the same
    tokenizer used for evaluation and chat, so TRL receives plain-text prompts and string completions."""
    return Dataset.from_list([{"prompt": render_prompt(ctx.tokenizer, r.messages), **r.reward_columns()}
                              for r in rows])


def trl_fields(p: TRLParams, batch_size: int) -> dict[str, Any]:
    """GRPOConfig/RLOOConfig fields from the shared params (``batch_size`` prompts per micro-batch)."""
    return dict(
        per_device_train_batch_size=batch_size * p.num_generations,
        per_device_eval_batch_size=batch_size * p.num_generations,
        num_generations=p.num_generations,
        max_completion_length=p.max_completion_length,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        beta=p.beta,
        epsilon=p.epsilon,
        num_iterations=p.num_iterations,
        use_vllm=p.use_vllm,
        reward_weights=[r.weight for r in p.rewards],
        shuffle_dataset=True,
    )
