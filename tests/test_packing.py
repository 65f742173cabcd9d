"""Padding-free packing and best-fit batching: boundaries kept, losses unchanged, every row used once."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from ftatlas.data.packing import PAD_WIDTH, BestFitBatchSampler, PackedCollator, best_fit_batches, padded_width
from ftatlas.data.templating import IGNORE
from ftatlas.models.packed_attention import NAME, PAD_ATTR, use_varlen_attention


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


def test_filler_rounds_the_row_up_as_its_own_sequence_without_loss():
    batch = PackedCollator(multiple=8, filler_id=7)(rows([5, 3, 4]))
    assert batch["input_ids"].shape == (1, 16) and batch["filler_tokens"] == 4
    assert batch["input_ids"][0, 12:].tolist() == [7] * 4 and (batch["labels"][0, 12:] == IGNORE).all()
    assert batch["position_ids"][0, 12:].tolist() == [0, 1, 2, 3]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 12, 16]
    exact = PackedCollator(multiple=4)(rows([5, 3, 4]))  # 12 tokens: already a multiple, no filler
    assert exact["input_ids"].shape == (1, 12) and "filler_tokens" not in exact
    with pytest.raises(ValueError, match="multiple"):
        PackedCollator(multiple=0)


def per_sequence_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=IGNORE, reduction="sum")


@pytest.mark.parametrize(("attention", "multiple"), [("sdpa", 1), (NAME, 1), ("sdpa", 64), (NAME, 64)])
def test_packed_losses_equal_unpacked_per_sequence(tiny_model, attention, multiple):
    """The filler (multiple=64: 94 tokens -> 128) is one more sequence; the real ones' losses are unchanged."""
    data = rows([17, 40, 9, 28], seed=1)
    tiny_model.eval()
    with torch.no_grad():
        alone = [per_sequence_losses(tiny_model(input_ids=torch.tensor([r["input_ids"]])).logits[0],
                                     torch.tensor(r["labels"])) for r in data]
        if attention == NAME:
            assert use_varlen_attention(tiny_model, pad_multiple=multiple)  # each sequence padded to 64 too
            assert tiny_model.config._attn_implementation == NAME
            assert {getattr(m, PAD_ATTR, None) for m in tiny_model.modules() if type(m).__name__ == "LlamaAttention"
                    } == {multiple}
        batch = PackedCollator(multiple)(data)
        labels = batch.pop("labels")[0]
        filler = batch.pop("filler_tokens", 0)
        logits = tiny_model(**batch).logits[0]
    assert filler == (34 if multiple == 64 else 0)
    cu = batch["cu_seq_lens_q"].tolist()[:5]
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


@pytest.mark.parametrize("longest, cap, width", [
    (1, 64, 8), (40, 64, 40), (41, 64, 48), (100, 64, 112), (161, 64, 192), (181, 64, 192), (200, 64, 224),
    (1000, 64, 1024), (1000, 16, 1008), (181, 1, 184),
])
def test_padded_width_is_a_few_shapes_per_doubling(longest, cap, width):
    """Rounded up to a power of two <= longest / 4, between PAD_WIDTH and the cap (train.pad_multiple)."""
    assert padded_width(longest, cap) == width


def test_padded_widths_waste_at_most_a_quarter_and_repeat():
    widths = {n: padded_width(n) for n in range(1, 2049)}
    assert all(n <= w < n + max(PAD_WIDTH, n / 4) for n, w in widths.items())
    assert len({widths[n] for n in range(161, 193)}) == 1  # rows of 161-192 tokens: one shape, not four
    assert len(set(widths[n] for n in range(1025, 2049))) == 16  # the cap: 64-token steps


def test_pad_collator_pads_to_the_padded_width(tokenizer):
    from ftatlas.objectives.sft import PadCollator

    batch = PadCollator(tokenizer, cap=64)([{"input_ids": [5] * n, "labels": [5] * n} for n in (170, 181)])
    assert batch["input_ids"].shape == (2, 192)
    assert batch["attention_mask"].sum().item() == 351 and (batch["labels"][1, 181:] == IGNORE).all()
