"""Padding-free packing: a micro-batch's sequences laid end to end in one row, boundaries kept.

``PackedCollator`` concatenates the examples of a micro-batch into a single ``[1, T]`` row with
``position_ids`` restarting at 0 for every sequence and the first label of each sequence masked
(so the last token of one sequence never learns to predict the first of the next). It also passes
``cu_seq_lens_q/k`` and ``max_length_q/k``, the varlen keywords transformers forwards to the attention
function: ``models/packed_attention.py`` runs causal attention per sequence from them. Without that
attention, transformers still sees the restarting ``position_ids`` and builds a block-diagonal mask
(only when no KV cache is in play, hence ``use_cache=False`` in the batch), so attention never
crosses sequences either way (just more slowly).

``multiple`` > 1 rounds the row up to a multiple of that many tokens with one filler sequence (pad ids, no
loss, its own positions and boundary, so it attends only to itself). Rows then come in a few lengths instead of
a new one every step, and shape-keyed kernel caches are reused: on CPU, oneDNN builds and caches matmul kernels
per shape, so a new shape every step made steps slower and resident memory climb for tens of steps (SmolLM2
LoRA, 8 x ~128-token rows: +280 MiB over 10 steps, and 13% slower, than rows of one fixed length).
The batch says how many filler tokens it holds (``filler_tokens``), so token counts leave them out.

``best_fit_batches`` groups examples by a token budget instead of a fixed count (best-fit decreasing),
so every micro-batch carries about the same number of tokens and peak memory is bounded by the budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ftatlas.data.templating import IGNORE

FILLER_KEY = "filler_tokens"  # not a model input: LossTokenTrainer takes it out before the forward
PAD_WIDTH = 8  # the finest step an unpacked (right-padded) batch's width is rounded up to


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-n // multiple) * multiple


def padded_width(longest: int, cap: int = 64) -> int:
    """The width an unpacked batch whose longest row is ``longest`` tokens is right-padded to.

    Rounded up to the largest power of two <= ``longest / 4``, at least ``PAD_WIDTH`` and at most ``cap``
    (``train.pad_multiple``): four widths per doubling of length, at most a quarter of the row added. Widths that
    change by a few tokens from step to step make the heap split the blocks freed by a wider step for a narrower
    one, then take fresh blocks for the next wider one (SmolLM2, LN tuning on padded batches of 176-184 tokens
    rounded to 8: peak +28 MiB over 4 steps against packed rows); rows of 161-192 tokens now share one width.
    """
    step = PAD_WIDTH
    while step * 2 <= min(longest / 4, cap):
        step *= 2
    return round_up(max(longest, 1), step)


class PackedCollator:
    """``[{input_ids, labels}, ...]`` -> one row with per-sequence positions and varlen keywords, rounded up to
    a multiple of ``multiple`` tokens by a filler sequence of ``filler_id`` tokens."""

    def __init__(self, multiple: int = 1, filler_id: int = 0) -> None:
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.multiple = multiple
        self.filler_id = filler_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor | int]:
        lengths = [len(b["input_ids"]) for b in batch]
        filler = -sum(lengths) % self.multiple
        ids = torch.tensor([t for b in batch for t in b["input_ids"]] + [self.filler_id] * filler, dtype=torch.long)
        labels = torch.tensor([t for b in batch for t in b["labels"]] + [IGNORE] * filler, dtype=torch.long)
        if filler:
            lengths.append(filler)
        cu = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
        labels[cu[:-1].long()] = IGNORE  # a sequence's first token is never a target (as in an unpacked row)
        positions = torch.cat([torch.arange(n, dtype=torch.long) for n in lengths])
        return {
            "input_ids": ids[None],
            "labels": labels[None],
            "position_ids": positions[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": max(lengths),
            "max_length_k": max(lengths),
            "use_cache": False,  # with a cache, transformers skips the packed-sequence mask (it checks for none)
        } | ({FILLER_KEY: filler} if filler else {})


def best_fit_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit decreasing: indices grouped so each group's total length is <= ``budget`` (a longer row alone).

    Longest first, each row goes into the open group whose remaining room it fills most tightly.
    """
    groups: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        best = min((r - n, g) for g, r in enumerate(room) if r >= n) if any(r >= n for r in room) else None
        if best is None:
            groups.append([i])
            room.append(budget - n)
        else:
            groups[best[1]].append(i)
            room[best[1]] -= n
    return groups


class BestFitBatchSampler(Sampler[list[int]]):
    """Token-budget micro-batches from ``best_fit_batches``, in a fresh seeded order every epoch."""

    def __init__(self, lengths: Sequence[int], budget: int, seed: int = 0) -> None:
        self.groups = best_fit_batches(lengths, budget)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.groups)))
        random.Random(self.seed + self.epoch).shuffle(order)
        self.epoch += 1
        return iter([self.groups[g] for g in order])
