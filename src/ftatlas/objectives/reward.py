"""Reward model: a one-output sequence-classification head on the base, trained on chosen/rejected pairs
(Bradley-Terry loss, TRL's RewardTrainer). Held-out evaluation is pairwise accuracy: the share of pairs
whose chosen answer scores higher than the rejected one.

Scoring with a trained reward model (the API GRPO/PPO/rejection sampling use)::

    score = load_reward_scorer("runs/my-reward")          # a reward run dir (or a saved model dir)
    score(["What is 2+2?"], ["4"])                        # -> [1.83]  one float per (prompt, completion)

A prompt is a user message string (or a list of ``{"role", "content"}`` messages); it is rendered with the
chat template the reward model was trained with, exactly as training rendered its pairs. Standard-form
(plain text) reward models score ``prompt + completion`` as raw text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from ftatlas.data.preference import PreferencePair
from ftatlas.evaluate.bootstrap import bootstrap_statistic
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import preference_trainer, refuse_methods

# Methods whose virtual tokens / adaption prompts are wired for the LM head's forward (score_head False).
NO_SCORE_HEAD = "its virtual tokens / adaption prompts are built for the causal-LM forward, not {trainer}'s score head"

Prompt = str | list[dict[str, str]]


class RewardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="pull mean reward toward 0 (e.g. 0.01); None = off")
    score_batch_size: int = Field(16, ge=1, description="pairs scored together in held-out evaluation")


@OBJECTIVES.register("reward")
class Reward(Objective):
    summary = "reward model: classification head trained on chosen/rejected pairs; eval = pairwise accuracy"
    data_kind = "preference"
    head = "reward"
    eval_metrics = ["pairwise_accuracy", "mean_margin"]
    Params = RewardParams

    def check_recipe(self, params: RewardParams, recipe: Any) -> None:
        refuse_methods(recipe, "RewardTrainer", NO_SCORE_HEAD, lambda m: not m.score_head)

    def build(self, ctx: TrainContext) -> Any:
        p: RewardParams = ctx.recipe.objective_params()
        _train_head(ctx.model)
        form = "text" if ctx.train_rows[0].is_text else "conversational"
        return preference_trainer(ctx, RewardConfig, RewardTrainer,
                                  {"center_rewards_coefficient": p.center_rewards_coefficient},
                                  {"form": form, "reference": "none (a reward model is trained on pairs directly)"})

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, rows: list[Any], recipe: Any,
                 progress: bool = True) -> dict:
        rows = rows[: recipe.eval.max_examples] if recipe.eval.max_examples else rows
        return pairwise_accuracy(model, tokenizer, rows, recipe.objective_params().score_batch_size)


def _train_head(model: Any) -> None:
    """The score head is new: it always trains (peft's SEQ_CLS task saves it; bitfit/freeze would freeze it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name, p in base.named_parameters():
        if name.split(".")[0] == "score" and p.dtype.is_floating_point:
            p.requires_grad_(True)
    _head_takes_any_dtype(model)


def _head_takes_any_dtype(model: Any) -> None:
    """A 4-bit base (qlora) hands bf16 hidden states to the fp32 score head: cast them to the head's dtype."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = getattr(base, "score", None)
    for linear in [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if head is not None else []:
        if not getattr(linear, "_ftatlas_cast", False):  # peft keeps the original head and a trained copy
            linear.register_forward_pre_hook(lambda mod, args: tuple(a.to(mod.weight.dtype) for a in args))
            linear._ftatlas_cast = True


def _render(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: str, text_form: bool) -> str:
    if text_form:
        return f"{prompt}{completion}{tokenizer.eos_token or ''}"
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template([*msgs, {"role": "assistant", "content": completion}], tokenize=False)


@torch.no_grad()
def score_texts(model: Any, tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int = 16) -> list[float]:
    """The reward head's output for each fully rendered text (right padded; the head reads the last real token)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], add_special_tokens=False, padding=True, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        out.extend(float(x) for x in logits[:, 0].float().cpu())
    return out


def pairwise_accuracy(model: Any, tokenizer: PreTrainedTokenizerBase, pairs: list[PreferencePair],
                      batch_size: int = 16) -> dict:
    """eval.json body of a reward run: share of held-out pairs with score(chosen) > score(rejected)."""
    text_form = bool(pairs) and pairs[0].is_text
    prompts = [p.prompt_text if p.is_text else _messages(p) for p in pairs]
    chosen = score_texts(model, tokenizer, [_render(tokenizer, q, p.chosen, text_form)
                                            for q, p in zip(prompts, pairs, strict=True)], batch_size)
    rejected = score_texts(model, tokenizer, [_render(tokenizer, q, p.rejected, text_form)
                                              for q, p in zip(prompts, pairs, strict=True)], batch_size)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    n = len(pairs)
    examples = [{"source": f"{p.source}:{p.line}", "prompt": p.prompt_text if p.is_text else p.prompt[-1].content,
                 "reference": p.chosen, "prediction": f"chosen {c:+.3f} vs rejected {r:+.3f}: {p.rejected}",
                 "score_chosen": round(c, 4), "score_rejected": round(r, 4)}
                for p, c, r in list(zip(pairs, chosen, rejected, strict=True))[:20]]
    right, margin = np.asarray([m > 0 for m in margins], dtype=np.float64), np.asarray(margins, dtype=np.float64)
    ci95 = {"pairwise_accuracy": bootstrap_statistic(lambda idx: right[idx].mean(axis=-1), n),
            "mean_margin": bootstrap_statistic(lambda idx: margin[idx].mean(axis=-1), n)}
    return {"metrics": {"pairwise_accuracy": float(right.mean()) if n else 0.0,
                        "mean_margin": float(margin.mean()) if n else 0.0},
            "ci95": {k: v for k, v in ci95.items() if v is not None},
            "scales": {"mean_margin": "reward difference, chosen - rejected (unbounded)"},
            "n": n, "examples": examples}


def _messages(pair: PreferencePair) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in pair.prompt]


def load_reward_scorer(path: str | Path, device: str = "auto",
                       batch_size: int = 16) -> Callable[[list[Prompt], list[str]], list[float]]:
    """A trained reward model as ``score(prompts, completions) -> list[float]`` (one reward per pair).

    ``path``: a reward run directory (adapter or full model, base loaded as the run trained it) or a saved
    sequence-classification model directory. Prompts are user-message strings or message lists.
    """
    model, tokenizer, text_form = _load_reward_model(Path(path), device)

    def score(prompts: list[Prompt], completions: list[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"reward scorer got {len(prompts)} prompts and {len(completions)} completions")
        texts = [_render(tokenizer, p, c, text_form) for p, c in zip(prompts, completions, strict=True)]
        return score_texts(model, tokenizer, texts, batch_size)

    return score


def _load_reward_model(path: Path, device: str) -> tuple[Any, PreTrainedTokenizerBase, bool]:
    from ftatlas.models.device import resolve_device
    from ftatlas.models.loading import load_model, load_tokenizer
    from ftatlas.models.trained import load_recipe_base
    from ftatlas.resolve import load_recipe
    from ftatlas.runs import RunDir

    dev = resolve_device(device)
    if not (path / "recipe.yaml").is_file():
        loaded = load_model(str(path), device=dev, head="reward")
        return loaded.model.eval(), loaded.tokenizer, False
    run = RunDir.open(path)
    recipe = load_recipe(run.recipe_file)
    if recipe.objective.name != "reward":
        raise ValueError(f"{path} trained objective {recipe.objective.name!r}, not a reward model")
    weights = run.weights_dir()
    if weights == run.adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_recipe_base(recipe, dev).model, str(weights)).to(dev)
    else:
        model = load_model(str(weights), device=dev, head="reward").model
    _head_takes_any_dtype(model)
    notes = run.read_json("objective.json") if (run.path / "objective.json").is_file() else {}
    return model.eval(), load_tokenizer(str(weights)), notes.get("form") == "text"
