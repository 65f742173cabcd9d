"""Supervised fine-tuning on conversations: next-token loss on the assistant tokens only (by default).

Built on transformers' Trainer rather than TRL's SFTTrainer: we own the templating and the
assistant mask (TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers most templates,
SmolLM2's included, lack), so what is left is a padding collator, which Trainer takes as is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase, Trainer
from transformers.trainer_callback import PrinterCallback

from ftatlas.data.templating import IGNORE, Encoded, EncodeStats, encode_all
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext, training_arguments
from ftatlas.objectives.callbacks import MetricsLogger, ProgressBar


class EncodedDataset(Dataset):
    def __init__(self, rows: list[Encoded]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i].input_ids, "labels": self.rows[i].labels}


class PadCollator:
    """Right-pad a batch to its longest row; padding never carries loss."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, multiple_of: int = 8) -> None:
        self.pad_id = tokenizer.pad_token_id
        self.multiple_of = multiple_of

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        width = -(-longest // self.multiple_of) * self.multiple_of  # round up: fewer distinct shapes
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@OBJECTIVES.register("sft")
class SFT(Objective):
    summary = "next-token loss on assistant turns (or all tokens with data.train_on=all)"

    def build(self, ctx: TrainContext) -> Any:
        spec = ctx.recipe.data
        train, self.train_stats = encode_all(ctx.tokenizer, ctx.train_rows, spec.max_length, spec.train_on)
        held, self.eval_stats = encode_all(ctx.tokenizer, ctx.eval_rows, spec.max_length, spec.train_on)
        if not train:
            raise ValueError(f"no training rows carry loss after templating ({self.train_stats.summary()})")
        trainer = Trainer(
            model=ctx.model,
            args=training_arguments(ctx, has_eval=bool(held)),
            train_dataset=EncodedDataset(train),
            eval_dataset=EncodedDataset(held) if held else None,
            data_collator=PadCollator(ctx.tokenizer),
            processing_class=ctx.tokenizer,
            callbacks=[MetricsLogger(ctx.run), ProgressBar(ctx.progress)],
        )
        trainer.remove_callback(PrinterCallback)  # our ProgressBar/MetricsLogger report instead of dict prints
        return trainer

    def stats(self) -> dict[str, EncodeStats]:
        return {"train": self.train_stats, "eval": self.eval_stats}
