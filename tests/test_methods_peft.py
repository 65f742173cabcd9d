"""The peft-backed methods beyond LoRA: trainable counts from config formulas, clear errors, merge notes,
and train -> generate -> save -> reload on the tiny Llama."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ftatlas.methods import METHODS, count_params

WEIGHT_METHODS = ["ia3", "loha", "lokr", "vera"]
PROMPT_METHODS = ["adapter", "prefix", "prompt", "ptuning"]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def apply(name, model, **params):
    m = METHODS.get(name)
    return m().apply(model, m.Params(**params))


def dims(cfg):
    """(in, out) of every Llama linear, from the config alone."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def only_trainable_under(model, marker):
    """Independent count: numel of params whose name contains marker; and nothing else trains."""
    seen, n = set(), 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert marker in name, f"{name} trains but is not part of the {marker} tuner"
        if marker in name and id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def test_registry_has_the_peft_methods():
    assert set(WEIGHT_METHODS + PROMPT_METHODS) <= set(METHODS.names())


def test_ia3_scales_kv_outputs_and_ffn_input(tiny_model):
    cfg, d = tiny_model.config, dims(tiny_model.config)
    pc = count_params(apply("ia3", tiny_model))
    # k/v scale their outputs; down_proj (feed-forward) scales its input (intermediate size)
    assert pc.trainable == cfg.num_hidden_layers * (d["k_proj"][1] + d["v_proj"][1] + d["down_proj"][0])


def test_loha_is_two_lora_sized_pairs(tiny_model):
    cfg, d = tiny_model.config, dims(tiny_model.config)
    pc = count_params(apply("loha", tiny_model, r=4))
    assert pc.trainable == cfg.num_hidden_layers * sum(2 * 4 * (d[t][0] + d[t][1]) for t in ALL_LINEAR)


def test_lokr_trains_only_its_factors(tiny_model):
    model = apply("lokr", tiny_model, r=4, target_modules=["q_proj", "down_proj"])
    n = only_trainable_under(model, "lokr_")
    assert n > 0 and count_params(model).trainable == n


def test_vera_trains_two_vectors_per_layer(tiny_model):
    cfg, d = tiny_model.config, dims(tiny_model.config)
    pc = count_params(apply("vera", tiny_model, r=32))
    assert pc.trainable == cfg.num_hidden_layers * sum(d[t][1] + 32 for t in ALL_LINEAR)


def test_adapter_prompts_and_gates(tiny_model):
    cfg = tiny_model.config
    pc = count_params(apply("adapter", tiny_model, adapter_len=4, adapter_layers=1))
    assert pc.trainable == 4 * cfg.hidden_size + 1


def test_adapter_defaults_to_every_layer(tiny_model):
    cfg = tiny_model.config
    pc = count_params(apply("adapter", tiny_model, adapter_len=3))
    assert pc.trainable == cfg.num_hidden_layers * (3 * cfg.hidden_size + 1)


def test_prefix_uses_the_gqa_key_value_width(tiny_model):
    cfg = tiny_model.config
    kv_width = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)  # not hidden_size
    assert kv_width != cfg.hidden_size
    pc = count_params(apply("prefix", tiny_model, num_virtual_tokens=4))
    assert pc.trainable == 4 * cfg.num_hidden_layers * 2 * kv_width


def test_prefix_projection_mlp(tiny_model):
    cfg = tiny_model.config
    w = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    e, out = 16, cfg.num_hidden_layers * 2 * w
    pc = count_params(apply("prefix", tiny_model, num_virtual_tokens=4, prefix_projection=True, encoder_hidden_size=e))
    assert pc.trainable == 4 * w + (w * e + e) + (e * out + out)


def test_prompt_is_virtual_tokens_times_hidden(tiny_model):
    pc = count_params(apply("prompt", tiny_model, num_virtual_tokens=5))
    assert pc.trainable == 5 * tiny_model.config.hidden_size


@pytest.mark.parametrize("kind", ["MLP", "LSTM"])
def test_ptuning_trains_only_its_prompt_encoder(tiny_model, kind):
    model = apply("ptuning", tiny_model, num_virtual_tokens=4, encoder_reparameterization_type=kind)
    n = only_trainable_under(model, "prompt_encoder")
    assert n > 4 * tiny_model.config.hidden_size and count_params(model).trainable == n


def test_prompt_text_init_starts_from_the_text_embeddings(tiny_model_dir, tokenizer):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    text = "Extract the requested fields."
    model = apply("prompt", base, num_virtual_tokens=4, init="text", init_text=text)
    ids = tokenizer(text)["input_ids"][:4]
    prompt = model.prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(prompt, base.get_input_embeddings().weight[ids])


@pytest.mark.parametrize("name", WEIGHT_METHODS)
def test_weight_method_unknown_target_lists_real_module_names(tiny_model, name):
    extra = {"feedforward_modules": []} if name == "ia3" else {}
    with pytest.raises(ValueError, match=r"Linear module names in this model: .*q_proj"):
        apply(name, tiny_model, target_modules=["attn_c"], **extra)


@pytest.mark.parametrize("name, params, message", [
    ("ia3", {"feedforward_modules": ["up_proj"]}, "subset of target_modules"),
    ("lokr", {"decompose_factor": 0}, "decompose_factor"),
    ("loha", {"rank": 4}, "Extra inputs"),
    ("adapter", {"adapter_layers": 5}, "only 2 decoder layers"),
    ("prompt", {"init": "text"}, "not a local directory"),
    ("prompt", {"num_virtual_tokens": 0}, "greater than or equal to 1"),
    ("ptuning", {"encoder_reparameterization_type": "GRU"}, "MLP"),
])
def test_bad_params_are_clear_errors(tiny_model, name, params, message):
    with pytest.raises(ValueError, match=message):
        apply(name, tiny_model, **params)


def test_adapter_refuses_unsupported_model_types(tokenizer):
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="supports model types llama"):
        apply("adapter", model)


def test_prefix_refuses_gradient_checkpointing(tiny_model):
    model = apply("prefix", tiny_model, num_virtual_tokens=4)
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        model(input_ids=torch.tensor([[1, 2, 3]]))


def test_merge_notes():
    for name in PROMPT_METHODS:
        assert METHODS.get(name).merge_note, name
    for name in WEIGHT_METHODS:
        assert METHODS.get(name).merge_note is None, name


SMALL = {"ia3": {}, "loha": {"r": 2}, "lokr": {"r": 2}, "vera": {"r": 16}, "adapter": {"adapter_len": 3},
         "prefix": {"num_virtual_tokens": 3}, "prompt": {"num_virtual_tokens": 3}, "ptuning": {"num_virtual_tokens": 3}}


@pytest.mark.parametrize("name", WEIGHT_METHODS + PROMPT_METHODS)
def test_backward_generate_and_reload(tiny_model_dir, tokenizer, tmp_path, name):
    model = apply(name, AutoModelForCausalLM.from_pretrained(tiny_model_dir), **SMALL[name])
    ids = torch.tensor([[1, 20, 300, 4000, 5, 60]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    with torch.no_grad():  # move off the (often zero-effect) init so the reload check means something
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert ids.shape[1] < out.shape[1] <= ids.shape[1] + 3
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, before)


@pytest.mark.parametrize("name", WEIGHT_METHODS + PROMPT_METHODS)
def test_greedy_generation_matches_the_trained_forward(tiny_model_dir, name):
    """generate() continues as the adapted model's own forward does (a prefix once went missing in generation:
    peft and transformers 5 name the cache differently) and unlike the base model."""
    torch.manual_seed(0)
    model = apply(name, AutoModelForCausalLM.from_pretrained(tiny_model_dir), **SMALL[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn_like(p))
        ids = torch.tensor([[1, 20, 300, 4000, 5, 60]])
        want = ids
        for _ in range(4):  # greedy by hand, one full forward per token
            want = torch.cat([want, model(input_ids=want).logits[:, -1:].argmax(-1)], dim=1)
        got = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                             min_new_tokens=4)
        first = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                               do_sample=False, output_logits=True, return_dict_in_generate=True).logits[0]
        with model.disable_adapter():
            base = model(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(first, model(input_ids=ids).logits[:, -1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first, base, atol=1e-3), "generation ignored the adapter"
    assert torch.equal(got, want)
