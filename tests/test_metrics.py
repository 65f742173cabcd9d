"""Every registered metric against hand-computed values, plus first_json and score()."""

from __future__ import annotations

import pytest

from ftatlas.evaluate.metrics import (
    METRICS,
    contains,
    exact_match,
    first_json,
    json_match,
    normalize,
    normalized_match,
    score,
    token_f1,
)
from ftatlas.registry import UnknownNameError


def test_registered_names():
    assert METRICS.names() == ["bleu", "chrf", "contains", "exact_match", "json_match", "json_valid",
                               "normalized_match", "rouge_l", "shape_match", "token_f1"]
    assert METRICS.get("token_f1") is token_f1


def test_shape_match_scores_form_apart_from_facts():
    from ftatlas.evaluate.metrics import shape_match

    assert shape_match("110 grams", "870 grams") == 1.0  # right form, wrong fact
    assert shape_match("Juno Askari.", "Maelis Vantorre") == 1.0
    assert shape_match("8,340 crowns", "310 crowns") == 1.0
    assert shape_match("The unit weighs 870 grams", "870 grams") == 0.0  # right fact, house form missed
    assert shape_match("870 kilograms", "870 grams") == 0.0
    assert shape_match("", "") == 0.0


def test_normalize():
    assert normalize("  Hello,   World!\n") == "hello world"
    assert normalize("Don't-stop") == "dontstop"
    assert normalize("...") == ""


# --- exact_match ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("Paris", "Paris", 1.0),
        ("  Paris\n", "Paris", 1.0),
        ("Paris", "\tParis ", 1.0),
        ("paris", "Paris", 0.0),
        ("Paris.", "Paris", 0.0),
        ("Pa ris", "Paris", 0.0),
        ("", "", 1.0),
    ],
)
def test_exact_match(pred, ref, want):
    assert exact_match(pred, ref) == want


# --- normalized_match -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("Hello,  World!", "hello world", 1.0),
        ("THE END.", "the end", 1.0),
        ("hello world", "hello  there", 0.0),
        ("hello world", "world hello", 0.0),
        ("hello", "hello world", 0.0),
    ],
)
def test_normalized_match(pred, ref, want):
    assert normalized_match(pred, ref) == want


# --- contains ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("The answer is Paris, France.", "paris", 1.0),
        ("The answer is Paris, France.", "Paris France", 1.0),
        ("Paris", "The answer is Paris", 0.0),
        ("London", "Paris", 0.0),
        ("paris", "Paris!", 1.0),
    ],
)
def test_contains(pred, ref, want):
    assert contains(pred, ref) == want


# --- token_f1 ---------------------------------------------------------------------------------------------------


def test_token_f1_partial_overlap_by_hand():
    # pred 3 tokens all in ref (P = 1), ref 4 tokens, 3 found (R = 0.75)
    assert token_f1("the cat sat", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)


def test_token_f1_both_directions_by_hand():
    # pred: a b c d (4), ref: c d e (3); common = {c, d} = 2; P = 2/4, R = 2/3
    p, r = 0.5, 2 / 3
    assert token_f1("a b c d", "c d e") == pytest.approx(2 * p * r / (p + r))
    assert token_f1("c d e", "a b c d") == pytest.approx(2 * p * r / (p + r))  # symmetric


def test_token_f1_counts_repeats_as_a_bag():
    # pred: the the the (3), ref: the cat (2); common = min(3, 1) = 1; P = 1/3, R = 1/2 -> F1 = 0.4
    assert token_f1("the the the", "the cat") == pytest.approx(0.4)


def test_token_f1_normalises_and_ignores_order():
    assert token_f1("Sat, cat THE!", "the cat sat") == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pred", "ref", "want"),
    [
        ("dog", "cat", 0.0),
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("", "", 1.0),
        ("!!!", "", 1.0),  # punctuation-only normalises to nothing
    ],
)
def test_token_f1_edge_cases(pred, ref, want):
    assert token_f1(pred, ref) == want


# --- first_json / json_match ------------------------------------------------------------------------------------


def test_first_json_plain_and_nested():
    assert first_json('{"a": [1, 2], "b": {"c": null}}') == {"a": [1, 2], "b": {"c": None}}
    assert first_json("[1, 2]") == [1, 2]


def test_first_json_in_code_fence_and_chatter():
    text = 'Sure! Here it is:\n```json\n{"name": "Ann", "age": 3}\n```\nAnything else?'
    assert first_json(text) == {"name": "Ann", "age": 3}


def test_first_json_skips_brackets_that_are_not_json():
    assert first_json('see [note 1] and {oops} then {"ok": true} and {"later": 1}') == {"ok": True}


def test_first_json_outer_value_wins_over_inner():
    assert first_json('x {"a": [1]} y') == {"a": [1]}


@pytest.mark.parametrize("text", ["no json here", "", "{'a': 1}", '{"a": 1', "42", '"just a string"'])
def test_first_json_none(text):
    assert first_json(text) is None


def test_json_match_ignores_key_order_and_whitespace():
    assert json_match('{"b": 2, "a": 1}', '{"a":1,"b":2}') == 1.0


def test_json_match_finds_json_inside_fences_and_chatter():
    pred = 'Here you go:\n```json\n{"phone": "555", "name": "Bo"}\n```'
    assert json_match(pred, '{"name": "Bo", "phone": "555"}') == 1.0


def test_json_match_value_differences():
    assert json_match('{"a": 1}', '{"a": 2}') == 0.0
    assert json_match('{"a": 1}', '{"a": 1, "b": 2}') == 0.0
    assert json_match('{"a": "1"}', '{"a": 1}') == 0.0
    assert json_match("[1, 2]", "[2, 1]") == 0.0  # list order matters


def test_json_match_invalid_prediction_is_zero():
    assert json_match("{'a': 1}", '{"a": 1}') == 0.0
    assert json_match('{"a": 1', '{"a": 1}') == 0.0
    assert json_match("no json", '{"a": 1}') == 0.0


def test_json_match_reference_without_json_is_zero():
    assert json_match("plain text", "plain text") == 0.0
    assert json_match("", "") == 0.0


def test_json_match_uses_first_json_of_prediction():
    assert json_match('{"a": 2} or maybe {"a": 1}', '{"a": 1}') == 0.0
    assert json_match('{"a": 1} or maybe {"a": 2}', '{"a": 1}') == 1.0


def test_every_metric_returns_a_float_in_unit_range():
    cases = [("x", "x"), ("x", "y"), ("", ""), ('{"a":1}', '{"a":1}'), ("the cat", "cat the dog")]
    for name in METRICS.names():
        fn = METRICS.get(name)
        for pred, ref in cases:
            value = fn(pred, ref)
            assert isinstance(value, float), name
            assert 0.0 <= value <= 1.0, name


# --- score ------------------------------------------------------------------------------------------------------


def test_score_means_and_rows():
    preds = ["the cat sat", "Paris", "London"]
    refs = ["the cat sat down", "paris", "Paris"]
    means, per = score(["exact_match", "normalized_match", "token_f1"], preds, refs)
    f1 = 2 * 1 * 0.75 / 1.75
    assert per == [
        {"exact_match": 0.0, "normalized_match": 0.0, "token_f1": pytest.approx(f1)},
        {"exact_match": 0.0, "normalized_match": 1.0, "token_f1": 1.0},
        {"exact_match": 0.0, "normalized_match": 0.0, "token_f1": 0.0},
    ]
    assert set(means) == {"exact_match", "normalized_match", "token_f1"}
    assert means["exact_match"] == 0.0
    assert means["normalized_match"] == pytest.approx(1 / 3)
    assert means["token_f1"] == pytest.approx((f1 + 1.0) / 3)


def test_score_json_match_mean():
    means, per = score(["json_match"], ['{"a":1}', "nope", '```{"b": 2}```', "[1]"],
                       ['{"a": 1}', '{"a": 1}', '{"b":2}', "[1]"])
    assert [row["json_match"] for row in per] == [1.0, 0.0, 1.0, 1.0]
    assert means == {"json_match": pytest.approx(0.75)}


def test_score_empty_inputs():
    means, per = score(["exact_match", "contains"], [], [])
    assert means == {"exact_match": 0.0, "contains": 0.0}
    assert per == []


def test_score_length_mismatch_raises():
    with pytest.raises(ValueError):
        score(["exact_match"], ["a", "b"], ["a"])


def test_score_unknown_metric_lists_known():
    with pytest.raises(UnknownNameError) as info:
        score(["exact_match", "bleurt"], ["a"], ["a"])
    msg = str(info.value)
    assert "unknown reference metric 'bleurt'" in msg
    assert "known: bleu, chrf, contains, exact_match, json_match, json_valid, normalized_match, rouge_l" in msg
    assert isinstance(info.value, KeyError)
