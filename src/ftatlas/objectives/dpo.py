"""Direct preference optimisation on chosen/rejected pairs, with TRL's DPOTrainer and any of its loss types.

The reference model is explicit (see ``trl_glue.reference_for``): the starting adapter with PEFT methods,
a frozen copy for methods that change base weights, or precomputed log-probs (``precompute_reference``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from peft import PeftModel
from pydantic import BaseModel, ConfigDict, Field
from trl import DPOConfig, DPOTrainer

from ftatlas.data.preference import PreferencePair
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import (
    FUSED_HEAD,
    lacks_logits,
    preference_trainer,
    refuse_methods,
)

# TRL 1.16's DPOConfig.loss_type values.
DPOLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class DPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loss: DPOLoss | list[DPOLoss] = Field("sigmoid", description="TRL loss type, or a list combined by loss_weights")
    loss_weights: list[float] | None = Field(None, description="weights for a list of losses (default: all 1)")
    beta: float = Field(0.1, gt=0, description="strength of the pull toward the reference (higher = closer)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="assumed label noise (sigmoid/robust losses)")
    ld_alpha: float | None = Field(None, ge=0, le=1, description="LD-DPO: weight of tokens past the shorter answer")
    use_weighting: bool = Field(False, description="WPO weighting of pairs by their probability")
    discopop_tau: float = Field(0.05, gt=0, description="temperature of the discopop loss")
    precompute_reference: bool = Field(False, description="score the reference once up front; none kept after")


@OBJECTIVES.register("dpo")
class DPO(Objective):
    summary = "direct preference optimisation on chosen/rejected pairs (any TRL DPO loss), reference explicit"
    data_kind = "preference"
    pair_eval = True
    Params = DPOParams

    def check_recipe(self, params: DPOParams, recipe: Any) -> None:
        refuse_methods(recipe, "DPOTrainer", FUSED_HEAD, lacks_logits)
        losses = params.loss if isinstance(params.loss, list) else [params.loss]
        if params.loss_weights is not None and len(params.loss_weights) != len(losses):
            raise ValueError(f"objective.loss_weights has {len(params.loss_weights)} weights for "
                             f"{len(losses)} losses")

    def build(self, ctx: TrainContext) -> Any:
        p: DPOParams = ctx.recipe.objective_params()
        fields = dict(loss_type=p.loss, loss_weights=p.loss_weights, beta=p.beta, label_smoothing=p.label_smoothing,
                      ld_alpha=p.ld_alpha, use_weighting=p.use_weighting, discopop_tau=p.discopop_tau,
                      precompute_ref_log_probs=p.precompute_reference)
        return preference_trainer(ctx, DPOConfig, DPOTrainer, fields, {"loss": p.loss, "beta": p.beta},
                                  reference=True, precompute=p.precompute_reference)


def _completion_ids(tokenizer: Any, pair: PreferencePair, answer: str) -> tuple[list[int], int]:
    """(prompt + answer token ids, where the answer starts), tokenized the way DPO training does."""
    if pair.is_text:
        prompt, full = pair.prompt_text, pair.prompt_text + answer + (tokenizer.eos_token or "")
    else:
        msgs = [{"role": m.role, "content": m.content} for m in pair.prompt]
        prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*msgs, {"role": "assistant", "content": answer}], tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(p_ids, f_ids, strict=False)) if a != b), len(p_ids))
    return f_ids, start


@torch.no_grad()
def answer_logps(model: Any, tokenizer: Any, pairs: list[PreferencePair], which: str = "chosen") -> list[float]:
    """Sum of log-probabilities of each pair's ``chosen`` (or ``rejected``) answer tokens given the prompt."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for pair in pairs:
        ids, start = _completion_ids(tokenizer, pair, pair.chosen if which == "chosen" else pair.rejected)
        x = torch.tensor([ids], device=device)
        logits = model(input_ids=x).logits[0, -len(ids):]  # prompt-learning methods prepend virtual tokens
        logp = torch.log_softmax(logits[:-1].float(), dim=-1)
        target = x[0, 1:]
        out.append(float(logp[start - 1:].gather(1, target[start - 1:, None]).sum()))
    return out


def implicit_reward_margins(model: PeftModel, tokenizer: Any, pairs: list[PreferencePair],
                            beta: float = 0.1) -> list[float]:
    """DPO's implicit reward margin per pair, beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))],
    for an adapter policy whose reference is its base with the adapter disabled (a LoRA-family adapter
    trained from its zero-effect init on that base). A margin > 0 means the pair is ranked right."""
    def both() -> tuple[list[float], list[float]]:
        return answer_logps(model, tokenizer, pairs, "chosen"), answer_logps(model, tokenizer, pairs, "rejected")

    pol_c, pol_r = both()
    with model.disable_adapter():
        ref_c, ref_r = both()
    return [beta * ((pc - rc) - (pr - rr)) for pc, rc, pr, rr in zip(pol_c, ref_c, pol_r, ref_r, strict=True)]
