"""Per-example metrics: plain functions ``(prediction, reference) -> float in [0, 1]``, registered by name."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable

from ftatlas.registry import Registry

Metric = Callable[[str, str], float]
METRICS: Registry[Metric] = Registry("metric")

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


def score(names: list[str], predictions: list[str], references: list[str]) -> tuple[dict, list[dict]]:
    """Mean of each metric over examples, plus each example's per-metric scores."""
    fns = {n: METRICS.get(n) for n in names}
    per = [{n: fn(p, r) for n, fn in fns.items()} for p, r in zip(predictions, references, strict=True)]
    means = {n: (sum(row[n] for row in per) / len(per) if per else 0.0) for n in names}
    return means, per
