"""Supervised fine-tuning on conversations: next-token loss on the assistant tokens only (by default).

Built on transformers' Trainer rather than TRL's SFTTrainer: we own the templating and the
assistant mask (TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers most templates,
SmolLM2's included, lack), so what is left is a collator and the loss.

The fast path (recipe ``train`` fields, all on by default): padding-free packing with per-sequence
attention (data/packing.py, models/packed_attention.py) and a chunked cross-entropy that never forms
the full logits, also under PEFT (models/chunked_ce.py). Either way the loss is a sum over loss tokens
divided by the loss tokens of the whole accumulated batch (Trainer's ``num_items_in_batch``), so
batch size, gradient accumulation and packing do not change it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase, Trainer
from transformers.trainer_callback import PrinterCallback

from ftatlas.data.packing import FILLER_KEY, BestFitBatchSampler, PackedCollator, padded_width
from ftatlas.data.stream import StreamedEncoded, StreamedRows
from ftatlas.data.templating import IGNORE, Encoded, EncodeStats, encode_all
from ftatlas.data.token_cache import encode_cached
from ftatlas.distributed import main_process_first, shards_params, world_size
from ftatlas.models.accel import compile_blocks
from ftatlas.models.chunked_ce import LossWorkspace, chunked_lm_loss_sum, rewrites_inputs, split_lm
from ftatlas.models.frozen import store_frozen_linears
from ftatlas.models.packed_attention import use_varlen_attention
from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext, training_arguments
from ftatlas.objectives.budget import Budget, early_stopping_callbacks, plan_budget
from ftatlas.objectives.callbacks import HeapTrim, MetricsLogger, ProgressBar


class EncodedDataset(Dataset):
    def __init__(self, rows: list[Encoded]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i].input_ids, "labels": self.rows[i].labels}


class PadCollator:
    """Right-pad a batch to its longest row, rounded up (``padded_width``); padding never carries loss."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, cap: int = 64) -> None:
        self.pad_id = tokenizer.pad_token_id
        self.cap = cap

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = padded_width(max(len(b["input_ids"]) for b in batch), self.cap)  # few distinct shapes
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class LossTokenTrainer(Trainer):
    """Trainer whose loss is summed over loss tokens and divided by those of the whole accumulated batch.

    ``chunk`` set: the loss comes from ``chunked_lm_loss_sum`` (no full logits, loss rows rounded up to
    ``multiple``; its vocab-wide buffers kept in ``loss_workspace`` until ``train`` returns);
    ``batch_sampler`` set: the training batches come from it (best-fit token budgets) instead of a fixed batch
    size. Packed batches' filler tokens (data/packing.py) are not counted as tokens seen.
    """

    def __init__(self, *args: Any, chunk: int | None = None, batch_sampler: Sampler | None = None,
                 multiple: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk = chunk
        self.multiple = multiple
        self.loss_workspace = LossWorkspace()
        self.batch_sampler = batch_sampler
        self.model_accepts_loss_kwargs = True  # Trainer then counts loss tokens over all accumulated micro-batches

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        filler = int(inputs.get(FILLER_KEY, 0))
        if not filler or self.args.include_num_input_tokens_seen == "no":
            return super()._track_num_input_tokens(inputs)
        real = torch.as_tensor(inputs["input_ids"].numel() - filler, device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(real).sum().item()

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        inputs.pop(FILLER_KEY, None)  # not a model input
        if self.chunk is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        with self.accelerator.autocast():  # the decoder is called directly, outside accelerate's wrapped forward
            total, n = chunked_lm_loss_sum(model, inputs, self.chunk, self.multiple, self.loss_workspace)
        loss = total / (num_items_in_batch if num_items_in_batch is not None else max(n, 1))
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process' loss tokens and DDP averages gradients over processes:
            # scaled back so the step equals one process on the whole global batch (as Trainer's own loss does)
            loss = loss * self.accelerator.num_processes
        return (loss, {"loss": loss}) if return_outputs else loss

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            self.loss_workspace.release()

    def get_train_dataloader(self) -> DataLoader:
        if self.batch_sampler is None:
            return super().get_train_dataloader()
        loader = DataLoader(self.train_dataset, batch_sampler=self.batch_sampler, collate_fn=self.data_collator,
                            num_workers=0)
        return self.accelerator.prepare(loader)


@OBJECTIVES.register("sft")
class SFT(Objective):
    summary = "next-token loss on assistant turns (or all tokens with data.train_on=all)"

    def build(self, ctx: TrainContext) -> Any:
        held, self.eval_stats = self.encode(ctx, ctx.eval_rows)
        t = ctx.recipe.train
        # the method says whether it packs; the model check also catches a prompt-learning model built elsewhere
        packable = ctx.recipe.axes.method.entry.supports_packing and not rewrites_inputs(ctx.model)
        packed = t.packing != "off" and packable  # a KV prefix or virtual tokens would span a packed row
        extra: dict[str, Any] = {}
        if packed and t.packed_attention == "varlen":
            use_varlen_attention(ctx.model, ctx.device, t.pad_multiple)  # per-sequence attention
        if packed:
            extra["include_num_input_tokens_seen"] = "all"  # minus the filler (LossTokenTrainer)
        sharded = shards_params(ctx.recipe)  # FSDP / ZeRO-3: weights read outside the forward are shards
        if t.frozen_half and not sharded and ctx.precision.autocast is not None and hasattr(ctx.model, "peft_config"):
            store_frozen_linears(ctx.model, ctx.precision.autocast)  # only the adapter is saved, so this stays local
        if t.compile:
            compile_blocks(ctx.model)
        if isinstance(ctx.train_rows, StreamedRows):
            train_data, sampler, budget = self.streamed(ctx, bool(held))
            # accelerate's dispatching slices every tensor by its first dim (a packed row's cu_seq_lens too): each
            # process reads the stream and keeps its share of every global batch instead (IterableDatasetShard)
            extra["accelerator_config"] = {"dispatch_batches": False}
        else:
            train_data, sampler, budget = self.in_memory(ctx, bool(held))
        loss_held = held[: t.eval_loss_rows] if t.eval_loss_rows else held  # the eval-loss passes' rows
        trainer = LossTokenTrainer(
            model=ctx.model,
            args=training_arguments(ctx, has_eval=bool(held), budget=budget, **extra),
            train_dataset=train_data,
            eval_dataset=EncodedDataset(loss_held) if held else None,
            data_collator=PackedCollator(t.pad_multiple, ctx.tokenizer.pad_token_id) if packed
            else PadCollator(ctx.tokenizer, t.pad_multiple),
            processing_class=ctx.tokenizer,
            callbacks=[MetricsLogger(ctx.run), ProgressBar(ctx.progress), HeapTrim(),
                       *early_stopping_callbacks(budget)],
            chunk=t.loss_chunk if t.chunked_loss and not sharded and split_lm(ctx.model) is not None else None,
            batch_sampler=sampler,
            multiple=t.pad_multiple,
        )
        trainer.remove_callback(PrinterCallback)  # our ProgressBar/MetricsLogger report instead of dict prints
        return trainer

    def in_memory(self, ctx: TrainContext, has_eval: bool) -> tuple[Dataset, Sampler | None, Budget]:
        """Every training row encoded up front (through the cache): dataset, best-fit sampler, budget."""
        t = ctx.recipe.train
        train, self.train_stats = self.encode(ctx, ctx.train_rows)
        if not train:
            raise ValueError(f"no training rows carry loss after templating ({self.train_stats.summary()})")
        sampler = None
        if t.packing == "best_fit":
            lengths = [len(r.input_ids) for r in train]
            budget = t.pack_tokens or t.batch_size * round(sum(lengths) / len(lengths))
            sampler = BestFitBatchSampler(lengths, budget, seed=t.seed)
        batches = len(sampler) if sampler is not None else math.ceil(len(train) / t.batch_size)
        plan = plan_budget(t, math.ceil(batches / t.grad_accum), self.train_stats.loss_tokens, has_eval)
        return EncodedDataset(train), sampler, plan

    def streamed(self, ctx: TrainContext, has_eval: bool) -> tuple[Dataset, None, Budget]:
        """A streamed split (data/stream.py), encoded as the trainer reads it. Its length is unknown, so the
        budget is ``train.max_steps``, or the steps of ``data.max_train`` rows."""
        t, rows = ctx.recipe.train, ctx.train_rows
        if t.packing == "best_fit":
            raise ValueError("train.packing=best_fit groups the whole set by length; data.train is streamed "
                             "(streaming: true) and read as training goes: use packing padding_free or off")
        data = StreamedEncoded(rows, ctx.tokenizer, ctx.recipe.data.max_length, ctx.recipe.data.train_on)
        self.train_stats = data.stats  # filled in as training reads the rows
        steps = rows.steps(t.batch_size * t.grad_accum * world_size())
        if t.max_steps <= 0 and steps is None:
            raise ValueError("data.train is streamed (streaming: true) and its number of rows is unknown: set "
                             "train.max_steps, or data.max_train to derive the steps from")
        plan = plan_budget(t, steps or t.max_steps, None, has_eval)
        if plan.max_steps <= 0:  # the Trainer needs max_steps with a dataset of unknown length
            total = math.ceil(plan.epochs * (steps or 1))
            plan = replace(plan, max_steps=total, reason=plan.reason + f"; {total} steps over data.max_train="
                           f"{rows.limit} streamed rows")
        return data, None, plan

    def encode(self, ctx: TrainContext, rows: list) -> tuple[list[Encoded], EncodeStats]:
        """Template and tokenize ``rows``, through the tokenized-rows cache (data.cache_tokenized) when on."""
        spec = ctx.recipe.data
        if not spec.cache_tokenized or not rows:
            return encode_all(ctx.tokenizer, rows, spec.max_length, spec.train_on)
        with main_process_first():  # the first process writes the cache, the others then read it
            encoded, stats, _hit = encode_cached(ctx.tokenizer, rows, spec.max_length, spec.train_on, spec.cache_dir)
        return encoded, stats

    def stats(self) -> dict[str, EncodeStats]:
        return {"train": self.train_stats, "eval": self.eval_stats}
