"""Per-example metrics: plain functions ``(prediction, reference) -> float in [0, 1]``, registered by name."""

from __future__ import annotations

import functools
import json
import re
import string
from collections import Counter
from collections.abc import Callable

from ftatlas.extras import require
from ftatlas.registry import Registry

Metric = Callable[[str, str], float]
METRICS: Registry[Metric] = Registry("reference metric")

_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace (SQuAD-style)."""
    return " ".join(text.lower().translate(_PUNCT).split())


@METRICS.register("exact_match")
def exact_match(prediction: str, reference: str) -> float:
    """Identical after stripping surrounding whitespace."""
    return float(prediction.strip() == reference.strip())


@METRICS.register("normalized_match")
def normalized_match(prediction: str, reference: str) -> float:
    """Identical after lower-casing, removing punctuation and collapsing whitespace."""
    return float(normalize(prediction) == normalize(reference))


@METRICS.register("contains")
def contains(prediction: str, reference: str) -> float:
    """The normalised reference appears inside the normalised prediction (an empty reference matches only
    an empty prediction, so it cannot give free credit)."""
    ref, pred = normalize(reference), normalize(prediction)
    return float(ref in pred) if ref else float(not pred)


_NUMBER = re.compile(r"^[-+]?\d[\d,.]*$")
_PUNCT_BUT_NUMERIC = str.maketrans("", "", "".join(c for c in string.punctuation if c not in ",.-+"))


def shape(text: str) -> list[str]:
    """Words with numbers as ``<num>`` and capitalised words as ``<Name>``: what is left is the form."""
    words = text.strip().rstrip(".").translate(_PUNCT_BUT_NUMERIC).split()
    return ["<num>" if _NUMBER.match(w) else "<Name>" if w[:1].isupper() else w.lower() for w in words]


@METRICS.register("shape_match")
def shape_match(prediction: str, reference: str) -> float:
    """The answer has the reference's form, whatever the facts: ``110 grams`` matches ``870 grams`` and
    ``Juno Askari`` matches ``Maelis Vantorre``, but ``The unit weighs 870 grams`` does not. Measures
    format/style apart from knowledge."""
    ref = shape(reference)
    return float(bool(ref) and shape(prediction) == ref)


@METRICS.register("token_f1")
def token_f1(prediction: str, reference: str) -> float:
    """F1 over normalised whitespace tokens (bag of words)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def first_json(text: str) -> object | None:
    """The first JSON value in ``text`` (code fences and chatter around it are ignored)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text, m.start())[0]
        except json.JSONDecodeError:
            continue
    return None


@METRICS.register("json_match")
def json_match(prediction: str, reference: str) -> float:
    """The first JSON value in the prediction equals the reference's JSON (key order ignored)."""
    ref = first_json(reference)
    return float(ref is not None and first_json(prediction) == ref)


@METRICS.register("json_valid")
def json_valid(prediction: str, reference: str) -> float:
    """The prediction contains a JSON object or array that parses (whatever its content)."""
    return float(first_json(prediction) is not None)


@METRICS.register("rouge_l")
def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of words; Google's rouge-score, no stemming)."""
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


@functools.lru_cache(maxsize=1)
def _rouge():
    rouge_scorer = require("rouge_score.rouge_scorer", "metrics", "metric rouge_l")
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


@METRICS.register("bleu")
def bleu(prediction: str, reference: str) -> float:
    """Per example: sacrebleu's smoothed sentence BLEU / 100. The run's score is corpus BLEU (see CORPUS)."""
    sacrebleu = require("sacrebleu", "metrics", "metrics bleu and chrf")
    return min(1.0, sacrebleu.sentence_bleu(prediction, [reference]).score / 100)


@METRICS.register("chrf")
def chrf(prediction: str, reference: str) -> float:
    """Per example: sacrebleu's sentence chrF / 100. The run's score is corpus chrF (see CORPUS)."""
    sacrebleu = require("sacrebleu", "metrics", "metrics bleu and chrf")
    return min(1.0, sacrebleu.sentence_chrf(prediction, [reference]).score / 100)


def _corpus_bleu(predictions: list[str], references: list[str]) -> float:
    sacrebleu = require("sacrebleu", "metrics", "metrics bleu and chrf")
    return min(1.0, sacrebleu.corpus_bleu(predictions, [references]).score / 100)


def _corpus_chrf(predictions: list[str], references: list[str]) -> float:
    sacrebleu = require("sacrebleu", "metrics", "metrics bleu and chrf")
    return min(1.0, sacrebleu.corpus_chrf(predictions, [references]).score / 100)


# Metrics whose run-level value is a corpus statistic, not the mean of the per-example scores.
CORPUS: dict[str, Callable[[list[str], list[str]], float]] = {"bleu": _corpus_bleu, "chrf": _corpus_chrf}


def score(names: list[str], predictions: list[str], references: list[str]) -> tuple[dict, list[dict]]:
    """Each metric over the run (mean of examples, or the corpus statistic), plus per-example scores."""
    fns = {n: METRICS.get(n) for n in names}
    per = [{n: fn(p, r) for n, fn in fns.items()} for p, r in zip(predictions, references, strict=True)]
    means = {n: aggregate(n, [row[n] for row in per], predictions, references) for n in names}
    return means, per


def aggregate(name: str, values: list[float], predictions: list[str], references: list[str]) -> float:
    if name in CORPUS:
        return CORPUS[name](predictions, references) if predictions else 0.0
    return sum(values) / len(values) if values else 0.0
