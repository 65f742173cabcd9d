"""Reward functions for objectives that generate and score (grpo, rloo, ppo) and for rejection sampling.

See :mod:`ftatlas.rewards.base` for the signature (TRL's ``fn(prompts, completions, **kwargs) -> list[float]``)
and :mod:`ftatlas.rewards.builtin` for the built-ins.
"""

from ftatlas.rewards import builtin as _builtin  # noqa: F401 - registers the built-ins
from ftatlas.rewards.base import (
    REWARDS,
    CheckedReward,
    RewardError,
    RewardSpec,
    build_rewards,
    combined,
    completion_text,
    load_user_function,
)

__all__ = ["REWARDS", "CheckedReward", "RewardError", "RewardSpec", "build_rewards", "combined",
           "completion_text", "load_user_function"]
