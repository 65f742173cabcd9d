"""``ppo``: proximal policy optimisation against reward functions or a reward model — ftatlas's own loop.

TRL 1.16 removed ``PPOTrainer`` and its value-head model classes, so this module is a small, documented
implementation on transformers/peft (the classic RLHF step of the seeds; RLOO/GRPO are the TRL-backed
alternatives). One step:

1. rollout: sample ``num_generations`` completions for each of ``batch_size`` prompts;
2. score each completion with the recipe's reward functions (weighted sum);
3. per-token log-probs of the policy (old), of the reference model (for adapters: the same model with
   the adapter disabled; for full/freeze: a frozen copy taken before training) and values from a
   linear value head on the policy's last hidden state;
4. per-token rewards: ``-beta * (logp_old - logp_ref)`` on every token plus the score on the last one;
   advantages by GAE(``gamma``, ``lam``), returns = advantages + values; advantages whitened;
5. ``ppo_epochs`` passes of clipped policy loss + ``vf_coef`` * clipped value loss, one optimizer step each.

Logged per step to metrics.jsonl: reward (mean score), kl (per sequence), policy_loss, value_loss,
clip_fraction, loss. A non-finite loss stops the run (step and last good checkpoint named).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.generation import autocast_ctx, generation_config
from ftatlas.objectives.base import OBJECTIVES, TrainContext
from ftatlas.objectives.callbacks import diverged
from ftatlas.objectives.online import OnlineObjective, SamplingParams
from ftatlas.recipe import DecodeSpec
from ftatlas.rewards import build_rewards, combined


class PPOParams(SamplingParams):
    num_generations: int = Field(2, ge=1, description="completions sampled per prompt")
    beta: float = Field(0.05, ge=0, description="per-token KL penalty to the reference, added to the reward")
    gamma: float = Field(1.0, gt=0, le=1, description="discount over completion tokens")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    cliprange: float = Field(0.2, gt=0, description="policy-ratio clip range")
    cliprange_value: float = Field(0.2, gt=0, description="value clip range around the rollout values")
    vf_coef: float = Field(0.1, ge=0, description="weight of the value loss")
    ppo_epochs: int = Field(2, ge=1, description="optimisation passes over each rollout batch")
    whiten_advantages: bool = Field(True, description="normalise advantages to mean 0, std 1 per batch")


class ValueHead(nn.Module):
    """A linear map from the last hidden state to a scalar value per token."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.float()).squeeze(-1)


@dataclass
class Rollout:
    ids: torch.Tensor  # prompt (left padded) + completion (right padded)
    attention: torch.Tensor
    mask: torch.Tensor  # 1 on completion tokens up to and including EOS
    width: int  # prompt width: completion tokens start here
    scores: torch.Tensor
    old_logp: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    ref_logp: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    values: torch.Tensor = field(default_factory=lambda: torch.empty(0))


@dataclass
class State:
    global_step: int = 0
    max_steps: int = 0
    num_input_tokens_seen: int = 0
    epoch: float = 0.0
    log_history: list[dict] = field(default_factory=list)


@dataclass
class TrainOutput:
    global_step: int
    training_loss: float | None


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens; returns (advantages, returns)."""
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, adv + values


def completion_mask(completion: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 up to and including the first EOS (or everywhere when no EOS was generated)."""
    if eos_id is None:
        return torch.ones_like(completion, dtype=torch.float)
    is_eos = completion == eos_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after).float()


class PPOTrainer:
    """Rollout -> score -> GAE -> clipped updates, ``max_steps`` times; the Trainer-like surface the
    pipeline uses (``train()``, ``state``, ``eval_dataset``)."""

    eval_dataset = None

    def __init__(self, ctx: TrainContext, p: PPOParams) -> None:
        self.ctx, self.p, self.model, self.tok = ctx, p, ctx.model, ctx.tokenizer
        self.run, t = ctx.run, ctx.recipe.train
        self.device = next(self.model.parameters()).device
        self.reward = combined(*build_rewards(p.rewards))
        hidden = self.model.config.hidden_size
        self.value_head = ValueHead(hidden).to(self.device)
        # Reference: the adapter switched off (peft), else a frozen copy of the starting weights.
        self.ref = None if isinstance(self.model, PeftModel) else copy.deepcopy(self.model).eval().requires_grad_(False)
        params = [q for q in self.model.parameters() if q.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=ctx.recipe.learning_rate(), weight_decay=t.weight_decay)
        steps_per_epoch = math.ceil(len(ctx.train_rows) / t.batch_size)
        epochs = 1.0 if t.epochs == "auto" else t.epochs  # auto: one pass over the prompts
        self.state = State(max_steps=t.max_steps if t.max_steps > 0 else math.ceil(epochs * steps_per_epoch))
        warmup = int(t.warmup * self.state.max_steps) if t.warmup < 1 else int(t.warmup)
        self.scheduler = get_scheduler(t.scheduler, self.optimizer, warmup, self.state.max_steps * p.ppo_epochs)
        self.gen = generation_config(DecodeSpec(max_new_tokens=p.max_completion_length, do_sample=True,
                                                temperature=p.temperature, top_k=p.top_k, top_p=p.top_p), self.tok)
        self.gen.num_return_sequences = p.num_generations
        self.prompts = [(render_prompt(self.tok, r.messages), r.reward_columns()) for r in ctx.train_rows]

    def _autocast(self):
        return autocast_ctx(self.device.type, self.ctx.precision.autocast)

    # -- rollout ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, batch: list[tuple[str, dict]]) -> Rollout:
        self.model.eval()
        side, self.tok.padding_side = self.tok.padding_side, "left"
        try:
            enc = self.tok([b[0] for b in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tok.padding_side = side
        enc = enc.to(self.device)
        with self._autocast():
            out = self.model.generate(**enc, generation_config=self.gen)
        g, width = self.p.num_generations, enc["input_ids"].shape[1]
        completion = out[:, width:]
        mask = completion_mask(completion, self.tok.eos_token_id)
        prompt_attn = enc["attention_mask"].repeat_interleave(g, dim=0)
        attention = torch.cat([prompt_attn, mask.long()], dim=1)
        kept = completion.masked_fill(mask == 0, self.tok.pad_token_id)
        texts = self.tok.batch_decode(kept, skip_special_tokens=True)
        prompts = [b[0] for b in batch for _ in range(g)]
        columns = {k: [b[1].get(k) for b in batch for _ in range(g)] for k in batch[0][1]}
        ids_list = [c[m.bool()].tolist() for c, m in zip(completion, mask, strict=True)]
        scores = self.reward(prompts, [t.strip() for t in texts], completion_ids=ids_list, **columns)
        return Rollout(out, attention, mask, width, torch.tensor(scores, device=self.device))

    def forward(self, ro: Rollout, use_ref: bool = False, values: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-completion-token log-probs (at the sampling temperature) and values."""
        model = self.ref if use_ref and self.ref is not None else self.model
        positions = (ro.attention.cumsum(-1) - 1).clamp(min=0)
        with self._autocast():
            out = model(input_ids=ro.ids, attention_mask=ro.attention, position_ids=positions,
                        output_hidden_states=values)
        # Counted from the right: prompt-tuning methods prepend virtual tokens to the outputs.
        n = ro.ids.shape[1] - ro.width
        logits = out.logits[:, -n - 1 : -1].float() / self.p.temperature
        target = ro.ids[:, ro.width :]
        logp = torch.gather(F.log_softmax(logits, -1), 2, target.unsqueeze(-1)).squeeze(-1)
        v = self.value_head(out.hidden_states[-1][:, -n - 1 : -1]) if values else torch.empty(0)
        return logp, v

    @torch.no_grad()
    def score_rollout(self, ro: Rollout) -> None:
        ro.old_logp, ro.values = self.forward(ro)
        if isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                ro.ref_logp, _ = self.forward(ro, values=False)
        else:
            ro.ref_logp, _ = self.forward(ro, use_ref=True, values=False)

    # -- update ----------------------------------------------------------------------------------------
    def advantages(self, ro: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kl = (ro.old_logp - ro.ref_logp) * ro.mask
        rewards = -self.p.beta * kl
        last = (ro.mask.sum(1).long() - 1).clamp(min=0)
        rewards[torch.arange(len(last)), last] += ro.scores
        adv, returns = gae(rewards, ro.values, ro.mask, self.p.gamma, self.p.lam)
        if self.p.whiten_advantages:
            adv = whiten(adv, ro.mask)
        return adv.detach(), returns.detach(), kl.sum(1)

    def update(self, ro: Rollout, adv: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        self.model.train()
        logp, v = self.forward(ro)
        ratio = torch.exp(logp - ro.old_logp)
        pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.p.cliprange, 1 + self.p.cliprange))
        policy_loss = masked_mean(pg, ro.mask)
        v_clip = ro.values + (v - ro.values).clamp(-self.p.cliprange_value, self.p.cliprange_value)
        value_loss = 0.5 * masked_mean(torch.max((v - returns) ** 2, (v_clip - returns) ** 2), ro.mask)
        loss = policy_loss + self.p.vf_coef * value_loss
        if not torch.isfinite(loss):
            raise diverged(self.run, self.state.global_step + 1, loss.item())
        self.optimizer.zero_grad()
        loss.backward()
        params = [q for g in self.optimizer.param_groups for q in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.ctx.recipe.train.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        clipped = ((ratio - 1).abs() > self.p.cliprange).float()
        return {"loss": loss.item(), "policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                "clip_fraction": masked_mean(clipped, ro.mask).item()}

    def step(self, batch: list[tuple[str, dict]]) -> dict[str, float]:
        ro = self.rollout(batch)
        self.score_rollout(ro)
        adv, returns, kl = self.advantages(ro)
        stats = [self.update(ro, adv, returns) for _ in range(self.p.ppo_epochs)]
        self.state.num_input_tokens_seen += int(ro.attention.sum())
        row = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}
        return row | {"reward": ro.scores.mean().item(), "reward_std": ro.scores.std().item() if len(ro.scores) > 1
                      else 0.0, "kl": kl.mean().item(), "completion_length": ro.mask.sum(1).mean().item()}

    def batches(self) -> Iterator[list[tuple[str, dict]]]:
        """Endless seeded shuffles of the prompts, ``batch_size`` at a time (a short last chunk is dropped)."""
        size, rng = self.ctx.recipe.train.batch_size, torch.Generator().manual_seed(self.ctx.recipe.train.seed)
        while True:
            order = torch.randperm(len(self.prompts), generator=rng).tolist()
            for i in range(0, max(len(order) - size, 0) + 1, size):
                yield [self.prompts[j] for j in order[i : i + size]]

    def train(self, resume_from_checkpoint: Any = None) -> TrainOutput:
        if resume_from_checkpoint:
            raise ValueError("objective ppo cannot resume from a checkpoint yet; start the run again")
        t, losses = self.ctx.recipe.train, []
        batches, t0 = self.batches(), time.perf_counter()
        bar = tqdm(total=self.state.max_steps, desc="ppo", unit="step", disable=not self.ctx.progress)
        for _ in range(self.state.max_steps):
            row = self.step(next(batches))
            self.state.global_step += 1
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl']:.3f}")
            losses.append(row["loss"])
            if self.state.global_step % t.log_every == 0 or self.state.global_step == self.state.max_steps:
                row = {"step": self.state.global_step, **{k: round(v, 6) for k, v in row.items()},
                       "lr": self.scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 2)}
                self.state.log_history.append(row)
                self.run.log_metrics(row)
            if t.save_every and self.state.global_step % t.save_every == 0:
                self.save(self.run.checkpoints_dir / f"checkpoint-{self.state.global_step}")
        bar.close()
        torch.save(self.value_head.state_dict(), self.run.path / "value_head.pt")
        return TrainOutput(self.state.global_step, sum(losses) / len(losses) if losses else None)

    def save(self, path: Any) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        torch.save(self.value_head.state_dict(), path / "value_head.pt")


@OBJECTIVES.register("ppo")
class PPO(OnlineObjective):
    Params = PPOParams
    summary = ("EXPERIMENTAL: PPO with a value head, GAE and a KL penalty to the reference (ftatlas's own loop; "
               "TRL has none)")
    experimental = ("ftatlas's own PPO loop has not yet been shown to raise its held-out metric (the README's ages run "
                    "went from 2% to 0% exact match); grpo or rloo (TRL-backed) are the tested online objectives")

    def build(self, ctx: TrainContext) -> PPOTrainer:
        return PPOTrainer(ctx, ctx.recipe.objective_params())  # type: ignore[arg-type]
