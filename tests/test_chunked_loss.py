"""Chunked cross-entropy: same loss and gradients as the model's own loss, plain and under PEFT LoRA."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

from ftatlas.data.packing import PackedCollator
from ftatlas.data.templating import IGNORE
from ftatlas.models import chunked_ce
from ftatlas.models.chunked_ce import (
    LossWorkspace,
    chunked_lm_loss_sum,
    linear_cross_entropy_sum,
    rewrites_inputs,
    split_lm,
)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 3000, (3, 37), generator=g)
    labels = ids.clone()
    labels[:, :11] = IGNORE
    labels[1, 30:] = IGNORE
    return {"input_ids": ids, "labels": labels}


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_loss_and_grads(model: torch.nn.Module, multiple: int = 1) -> None:
    b = batch()
    ref = model(**b).loss
    ref.backward()
    want = grads(model)
    total, n = chunked_lm_loss_sum(model, b, chunk=13, multiple=multiple)  # chunks that do not divide the rows
    loss = total / n
    loss.backward()
    got = grads(model)
    assert n == int((b["labels"][:, 1:] != IGNORE).sum())
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert want.keys() == got.keys() and want
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.parametrize("multiple", [1, 8])
def test_full_model_loss_and_grads_match_including_tied_head(tiny_model, multiple):
    """multiple=8: every chunk's rows padded with zero rows (13 -> 16, the 12-row tail -> 16) change nothing."""
    assert tiny_model.lm_head.weight is tiny_model.model.embed_tokens.weight  # tied: head grad adds to embeddings
    assert_same_loss_and_grads(tiny_model, multiple)


def test_peft_lora_loss_and_grads_match(tiny_model):
    model = get_peft_model(tiny_model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights="gaussian"))
    assert split_lm(model) is not None
    assert_same_loss_and_grads(model)


def test_bf16_autocast_stays_close_to_the_models_own_loss(tiny_model):
    b = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = tiny_model(**b).loss
        total, n = chunked_lm_loss_sum(tiny_model, b, chunk=16)
    assert abs((total / n).item() - ref.item()) / ref.item() < 1e-2


def test_packed_chunked_loss_is_the_sum_of_per_sequence_losses(tiny_model):
    b = batch()
    rows = [{"input_ids": b["input_ids"][i].tolist(), "labels": b["labels"][i].tolist()} for i in range(3)]
    with torch.no_grad():
        packed, n_packed = chunked_lm_loss_sum(tiny_model, PackedCollator()(rows))
        alone = [chunked_lm_loss_sum(tiny_model, {k: v[i:i + 1] for k, v in b.items()}) for i in range(3)]
    assert n_packed == sum(n for _, n in alone)
    torch.testing.assert_close(packed, sum(s for s, _ in alone), rtol=1e-5, atol=1e-4)


def test_padding_rows_reach_the_matmuls_rounded_up(monkeypatch):
    """The LM head matmuls see row counts rounded up to the multiple (what makes shapes repeat)."""
    seen = []
    real, real_mm = torch.Tensor.__matmul__, torch.mm

    def spy(a, b):
        seen.append(a.shape[0])
        return real(a, b)

    def spy_mm(a, b, **kw):  # the logits: rows x head slice
        seen.append(a.shape[0])
        return real_mm(a, b, **kw)

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy)
    monkeypatch.setattr(torch, "mm", spy_mm)
    h = torch.randn(21, 8, requires_grad=True)
    linear_cross_entropy_sum(h, torch.randn(20, 8), torch.randint(0, 20, (21,)), chunk=16, multiple=8)
    assert seen == [16, 16, 8, 8]  # logits and input gradient of the 16-row chunk, then of the 5-row tail as 8


def test_chunks_share_two_vocab_wide_buffers(monkeypatch):
    """Every chunk's logits land in one preallocated buffer (no vocab-wide allocation per chunk), and the
    loss and gradients still match the plain computation in bf16 as in fp32."""
    outs = []
    real_mm = torch.mm

    def spy_mm(a, b, **kw):
        outs.append(kw["out"].data_ptr() if "out" in kw else None)
        return real_mm(a, b, **kw)

    monkeypatch.setattr(torch, "mm", spy_mm)
    for dtype in (torch.float32, torch.bfloat16):
        outs.clear()
        torch.manual_seed(0)
        h = torch.randn(45, 8, requires_grad=True)
        w = torch.randn(30, 8, requires_grad=True)
        t = torch.randint(0, 30, (45,))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            got = linear_cross_entropy_sum(h, w, t, chunk=16, multiple=8)
        got.backward()
        assert len(outs) == 3 and None not in outs and len(set(outs)) == 1
        h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        logits = (h2.to(dtype) @ w2.to(dtype).T).float()
        want = torch.nn.functional.cross_entropy(logits, t, reduction="sum")
        want.backward()
        tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(got, want, **tol)
        torch.testing.assert_close(h.grad, h2.grad, **tol)
        torch.testing.assert_close(w.grad, w2.grad, **tol)


def test_head_is_cast_a_vocab_slice_at_a_time(monkeypatch):
    """Under autocast the fp32 head is cast to bf16 in slices of about VOCAB_SLICE_BYTES (never whole); each
    slice's logits land in the workspace buffer, and loss and gradients (input and a trained head's) equal the
    one-slice computation."""
    torch.manual_seed(0)
    h = torch.randn(45, 8, requires_grad=True)
    w = torch.randn(30, 8, requires_grad=True)
    t = torch.randint(0, 30, (45,))
    results, seen, real_mm = [], [], torch.mm

    def spy_mm(a, b, **kw):  # (head rows cast, offset of the logits in the buffer)
        seen.append((b.shape[1], kw["out"].data_ptr() - kw["out"].untyped_storage().data_ptr()))
        return real_mm(a, b, **kw)

    for rows_per_slice in (30, 7):  # 7-row slices: 7, 7, 7, 7, 2
        monkeypatch.setattr(chunked_ce, "VOCAB_SLICE_BYTES", rows_per_slice * 8 * 2)
        seen.clear()
        monkeypatch.setattr(torch, "mm", spy_mm)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = linear_cross_entropy_sum(h, w, t, chunk=16, multiple=8)
        monkeypatch.setattr(torch, "mm", real_mm)
        loss.backward()
        results.append((loss.detach(), h.grad, w.grad))
        h.grad = w.grad = None
        slices = 1 if rows_per_slice == 30 else 5
        assert len(seen) == 3 * slices and max(n for n, _ in seen) == rows_per_slice
    assert seen[:5] == [(7, 0), (7, 7 * 2), (7, 14 * 2), (7, 21 * 2), (2, 28 * 2)]  # columns of the bf16 buffer
    for whole, sliced in zip(*results, strict=True):
        torch.testing.assert_close(sliced, whole, rtol=1e-2, atol=1e-2)


def test_workspace_keeps_its_buffers_between_calls(monkeypatch):
    """With a workspace, every call's logits land in the same buffer, results equal those without one, and a
    new shape (or release) replaces the pair."""
    outs = []
    real_mm = torch.mm

    def spy_mm(a, b, **kw):
        outs.append(kw["out"].data_ptr())
        return real_mm(a, b, **kw)

    torch.manual_seed(0)
    w, ws = torch.randn(30, 8), LossWorkspace()
    cases = [(torch.randn(n, 8), torch.randint(0, 30, (n,))) for n in (45, 21, 9)]
    plain = [linear_cross_entropy_sum(h, w, t, chunk=16, multiple=8) for h, t in cases]
    monkeypatch.setattr(torch, "mm", spy_mm)
    kept = [linear_cross_entropy_sum(h, w, t, chunk=16, multiple=8, workspace=ws) for h, t in cases]
    torch.testing.assert_close(kept, plain)
    buffer = ws.buffers(16, 30, torch.float32, torch.device("cpu"))[0]
    assert len(outs) == 3 + 2 + 1 and set(outs) == {buffer.data_ptr()}
    assert ws.buffers(32, 30, torch.float32, torch.device("cpu"))[0].shape == (32, 30)
    ws.release()
    assert ws._buffers is None


def test_no_loss_rows_give_zero_with_a_graph():
    h = torch.randn(4, 8, requires_grad=True)
    loss = linear_cross_entropy_sum(h, torch.randn(20, 8), torch.full((4,), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and h.grad is not None


@pytest.mark.parametrize("config", [
    PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_hidden_size=16),
    PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
], ids=["prompt", "ptuning", "prefix"])
def test_prompt_learning_loss_and_grads_match_through_its_own_forward(tiny_model, config):
    """Virtual tokens (prompt, p-tuning) or a KV prefix come from PEFT's forward; the loss is still chunked."""
    assert not rewrites_inputs(tiny_model)
    model = get_peft_model(tiny_model, config)
    assert rewrites_inputs(model) and split_lm(model) is not None
    assert_same_loss_and_grads(model, multiple=8)


def test_prompt_learning_forward_stops_before_the_models_own_head(tiny_model):
    """The model's LM head never runs in the chunked path: under autocast it would cast the whole head weight for
    logits nobody reads (SmolLM2: a 54 MiB copy per step); the head's weight only enters through the chunked loss."""
    model = get_peft_model(tiny_model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    calls = []
    tiny_model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    total, n = chunked_lm_loss_sum(model, batch(), chunk=13)
    total.backward()
    assert calls == [] and n > 0 and torch.isfinite(total)
    decoder, _head = split_lm(model)
    assert not decoder._forward_hooks  # the stopping hook is removed again
