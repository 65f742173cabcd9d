"""Each method trains exactly the parameters it claims; counts checked against formulas from the config."""

from __future__ import annotations

import pytest

from ftatlas.methods import METHODS, count_params


def apply(name, model, **params):
    m = METHODS.get(name)
    return m().apply(model, m.Params(**params))


def numel(module):
    return sum(p.numel() for p in module.parameters())


def lora_formula(cfg, r, targets):
    """r * (in + out) per adapted linear, from the config alone."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return cfg.num_hidden_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def test_registry_lists_foundation_methods():
    assert {"full", "freeze", "lora"} <= set(METHODS.names())


def test_full_trains_everything(tiny_model):
    total = count_params(tiny_model).total
    pc = count_params(apply("full", tiny_model))
    assert pc.trainable == pc.total == total


def test_count_params_counts_tied_embeddings_once(tiny_model):
    cfg = tiny_model.config
    assert tiny_model.get_output_embeddings().weight is tiny_model.get_input_embeddings().weight
    per_layer = numel(tiny_model.model.layers[0])
    expected = cfg.vocab_size * cfg.hidden_size + cfg.num_hidden_layers * per_layer + cfg.hidden_size
    assert count_params(tiny_model).total == expected


def test_freeze_top_n_and_norm(tiny_model):
    layers = tiny_model.model.layers
    pc = count_params(apply("freeze", tiny_model, top_n=1, norm=True))
    assert pc.trainable == numel(layers[-1]) + numel(tiny_model.model.norm)
    assert not any(p.requires_grad for p in layers[0].parameters())


def test_freeze_head_on_tied_model_trains_the_shared_matrix(tiny_model):
    cfg = tiny_model.config
    pc = count_params(apply("freeze", tiny_model, top_n=0, norm=False, head=True))
    assert pc.trainable == cfg.vocab_size * cfg.hidden_size


def test_freeze_named_layers_and_modules(tiny_model):
    pc = count_params(apply("freeze", tiny_model, top_n=0, norm=False, layers=[0], modules=[r"\.q_proj\."]))
    q1 = numel(tiny_model.model.layers[1].self_attn.q_proj)
    assert pc.trainable == numel(tiny_model.model.layers[0]) + q1


@pytest.mark.parametrize("params, message", [
    ({"top_n": 0, "norm": False}, "nothing left to train"),
    ({"layers": [5]}, "out of range"),
    ({"modules": ["no_such_module"]}, "matches no parameter"),
])
def test_freeze_bad_choices_are_clear_errors(tiny_model, params, message):
    with pytest.raises(ValueError, match=message):
        apply("freeze", tiny_model, **params)


def test_lora_all_linear_count(tiny_model):
    cfg = tiny_model.config
    total_before = count_params(tiny_model).total
    pc = count_params(apply("lora", tiny_model, r=4))
    expected = lora_formula(cfg, 4, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert pc.trainable == expected
    assert pc.total == total_before + expected


def test_lora_chosen_targets(tiny_model):
    pc = count_params(apply("lora", tiny_model, r=8, target_modules=["q_proj", "v_proj"]))
    assert pc.trainable == lora_formula(tiny_model.config, 8, ["q_proj", "v_proj"])


def test_dora_adds_one_magnitude_per_output_feature(tiny_model):
    cfg = tiny_model.config
    kv = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    pc = count_params(apply("lora", tiny_model, r=4, target_modules=["q_proj", "v_proj"], use_dora=True))
    assert pc.trainable == lora_formula(cfg, 4, ["q_proj", "v_proj"]) + cfg.num_hidden_layers * (cfg.hidden_size + kv)


def test_lora_unknown_target_lists_real_module_names(tiny_model):
    with pytest.raises(ValueError, match=r"q_proj.*v_proj|Linear module names"):
        apply("lora", tiny_model, target_modules=["attn_c"])
