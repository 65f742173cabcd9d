"""Recipe validation, dotted overrides, load/dump, and the error messages users see."""

from __future__ import annotations

import pytest

from ftatlas.methods.freeze import FreezeParams
from ftatlas.recipe import Recipe, RecipeError, deep_merge, dump_recipe, parse_overrides
from ftatlas.resolve import build_recipe, load_recipe

MINIMAL = {"data": {"builtin": "contacts"}}


def build_error(data: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        build_recipe(data, overrides)
    return str(info.value)


# --- defaults and the short forms -------------------------------------------------------------------------------


def test_minimal_recipe_gets_defaults():
    r = build_recipe(MINIMAL)
    assert r.method.name == "lora"
    assert r.method.params() == {}
    assert r.objective.name == "sft"
    assert r.model.name == "smollm2-135m"
    assert r.model.dtype == "auto"
    assert r.model.device == "auto"
    assert r.model.template is None
    assert r.data.builtin == "contacts"
    assert r.data.train is None
    assert r.data.eval_split == pytest.approx(0.1)
    assert r.data.train_on == "assistant"
    assert r.train.lr == "auto" and r.learning_rate() == pytest.approx(2e-4)  # LoRA's default
    assert r.train.epochs == "auto" and r.train.gradient_checkpointing == "auto"
    assert r.train.scheduler == "cosine"
    assert r.train.batch_size == 8
    assert r.train.precision == "auto"
    assert r.eval.metrics is None
    assert r.eval.decode.max_new_tokens == 64
    assert r.output.dir == "runs"
    assert r.output.overwrite is False


def test_method_short_form_in_recipe():
    r = build_recipe({**MINIMAL, "method": "freeze", "objective": "sft"})
    assert r.method.name == "freeze"
    assert r.method.params() == {}
    assert r.objective.name == "sft"


def test_method_override_replaces_name():
    r = build_recipe(MINIMAL, ["method=freeze"])
    assert r.method.name == "freeze"
    assert isinstance(r.method_params(), FreezeParams)


def test_method_override_replaces_whole_block():
    # switching method drops the old method's params instead of failing on them
    r = build_recipe({**MINIMAL, "method": {"name": "lora", "r": 4}}, ["method=freeze"])
    assert r.method.name == "freeze"
    assert r.method.params() == {}


def test_nested_override_merges_with_file_values():
    data = {**MINIMAL, "train": {"lr": 1e-3, "batch_size": 2}}
    r = build_recipe(data, ["train.batch_size=4", "eval.decode.max_new_tokens=9"])
    assert r.train.lr == pytest.approx(1e-3)  # kept from the file
    assert r.train.batch_size == 4  # overridden
    assert r.eval.decode.max_new_tokens == 9
    assert data["train"]["batch_size"] == 2  # the input dict is not mutated


def test_method_param_override_on_explicit_block():
    r = build_recipe({**MINIMAL, "method": {"name": "lora", "r": 4}}, ["method.alpha=16"])
    p = r.method_params()
    assert (p.r, p.alpha) == (4, 16)


def test_method_param_override_on_short_form():
    r = build_recipe({**MINIMAL, "method": "lora"}, ["method.r=8"])
    assert r.method_params().r == 8


def test_method_param_override_on_default_method():
    r = build_recipe(MINIMAL, ["method.r=8"])
    assert r.method.name == "lora"
    assert r.method_params().r == 8


def test_validate_assignment_is_on():
    r = build_recipe(MINIMAL)
    with pytest.raises(ValueError, match="batch_size"):
        r.train.batch_size = 0


# --- unknown keys ---------------------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_allowed():
    msg = build_error({**MINIMAL, "trian": {}})
    assert "recipe: invalid recipe" in msg
    assert "trian: unknown key" in msg
    assert "allowed: model, data, method, objective, context, train, eval, output" in msg


def test_unknown_nested_key_names_dotted_path_and_fields():
    msg = build_error(MINIMAL, ["train.lrr=0.1"])
    assert "train.lrr: unknown key" in msg
    allowed = msg.split("allowed:", 1)[1]
    names = [n.strip() for n in allowed.split(",")]
    assert "lr" in names
    assert "batch_size" in names
    assert "scheduler" in names
    assert "builtin" not in names  # fields of train, not of data


def test_unknown_deeply_nested_key():
    msg = build_error(MINIMAL, ["eval.decode.topk=5"])
    assert "eval.decode.topk: unknown key" in msg
    assert "top_k" in msg.split("allowed:", 1)[1]


def test_every_problem_is_reported():
    msg = build_error(MINIMAL, ["train.lrr=1", "data.max_lenght=3"])
    assert "train.lrr: unknown key" in msg
    assert "data.max_lenght: unknown key" in msg


# --- bad values -----------------------------------------------------------------------------------------------


def test_bad_literal_lists_allowed_values_and_bad_value():
    msg = build_error(MINIMAL, ["train.scheduler=foo"])
    line = next(ln for ln in msg.splitlines() if ln.startswith("train.scheduler:"))
    for allowed in ("'linear'", "'cosine'", "'constant'", "'inverse_sqrt'"):
        assert allowed in line
    assert "(got 'foo')" in line


@pytest.mark.parametrize(
    ("override", "field", "bound"),
    [
        ("train.lr=5", "train.lr", "less than 1"),
        ("train.lr=0", "train.lr", "greater than 0"),
        ("data.eval_split=1.5", "data.eval_split", "less than 1"),
        ("train.batch_size=0", "train.batch_size", "greater than or equal to 1"),
        ("eval.decode.top_p=2", "eval.decode.top_p", "less than or equal to 1"),
    ],
)
def test_out_of_range_names_field(override, field, bound):
    msg = build_error(MINIMAL, [override])
    assert f"{field}: " in msg
    assert bound in msg
    assert f"(got {override.split('=')[1]})" in msg


def test_wrong_type_for_section():
    msg = build_error({**MINIMAL, "model": "smollm2-135m"})
    assert "model: " in msg
    assert "(got 'smollm2-135m')" in msg


def test_missing_data_section():
    msg = build_error({})
    assert "data: Field required" in msg


# --- data source rules ------------------------------------------------------------------------------------------


def test_data_needs_a_source():
    msg = build_error({"data": {}})
    assert "data.builtin" in msg
    assert "data.train" in msg


def test_builtin_with_train_is_an_error():
    msg = build_error({"data": {"builtin": "contacts", "train": "x.jsonl"}})
    assert "data.builtin brings its own train/eval" in msg


def test_builtin_with_eval_is_an_error():
    msg = build_error({"data": {"builtin": "contacts", "eval": "e.jsonl"}})
    assert "drop data.train/data.eval" in msg


def test_train_file_alone_is_fine():
    r = build_recipe({"data": {"train": "x.jsonl", "eval": "y.jsonl"}})
    assert (r.data.builtin, r.data.train, r.data.eval) == (None, "x.jsonl", "y.jsonl")


# --- parse_overrides / deep_merge -------------------------------------------------------------------------------


def test_parse_overrides_nests_and_types():
    out = parse_overrides([
        "train.lr=0.0001",
        "train.gradient_checkpointing=true",
        "eval.metrics=[a,b]",
        "method.r=8",
        "output.name=my-run",
        "model.template=",
    ])
    assert out == {
        "train": {"lr": 0.0001, "gradient_checkpointing": True},
        "eval": {"metrics": ["a", "b"]},
        "method": {"r": 8},
        "output": {"name": "my-run"},
        "model": {"template": ""},
    }
    assert isinstance(out["train"]["lr"], float)
    assert out["train"]["gradient_checkpointing"] is True
    assert isinstance(out["method"]["r"], int)


def test_parse_overrides_value_may_contain_equals():
    assert parse_overrides(["output.name=a=b"]) == {"output": {"name": "a=b"}}


def test_exponent_override_reaches_recipe_as_float():
    r = build_recipe(MINIMAL, ["train.lr=1e-4"])
    assert isinstance(r.train.lr, float)
    assert r.train.lr == pytest.approx(1e-4)


def test_parse_overrides_exponent_is_float():
    assert parse_overrides(["train.lr=1e-4"]) == {"train": {"lr": 1e-4}}


@pytest.mark.parametrize("bad", ["train.lr", "=3", ""])
def test_malformed_override(bad):
    with pytest.raises(RecipeError, match="is not key=value"):
        parse_overrides([bad])


def test_conflicting_overrides():
    with pytest.raises(RecipeError, match="conflicts with an earlier override of 'train'"):
        parse_overrides(["train=1", "train.lr=0.1"])


def test_later_override_wins():
    assert parse_overrides(["train.lr=0.1", "train.lr=0.2"]) == {"train": {"lr": 0.2}}


def test_malformed_override_through_build_recipe():
    with pytest.raises(RecipeError, match="not key=value"):
        build_recipe(MINIMAL, ["train.lr"])


def test_deep_merge_is_recursive_and_pure():
    base = {"a": {"x": 1, "y": {"p": 1}}, "b": 2}
    out = deep_merge(base, {"a": {"y": {"q": 2}}, "c": 3})
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": 2, "c": 3}
    assert base == {"a": {"x": 1, "y": {"p": 1}}, "b": 2}


# --- load / dump ------------------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_load_directory_is_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path)


def test_load_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {builtin: contacts\ntrain: [\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_load_yaml_list(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- data\n- train\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert "mapping" in str(info.value)


def test_load_empty_file_reports_missing_data(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert "data: Field required" in str(info.value)


def test_load_error_names_file_and_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {builtin: contacts}\ntrain: {lrr: 0.1}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: invalid recipe")
    assert "train.lrr: unknown key" in str(info.value)


def test_load_with_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  builtin: contacts\nmethod: {name: lora, r: 4}\ntrain: {lr: 0.001}\n")
    r = load_recipe(path, ["train.batch_size=2", "method.alpha=8"])
    assert r.train.lr == pytest.approx(1e-3)
    assert r.train.batch_size == 2
    assert r.method_params().alpha == 8


def test_dump_load_round_trip(tmp_path):
    original = build_recipe({
        "model": {"name": "org/model", "template": "chatml", "device": "cpu"},
        "data": {"train": "train.jsonl", "format": "messages", "max_train": 10},
        "method": {"name": "lora", "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "train": {"lr": 1e-3, "scheduler": "linear", "gradient_checkpointing": True},
        "eval": {"metrics": ["exact_match", "token_f1"], "decode": {"max_new_tokens": 8}},
        "output": {"dir": str(tmp_path / "runs"), "name": "x"},
    })
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_recipe(original))
    again = load_recipe(path)
    assert isinstance(again, Recipe)
    assert again == original
    assert again.method_params() == original.method_params()
    assert again.method_params().target_modules == ["q_proj", "v_proj"]


def test_dump_of_defaults_round_trips(tmp_path):
    original = build_recipe(MINIMAL)
    path = tmp_path / "d.yaml"
    path.write_text(dump_recipe(original))
    assert load_recipe(path) == original
    assert "scheduler: cosine" in path.read_text()
