"""Text-overlap metrics against hand-computed values, and bootstrap confidence intervals."""

from __future__ import annotations

import random

import pytest

from ftatlas.evaluate.bootstrap import bootstrap_ci
from ftatlas.evaluate.metrics import json_valid, rouge_l, score


def test_rouge_l_is_the_lcs_f_measure():
    # LCS("the cat was on the mat", "the cat sat on the mat") = "the cat on the mat" = 5 of 6 words each way
    assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    assert rouge_l("mat the", "the mat") == pytest.approx(0.5)  # order matters: LCS 1 of 2
    assert rouge_l("", "the mat") == 0.0


def test_corpus_bleu_and_chrf():
    means, per = score(["bleu", "chrf"], ["a b c d"], ["a b c e"])
    # 1-4 gram precisions 3/4, 2/3, 1/2, 0/1 -> sacrebleu's "exp" smoothing turns the zero into 1/2; BP = 1
    assert means["bleu"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25)
    same, _ = score(["bleu", "chrf"], ["the cat sat on the mat"] * 3, ["the cat sat on the mat"] * 3)
    assert same["bleu"] == pytest.approx(1.0) and same["chrf"] == pytest.approx(1.0)
    assert 0 < per[0]["chrf"] < 1


def test_json_valid_ignores_content():
    assert json_valid('Sure: {"a": 1}', "") == 1.0
    assert json_valid("{not json}", "") == 0.0


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_n():
    rng = random.Random(0)

    def width(n: int) -> tuple[float, float, float]:
        per = [{"exact_match": float(rng.random() < 0.7)} for _ in range(n)]
        point = sum(r["exact_match"] for r in per) / n
        lo, hi = bootstrap_ci(["exact_match"], per, [""] * n, [""] * n)["exact_match"]
        assert lo <= point <= hi
        return hi - lo, lo, hi

    small, large = width(25)[0], width(400)[0]
    assert large < small / 2.5  # ~1/sqrt(n): 4x narrower in theory for 16x the data


def test_bootstrap_ci_for_corpus_metrics_recomputes_the_statistic():
    preds = ["the cat sat on the mat", "a dog ran", "birds fly south", "x y z"] * 5
    refs = ["the cat sat on the mat", "a dog ran far", "birds fly north", "p q r"] * 5
    means, per = score(["bleu"], preds, refs)
    lo, hi = bootstrap_ci(["bleu"], per, preds, refs)["bleu"]
    assert lo <= means["bleu"] <= hi and hi - lo > 0
