"""Padding-free packing: a micro-batch's sequences laid end to end in one row, boundaries kept.

``PackedCollator`` concatenates the examples of a micro-batch into a single ``[1, T]`` row with
``position_ids`` restarting at 0 for every sequence and the first label of each sequence masked
(so the last token of one sequence never learns to predict the first of the next). It also passes
``cu_seq_lens_q/k`` and ``max_length_q/k``, the varlen keywords transformers forwards to the attention
function: ``models/packed_attention.py`` runs causal attention per sequence from them. Without that
attention, transformers still sees the restarting ``position_ids`` and builds a block-diagonal mask
(only when no KV cache is in play, hence ``use_cache=False`` in the batch), so attention never
crosses sequences either way (just more slowly).

``best_fit_batches`` groups examples by a token budget instead of a fixed count (best-fit decreasing),
so every micro-batch carries about the same number of tokens and peak memory is bounded by the budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ftatlas.data.templating import IGNORE


class PackedCollator:
    """``[{input_ids, labels}, ...]`` -> one padding-free row with per-sequence positions and varlen keywords."""

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor | int]:
        lengths = [len(b["input_ids"]) for b in batch]
        ids = torch.tensor([t for b in batch for t in b["input_ids"]], dtype=torch.long)
        labels = torch.tensor([t for b in batch for t in b["labels"]], dtype=torch.long)
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
        }


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
