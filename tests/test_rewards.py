"""Reward functions: built-ins, user functions by module:function / file.py:function, and the call checks."""

from __future__ import annotations

import json

import pytest

from ftatlas.data.errors import DataError
from ftatlas.data.prompts import read_prompts
from ftatlas.data.splits import load_splits
from ftatlas.recipe import DataSpec, RecipeError
from ftatlas.resolve import build_recipe
from ftatlas.rewards import RewardError, RewardSpec, build_rewards
from ftatlas.rewards.base import CheckedReward


def call(spec: dict, completions: list[str], **kw) -> list:
    return RewardSpec(**spec).build()(["p"] * len(completions), completions, **kw)


def test_reference_rewards_read_the_reference_column():
    assert call({"name": "exact_match"}, ["42", " 42 ", "42."], reference=["42"] * 3) == [1.0, 1.0, 0.0]
    assert call({"name": "contains"}, ["It is 42.", "41"], reference=["42", "42"]) == [1.0, 0.0]
    assert call({"name": "exact_match", "column": "gold"}, ["a"], gold=["a"]) == [1.0]
    with pytest.raises(RewardError, match="'exact_match' raised KeyError.*needs a 'reference' column"):
        call({"name": "exact_match"}, ["a"], other=["x"])


def test_format_rewards():
    assert call({"name": "regex", "pattern": r"\d+"}, ["17", "age 17"]) == [1.0, 0.0]
    assert call({"name": "regex", "pattern": r"\d+", "mode": "search"}, ["age 17", "none"]) == [1.0, 0.0]
    assert call({"name": "json_valid"}, ['{"a": 1}', 'x {"a": 1}']) == [1.0, 0.0]
    assert call({"name": "json_valid", "anywhere": True}, ['x {"a": 1}']) == [1.0]
    assert call({"name": "length_penalty", "target": 2, "per_token": 0.5}, ["a", "b"],
                completion_ids=[[1, 2], [1, 2, 3, 4]]) == [0.0, -1.0]


def test_user_function_from_file_receives_the_trl_signature(tmp_path):
    f = tmp_path / "my_rewards.py"
    f.write_text("def score(prompts, completions, reference, **kw):\n"
                 "    return np.array([float(c == r) for c, r in zip(completions, reference)])\n"
                 "import numpy as np\n")
    fns, weights = build_rewards([RewardSpec(name=f"{f}:score", weight=2.0)])
    assert weights == [2.0] and fns[0].__name__ == f"{f}:score"
    assert fns[0](["p", "p"], ["7", "8"], reference=["7", "7"]) == [1.0, 0.0]  # numpy output accepted


@pytest.mark.parametrize(("out", "message"), [
    (["x"], "returned a non-number at index 0: 'x'"),
    ([1.0, 2.0], "returned 2 rewards for 1 completions"),
    (0.5, "returned float; expected a list of 1 numbers"),
    ([float("nan")], "returned nan at index 0"),
])
def test_bad_reward_output_names_the_function(out, message):
    with pytest.raises(RewardError, match=f"reward function 'mine' {message}"):
        CheckedReward(lambda prompts, completions, **kw: out, "mine")(["p"], ["c"])


def test_raising_reward_names_the_function():
    def boom(prompts, completions, **kw):
        raise ZeroDivisionError("no")

    with pytest.raises(RewardError, match="reward function 'boom' raised ZeroDivisionError: no"):
        CheckedReward(boom, "boom")(["p"], ["c"])


def test_recipe_checks_rewards_before_anything_loads(tmp_path):
    base = {"data": {"builtin": "ages"}, "objective": {"name": "grpo"}}
    for rewards, message in [([{"name": "nope"}], "unknown reward function 'nope'"),
                             ([{"name": "regex", "pattern": "("}], "invalid regular expression"),
                             ([{"name": f"{tmp_path}/missing.py:f"}], "missing.py does not exist"),
                             ([{"name": "json:no_such_fn"}], "json has no attribute 'no_such_fn'"),
                             ([], "at least 1 item")]:
        with pytest.raises(RecipeError, match=message):
            build_recipe({**base, "objective": {"name": "grpo", "rewards": rewards}})
    with pytest.raises(RecipeError, match="objective 'grpo' cannot train with method 'adapter': .*per-token log-probs"):
        build_recipe({**base, "method": "adapter"})
    with pytest.raises(RecipeError, match="use_vllm=true needs vLLM"):
        build_recipe({**base, "objective": {"name": "rloo", "use_vllm": True}})


def test_prompt_rows_from_files_and_builtins(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "2+2?", "reference": "4", "topic": "math"}) + "\n"
                 + json.dumps({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}) + "\n"
                 + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
                 + "\n")
    rows = read_prompts(f)
    assert rows[0].messages[0].content == "2+2?" and rows[0].columns == {"reference": "4", "topic": "math"}
    assert [m.role for m in rows[1].messages] == ["system", "user"] and rows[1].reference is None
    assert rows[2].reference == "yo" and rows[2].line == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'prompt': expected a string or an array"):
        read_prompts(bad)
    bad.write_text(json.dumps({"prompt": "ok", "completions": "x"}) + "\n")
    with pytest.raises(DataError, match="'completions' is reserved"):
        read_prompts(bad)
    splits = load_splits(DataSpec(builtin="ages"), "prompts")
    assert len(splits.train) == 400 and len(splits.eval) == 100
    assert all(r.reference.isdigit() and r.reference in r.messages[-1].content for r in splits.train)
    assert not {r.messages[-1].content for r in splits.train} & {r.messages[-1].content for r in splits.eval}
