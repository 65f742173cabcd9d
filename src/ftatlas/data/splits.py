"""Turn the recipe's ``data`` block into train and held-out rows (built-in or files)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ftatlas.data.builtin import BUILTIN_METRICS, BUILTINS, PREFERENCE_BUILTINS
from ftatlas.data.errors import DataError
from ftatlas.data.preference import as_chat, read_preference_file, read_unpaired_file, to_unpaired
from ftatlas.data.prompts import from_conversation, read_prompts
from ftatlas.data.readers import iter_records, read_file
from ftatlas.data.records import Conversation
from ftatlas.data.sources import DatasetSource, RowSource, describe, source_spec
from ftatlas.data.stream import StreamedRows
from ftatlas.recipe import DataSpec


@dataclass
class Splits:
    train: list[Conversation] | StreamedRows  # or PreferencePair / UnpairedExample / PromptRow, per data_kind
    eval: list[Conversation]
    default_metrics: list[str]
    note: str  # where each split came from, for the report


def load_builtin(name: str, split: str, kind: str = "conversations") -> list:
    if name not in BUILTINS:
        known = ", ".join(BUILTINS)
        raise DataError(f"builtin:{name}", None, "data.builtin", f"unknown built-in dataset; known: {known}")
    if kind in ("preference", "unpaired"):
        return _builtin_pairs(name, split, kind)
    if kind == "text":
        raise DataError(f"builtin:{name}", None, "data.builtin", "built-in datasets are conversations; plain-text "
                                                                 "objectives (pretrain) read data.train (.txt/.jsonl)")
    rows = BUILTINS[name](split)
    return [from_conversation(r) for r in rows] if kind == "prompts" else rows


def _builtin_pairs(name: str, split: str, kind: str) -> list:
    if name not in PREFERENCE_BUILTINS:
        raise DataError(f"builtin:{name}", None, "data.builtin",
                        f"built-in {name!r} has no preference pairs; with pairs: {', '.join(PREFERENCE_BUILTINS)}")
    pairs = PREFERENCE_BUILTINS[name](split)
    return to_unpaired(pairs) if kind == "unpaired" else pairs


def _read(spec: DataSpec, value: str | DatasetSource, kind: str, field: str) -> list:
    """A file, or a datasets source read through the same readers (streamed sources stop at what is used)."""
    source = source_spec(value)
    if source is None:
        return read_rows(value, spec.format, kind)
    limit = None
    if source.streaming and spec.max_train is None and field == "data.train":
        # sft streams into training (_streamed); the other objectives hold their rows in memory
        raise DataError(describe(value), None, "data.max_train",
                        f"streaming: true with {kind} rows reads them into memory (only sft trains from the "
                        "stream as it is read): set data.max_train to bound how many are read")
    if source.streaming and spec.max_train is not None:
        held_share = spec.eval_split if field == "data.train" and spec.eval is None else 0.0
        limit = math.ceil(spec.max_train / (1 - held_share)) + 1
    return read_rows(RowSource(source, field, limit), spec.format, kind)


def _streamed(spec: DataSpec, source: DatasetSource) -> Splits:
    """Conversations of a streamed ``data.train``, read as training goes (data/stream.py); the held-out rows are
    ``data.eval``, or the stream's first rows (a share of ``max_train``: a stream's length is unknown)."""
    rows = RowSource(source, "data.train")
    where = describe(spec.train)
    if spec.eval is not None:
        held, skip = _read(spec, spec.eval, "conversations", "data.eval"), 0
        held_note = f"{describe(spec.eval)}: {len(held)} held-out rows"
    elif spec.eval_split == 0:
        held, skip, held_note = [], 0, "no held-out rows (data.eval_split=0)"
    elif spec.max_train is None:
        raise DataError(where, None, "data.eval_split", "a streamed source (streaming: true) has no known length to "
                        "hold a share out of: set data.eval (a held-out file or source), data.max_train, or "
                        "data.eval_split=0")
    else:
        skip = max(1, round(spec.max_train * spec.eval_split / (1 - spec.eval_split)))
        held = list(islice(iter_records(rows, spec.format), skip))
        held_note = f"its first {len(held)} rows held out (data.eval_split={spec.eval_split})"
    train = StreamedRows(rows, spec.format, skip, spec.max_train)
    count = f"the next {spec.max_train}" if spec.max_train is not None else "all further"
    return Splits(train, held, ["exact_match", "token_f1"],
                  f"{where}: streamed, {count} rows read as training goes; {held_note}")


def read_rows(path: Any, format: str, kind: str = "conversations") -> list:
    """A data file, a datasets ``RowSource`` or a mixture spec (.yaml) read as the rows an objective of ``kind``
    trains on."""
    if isinstance(path, str) and path.lower().endswith((".yaml", ".yml")):
        from ftatlas.data.mix import mix

        # each source is read and validated as ``kind`` rows; pairs feed an unpaired objective as two examples
        records = [r.record for r in mix(path, "auto" if kind == "unpaired" else kind)[0]]
        if kind == "unpaired":
            records = [x for r in records for x in (to_unpaired([r]) if hasattr(r, "chosen") else [r])]
        return records
    if kind in ("preference", "unpaired"):
        return (read_preference_file if kind == "preference" else read_unpaired_file)(path, format)
    if kind == "prompts":
        return read_prompts(path)
    rows = read_file(path, format)
    for r in rows if kind == "text" else []:
        if not r.is_text:
            raise DataError(path, r.line, None, "this objective trains on plain text (.txt paragraphs or "
                                                '{"text": ...} rows); this row is a conversation')
    return rows


def load_splits(spec: DataSpec, kind: str = "conversations") -> Splits:
    """Train and held-out rows of the recipe's data, as the objective's ``data_kind`` needs them."""
    if spec.builtin is not None:
        train, held = load_builtin(spec.builtin, "train", kind), load_builtin(spec.builtin, "eval", kind)
        note = f"built-in {spec.builtin}: {len(train)} train / {len(held)} held-out rows"
        metrics = BUILTIN_METRICS[spec.builtin]
    else:
        source = source_spec(spec.train)
        if source is not None and source.streaming and kind == "conversations":
            return _streamed(spec, source)
        train = _read(spec, spec.train, kind, "data.train")
        if spec.eval is not None:
            held = _read(spec, spec.eval, kind, "data.eval")
            note = f"{describe(spec.train)}: {len(train)} train rows; {describe(spec.eval)}: {len(held)} held-out rows"
        else:
            train, held = _split(train, spec.eval_split, spec.seed)
            note = (f"{describe(spec.train)}: {len(train)} train / {len(held)} held-out rows "
                    f"(eval_split={spec.eval_split})")
        metrics = ["exact_match", "token_f1"]
    if spec.template == "chat":
        if kind not in ("preference", "unpaired"):
            raise DataError(where_of(spec), None, "data.template", "'chat' turns standard-form preference prompts "
                                                                   "into user messages; this objective reads "
                                                                   f"{kind} rows")
        train, held = as_chat(train), as_chat(held)
    if spec.max_train is not None:
        train = train[: spec.max_train]
    if not train:
        raise DataError(where_of(spec), None, "data.train", "the training split is empty")
    return Splits(train, held, metrics, note)


def where_of(spec: DataSpec) -> str:
    return describe(spec.train) if spec.train is not None else f"builtin:{spec.builtin}"


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
