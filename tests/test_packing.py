"""Padding-free packing and best-fit batching: boundaries kept, losses unchanged, every row used once."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from ftatlas.data.packing import BestFitBatchSampler, PackedCollator, best_fit_batches
from ftatlas.data.templating import IGNORE
from ftatlas.models.packed_attention import NAME, use_varlen_attention


def rows(lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rng.randrange(10, 2000) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [IGNORE] * (n // 3) + ids[n // 3:]})
    return out


def test_collator_restarts_positions_and_masks_each_first_label():
    batch = PackedCollator()(rows([5, 3, 4]))
    assert batch["input_ids"].shape == (1, 12)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 12] and batch["max_length_q"] == 5
    assert all(batch["labels"][0, s].item() == IGNORE for s in (0, 5, 8))
    assert batch["use_cache"] is False  # a cache would make transformers skip the packed mask


def per_sequence_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=IGNORE, reduction="sum")


@pytest.mark.parametrize("attention", ["sdpa", NAME])
def test_packed_losses_equal_unpacked_per_sequence(tiny_model, attention):
    data = rows([17, 40, 9, 28], seed=1)
    tiny_model.eval()
    with torch.no_grad():
        alone = [per_sequence_losses(tiny_model(input_ids=torch.tensor([r["input_ids"]])).logits[0],
                                     torch.tensor(r["labels"])) for r in data]
        if attention == NAME:
            assert use_varlen_attention(tiny_model) and tiny_model.config._attn_implementation == NAME
        batch = PackedCollator()(data)
        labels = batch.pop("labels")[0]
        logits = tiny_model(**batch).logits[0]
    cu = batch["cu_seq_lens_q"].tolist()
    packed = [per_sequence_losses(logits[s:e], labels[s:e]) for s, e in zip(cu[:-1], cu[1:], strict=True)]
    torch.testing.assert_close(torch.stack(packed), torch.stack(alone), rtol=1e-5, atol=1e-5)
    # the whole-row loss also equals the sum: the boundary positions carry no loss
    whole = F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(whole, torch.stack(alone).sum(), rtol=1e-5, atol=1e-4)


def test_cross_sequence_attention_would_change_the_loss(tiny_model):
    """Guard that the test above can fail: without restarting positions/boundaries the losses differ."""
    data = rows([17, 40], seed=2)
    tiny_model.eval()
    with torch.no_grad():
        alone = per_sequence_losses(tiny_model(input_ids=torch.tensor([data[1]["input_ids"]])).logits[0],
                                    torch.tensor(data[1]["labels"]))
        ids = torch.tensor([data[0]["input_ids"] + data[1]["input_ids"]])
        mixed = per_sequence_losses(tiny_model(input_ids=ids).logits[0, 17:], torch.tensor(data[1]["labels"]))
    assert abs(mixed.item() - alone.item()) > 1e-3


def test_varlen_attention_keeps_padded_generation_inputs_exact(tiny_model):
    """Padded batches (generation, eval) go through sdpa unchanged under the varlen implementation."""
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    tiny_model.eval()
    with torch.no_grad():
        ref = tiny_model(input_ids=ids, attention_mask=mask).logits
        use_varlen_attention(tiny_model)
        got = tiny_model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], ref[mask.bool()])


def test_best_fit_respects_budget_and_uses_every_row_once():
    rng = random.Random(0)
    lengths = [rng.randint(30, 1000) for _ in range(200)]
    groups = best_fit_batches(lengths, 2048)
    assert sorted(i for g in groups for i in g) == list(range(200))
    assert all(sum(lengths[i] for i in g) <= 2048 for g in groups)
    assert len(groups) <= -(-sum(lengths) // 2048) + 3  # near the lower bound: bins are nearly full
    assert best_fit_batches([5000, 10], 2048) == [[0], [1]]  # a row longer than the budget goes alone


def test_best_fit_sampler_reshuffles_each_epoch():
    sampler = BestFitBatchSampler([50] * 40, 200, seed=3)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 10
    assert sorted(map(sorted, first)) == sorted(map(sorted, second)) and first != second
