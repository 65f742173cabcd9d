"""Step two of recipe validation (ftatlas.resolve): axis names, each axis' own params, cross-axis checks, and the
resolved params the rest of ftatlas reads."""

from __future__ import annotations

import pytest

from ftatlas.methods.freeze import FreezeParams
from ftatlas.methods.lora import LoraParams
from ftatlas.recipe import RecipeError
from ftatlas.resolve import build_recipe

MINIMAL = {"data": {"builtin": "contacts"}}


def build_error(data: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        build_recipe(data, overrides)
    return str(info.value)


# --- methods and objectives -------------------------------------------------------------------------------------


def test_unknown_method_lists_known():
    msg = build_error(MINIMAL, ["method=lorra"])
    assert "unknown method 'lorra'" in msg
    assert "known: " in msg and all(m in msg for m in ("freeze", "full", "lora", "qlora", "prefix"))


def test_unknown_objective_lists_known():
    msg = build_error({**MINIMAL, "objective": "dpoo"})
    assert "unknown objective 'dpoo'" in msg
    assert "sft" in msg


def test_lora_field_in_freeze_run_fails():
    msg = build_error({**MINIMAL, "method": {"name": "freeze", "r": 8}})
    assert "method.r" in msg
    assert "unknown key" in msg
    assert "'freeze'" in msg


def test_params_in_full_run_fail():
    msg = build_error({**MINIMAL, "method": {"name": "full", "top_n": 2}})
    assert "method.top_n" in msg


def test_bad_lora_value_names_field():
    msg = build_error({**MINIMAL, "method": {"name": "lora"}}, ["method.r=0"])
    assert "method.r" in msg
    assert "greater than or equal to 1" in msg
    assert "(got 0)" in msg


def test_bad_lora_literal():
    msg = build_error({**MINIMAL, "method": {"name": "lora", "bias": "some"}})
    assert "method.bias" in msg
    assert "'lora_only'" in msg


def test_method_without_name():
    msg = build_error({**MINIMAL, "method": {"r": 8}})
    assert "method.name" in msg


# --- method_params / objective_params ---------------------------------------------------------------------------


def test_method_params_applies_overrides_and_defaults():
    r = build_recipe({**MINIMAL, "method": {"name": "lora", "r": 4}}, ["method.use_dora=true"])
    p = r.method_params()
    assert isinstance(p, LoraParams)
    assert p.r == 4
    assert p.use_dora is True
    assert p.alpha == LoraParams().alpha  # untouched fields keep the module's defaults
    assert p.dropout == 0.0  # peft's default: no dropped copy of each adapted layer's input


def test_method_params_default_lora():
    p = build_recipe(MINIMAL).method_params()
    assert isinstance(p, LoraParams)
    assert p == LoraParams()


def test_method_params_freeze():
    r = build_recipe({**MINIMAL, "method": {"name": "freeze", "top_n": 1, "layers": [-1, 0], "head": True}})
    p = r.method_params()
    assert isinstance(p, FreezeParams)
    assert (p.top_n, p.layers, p.head, p.norm) == (1, [-1, 0], True, True)


def test_objective_params_default_and_sft_takes_no_params():
    assert build_recipe(MINIMAL).objective_params().model_dump() == {}
    msg = build_error({**MINIMAL, "objective": {"name": "sft", "beta": 0.1}})
    assert "objective.beta" in msg


def test_method_switch_override_keeps_a_fresh_block():
    r = build_recipe({**MINIMAL, "method": {"name": "freeze", "top_n": 3}}, ["method.top_n=1"])
    assert r.method.name == "freeze" and r.method_params().top_n == 1


def test_exponent_override_on_axis_param_is_a_float():
    r = build_recipe({**MINIMAL, "method": "lora"}, ["method.alpha=1e1"])
    assert r.method.params()["alpha"] == 10.0 and isinstance(r.method.params()["alpha"], float)


def test_axis_and_field_errors_are_reported_together():
    with pytest.raises(RecipeError) as exc:
        build_recipe({**MINIMAL, "method": "lora"}, ["train.scheduler=zigzag", "method.rank=8"])
    msg = str(exc.value)
    assert "train.scheduler" in msg and "zigzag" in msg
    assert "method.rank: unknown key; allowed: r, alpha" in msg


def test_incompatible_method_combination_stops_at_validation():
    msg = build_error(MINIMAL, ["method=prefix", "train.gradient_checkpointing=true"])
    assert "method 'prefix' does not work with train.gradient_checkpointing" in msg


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], True),  # auto: on, as TRL's default
    (["method=prefix"], False),  # auto leaves it off where it cannot work
    (["method=none"], False),  # nothing trains
    (["train.gradient_checkpointing=false"], False),
    (["method=full", "train.gradient_checkpointing=true"], True),
])
def test_gradient_checkpointing_auto_resolves_per_method(overrides, expected):
    recipe = build_recipe(MINIMAL, overrides)
    assert recipe.checkpointing() is expected
