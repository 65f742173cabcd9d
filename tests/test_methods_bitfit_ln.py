"""BitFit and LN-tuning: exact trainable sets, unchanged outputs at start, learning, save/reload and merge."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ftatlas.methods import METHODS, count_params

LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def apply(name, model, **params):
    m = METHODS.get(name)
    return m().apply(model, m.Params(**params))


def batch(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (4, 16), generator=torch.Generator().manual_seed(1))


def logits(model, ids) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def train_steps(model, ids, steps: int = 5) -> tuple[float, float]:
    """A few AdamW steps on one fixed batch; returns (first loss, loss after training)."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps + 1):
        loss = model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return losses[0], losses[-1]


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64))


def tiny_qwen2():
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def fresh_llama(tok):
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(tok))


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_qwen2], ids=["gpt2", "qwen2"])
def test_bitfit_trains_exactly_the_existing_biases(make):
    model = make()
    expected = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    assert expected > 0
    pc = count_params(apply("bitfit", model))
    assert pc.trainable == expected
    assert all(p.requires_grad == n.endswith(".bias") for n, p in model.named_parameters())


def test_bitfit_gpt2_includes_layernorm_biases():
    model = apply("bitfit", tiny_gpt2())
    assert model.transformer.ln_f.bias.requires_grad and model.transformer.h[0].ln_1.bias.requires_grad


def test_bitfit_without_biases_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"0 bias parameters.*add_bias"):
        apply("bitfit", tiny_model)


def test_bitfit_add_bias_needs_llama_style_flags():
    with pytest.raises(ValueError, match=r"'gpt2'.*attention_bias/mlp_bias"):
        apply("bitfit", tiny_gpt2(), add_bias=True)


@pytest.mark.parametrize("targets, message", [(["q_proj", "v_proj"], "whole group"), (["c_attn"], "unknown")])
def test_bitfit_targets_are_whole_known_groups(targets, message):
    with pytest.raises(ValueError, match=message):
        METHODS.get("bitfit").Params(add_bias=True, targets=targets)


@pytest.mark.parametrize("targets", [LINEARS, LINEARS[:4], LINEARS[4:]], ids=["all", "attention", "mlp"])
def test_bitfit_add_bias_count(tiny_model, targets):
    cfg = tiny_model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    out = {"q_proj": cfg.num_attention_heads * head_dim, "k_proj": cfg.num_key_value_heads * head_dim,
           "v_proj": cfg.num_key_value_heads * head_dim, "o_proj": cfg.hidden_size,
           "gate_proj": cfg.intermediate_size, "up_proj": cfg.intermediate_size, "down_proj": cfg.hidden_size}
    total = count_params(tiny_model).total
    pc = count_params(apply("bitfit", tiny_model, add_bias=True, targets=targets))
    expected = cfg.num_hidden_layers * sum(out[t] for t in targets)
    assert pc.trainable == expected and pc.total == total + expected


def test_bitfit_add_bias_starts_unchanged_learns_and_reloads(tiny_model, tmp_path):
    ids = batch(tiny_model.config.vocab_size)
    before = logits(tiny_model, ids)
    model = apply("bitfit", tiny_model, add_bias=True)
    torch.testing.assert_close(logits(model, ids), before)
    first, last = train_steps(model, ids)
    assert last < first
    model.save_pretrained(tmp_path)
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids))


@pytest.mark.filterwarnings("ignore:Unsupported layer type:UserWarning")  # peft's loader, on every norm
def test_lntuning_count_learns_reloads_and_merges(tokenizer, tmp_path):
    base = fresh_llama(tokenizer)
    cfg = base.config
    ids = batch(cfg.vocab_size)
    model = apply("lntuning", base)
    assert count_params(model).trainable == cfg.num_hidden_layers * 2 * cfg.hidden_size + cfg.hidden_size
    first, last = train_steps(model, ids)
    assert last < first
    trained = logits(model, ids)
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(fresh_llama(tokenizer), tmp_path)
    torch.testing.assert_close(logits(reloaded, ids), trained)
    merged = model.merge_and_unload()
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(logits(merged, ids), trained)
