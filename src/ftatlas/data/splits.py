"""Turn the recipe's ``data`` block into train and held-out rows (built-in or files)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ftatlas.data.builtin import BUILTIN_METRICS, BUILTINS
from ftatlas.data.errors import DataError
from ftatlas.data.readers import read_file
from ftatlas.data.records import Conversation
from ftatlas.recipe import DataSpec


@dataclass
class Splits:
    train: list[Conversation]
    eval: list[Conversation]
    default_metrics: list[str]
    note: str  # where each split came from, for the report


def load_builtin(name: str, split: str) -> list[Conversation]:
    if name not in BUILTINS:
        known = ", ".join(BUILTINS)
        raise DataError(f"builtin:{name}", None, "data.builtin", f"unknown built-in dataset; known: {known}")
    return BUILTINS[name](split)


def load_splits(spec: DataSpec) -> Splits:
    if spec.builtin is not None:
        train, held = load_builtin(spec.builtin, "train"), load_builtin(spec.builtin, "eval")
        note = f"built-in {spec.builtin}: {len(train)} train / {len(held)} held-out rows"
        metrics = BUILTIN_METRICS[spec.builtin]
    else:
        train = read_file(spec.train, spec.format)
        if spec.eval is not None:
            held = read_file(spec.eval, spec.format)
            note = f"{spec.train}: {len(train)} train rows; {spec.eval}: {len(held)} held-out rows"
        else:
            train, held = _split(train, spec.eval_split, spec.seed)
            note = f"{spec.train}: {len(train)} train / {len(held)} held-out rows (eval_split={spec.eval_split})"
        metrics = ["exact_match", "token_f1"]
    if spec.max_train is not None:
        train = train[: spec.max_train]
    where = spec.train or f"builtin:{spec.builtin}"
    if not train:
        raise DataError(where, None, "data.train", "the training split is empty")
    return Splits(train, held, metrics, note)


def _split(rows: list[Conversation], frac: float, seed: int) -> tuple[list[Conversation], list[Conversation]]:
    """Seeded shuffle, then hold out ``frac`` of rows (at least one when frac > 0)."""
    if frac == 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * frac))
    if n_eval >= len(rows):
        raise DataError(rows[0].source, None, "data.eval_split",
                        f"holding out {frac} of {len(rows)} rows leaves no training rows")
    held = sorted(order[:n_eval])
    keep = sorted(order[n_eval:])
    return [rows[i] for i in keep], [rows[i] for i in held]
