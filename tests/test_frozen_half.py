"""Frozen base weights stored in bf16 under bf16 autocast: same loss and adapter gradients, fp32 kept where trained."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, get_peft_model

from ftatlas.models.frozen import store_frozen_linears


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_frozen_linears_in_bf16_keep_the_autocast_math(tiny_model):
    model = get_peft_model(tiny_model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights="gaussian"))
    ids = torch.randint(10, 3000, (2, 24), generator=torch.Generator().manual_seed(0))
    want_loss, want = loss_and_grads(model, ids)
    half = copy.deepcopy(model)
    saved = store_frozen_linears(half, torch.bfloat16)
    got_loss, got = loss_and_grads(half, ids)
    layer = half.get_base_model().model.layers[0]
    assert layer.self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert layer.self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32  # trained: fp32 master weights
    assert half.get_base_model().model.embed_tokens.weight.dtype == torch.float32  # residual stream stays fp32
    assert saved == 2 * sum(p.numel() for n, p in half.named_parameters() if p.dtype == torch.bfloat16)
    torch.testing.assert_close(got_loss, want_loss)
    assert want.keys() == got.keys() and want
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-3, atol=1e-6, msg=k)


def test_halving_a_mapped_model_leaves_no_tensor_on_the_weights_file(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from ftatlas.models.frozen import file_mappings

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    def mapped() -> list[str]:
        ranges = file_mappings()
        return [n for n, p in model.named_parameters() if any(lo <= p.data_ptr() < hi for lo, hi in ranges)]

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert mapped(), "control: from_pretrained should map the safetensors file"
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    store_frozen_linears(model, torch.bfloat16)
    assert mapped() == []  # the file mapping, and with it the fp32 pages of the halved weights, can go
    for n, p in model.get_base_model().named_parameters():
        if n in before:
            torch.testing.assert_close(p.float(), before[n].float(), rtol=1e-2, atol=1e-2)
