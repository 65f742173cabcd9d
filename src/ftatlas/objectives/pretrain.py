"""Continued pretraining on raw text: every token carries loss; documents packed into fixed-length blocks.

Built on TRL's SFTTrainer with ``packing_strategy="wrapped"``: texts (each ended with EOS) are
concatenated and cut into blocks of ``block_size`` tokens, GPT-style, so no compute goes to padding.
Reads ``.txt`` files (one document per blank-line-separated paragraph) or ``{"text": ...}`` rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from trl import SFTConfig, SFTTrainer

from ftatlas.data.templating import EncodeStats
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext
from ftatlas.objectives.trl_glue import FUSED_HEAD, as_dataset, finish, lacks_logits, refuse_methods, trl_args


class PretrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block_size: int | None = Field(None, ge=8, description="tokens per packed block; default data.max_length")


@OBJECTIVES.register("pretrain")
class Pretrain(Objective):
    summary = "continued pretraining: next-token loss on all tokens of raw text, packed into fixed blocks"
    data_kind = "text"
    needs_chat_template = False
    eval_metrics = ["next_token_accuracy"]
    Params = PretrainParams

    def check_recipe(self, params: PretrainParams, recipe: Any) -> None:
        refuse_methods(recipe, "SFTTrainer", FUSED_HEAD, lacks_logits)

    def evaluate(self, model: Any, tokenizer: Any, rows: list[Any], recipe: Any, progress: bool = True) -> dict:
        """Held-out text, packed like training: mean next-token loss, perplexity and top-1 accuracy."""
        rows = rows[: recipe.eval.max_examples] if recipe.eval.max_examples else rows
        block = recipe.objective_params().block_size or recipe.data.max_length
        return heldout_perplexity(model, tokenizer, [r.text for r in rows], block, recipe.eval.batch_size)

    def build(self, ctx: TrainContext) -> Any:
        p: PretrainParams = ctx.recipe.objective_params()
        block = p.block_size or ctx.recipe.data.max_length
        eos = ctx.tokenizer.eos_token or ""
        data = ctx.recipe.data  # file-backed rows under data.cache_tokenized: SFTTrainer's tokenizing is cached
        train = as_dataset([{"text": r.text + eos} for r in ctx.train_rows], data)
        held_rows = ctx.eval_rows[: ctx.recipe.eval.max_examples] if ctx.recipe.eval.max_examples else ctx.eval_rows
        held = as_dataset([{"text": r.text + eos} for r in held_rows], data) if held_rows else None
        args = trl_args(ctx, SFTConfig, held is not None, packing=True, packing_strategy="wrapped",
                        dataset_text_field="text", completion_only_loss=False, eos_token=None)
        args.max_length = block
        trainer = SFTTrainer(model=ctx.model, args=args, train_dataset=train, eval_dataset=held,
                             processing_class=ctx.tokenizer)
        self._stats = {"train": _block_stats(trainer.train_dataset, len(ctx.train_rows), block)}
        if trainer.eval_dataset is not None:
            self._stats["eval"] = _block_stats(trainer.eval_dataset, len(held_rows), block)
        return finish(trainer, ctx, {"objective": "pretrain", "block_size": block,
                                     "blocks": {k: v.rows for k, v in self._stats.items()}})

    def stats(self) -> dict[str, EncodeStats]:
        return self._stats


def _block_stats(blocks: Any, documents: int, block: int) -> EncodeStats:
    """Packed blocks as EncodeStats: every token carries loss; ``rows`` counts blocks."""
    tokens = sum(len(ids) for ids in blocks["input_ids"])
    return EncodeStats(rows=len(blocks), tokens=tokens, loss_tokens=tokens, truncated=0,
                       no_loss=[] if documents else ["no documents"])


@torch.no_grad()
def heldout_perplexity(model: Any, tokenizer: Any, texts: list[str], block: int, batch_size: int = 8) -> dict:
    """Texts (EOS-ended) concatenated and cut into ``block``-token blocks (the last may be shorter)."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    blocks = [ids[i:i + block] for i in range(0, len(ids), block) if len(ids[i:i + block]) > 1]
    model.eval()
    device = next(model.parameters()).device
    nll = correct = count = 0.0
    for i in range(0, len(blocks), batch_size):
        for b in blocks[i:i + batch_size]:  # one block at a time: no padding to mask
            x = torch.tensor([b], device=device)
            logits = model(input_ids=x).logits[0, -len(b):-1].float()  # minus prompt-learning virtual tokens
            target = x[0, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += float((logits.argmax(-1) == target).sum())
            count += len(b) - 1
    loss = nll / count if count else float("nan")
    return {"metrics": {"next_token_accuracy": correct / count if count else 0.0, "loss": loss,
                        "perplexity": math.exp(loss) if count else float("nan")},
            "n": len(texts), "blocks": len(blocks), "tokens": int(count), "examples": []}
