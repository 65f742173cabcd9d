"""Tokenized rows cached with ``datasets.map``: a second run on the same rows, template, tokenizer, ``max_length``
and ``train_on`` reads the Arrow file instead of templating and tokenizing again.

SFT (:func:`encode_cached`): the fingerprint is ours (datasets fingerprints an in-memory dataset at random): a
hash of everything the encoding depends on, used as ``map``'s ``new_fingerprint`` and cache file name.

Objectives on TRL trainers (pretrain, dpo, orpo, kto, cpo, simpo, reward) tokenize inside the trainer with
``datasets.map``; :func:`file_backed` hands them their rows as an Arrow file named by its content, so the
trainer's own maps get stable fingerprints and datasets caches their output beside it (``cache-<fp>.arrow``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from ftatlas.data.records import Conversation, Message
from ftatlas.data.templating import Encoded, EncodeStats, TrainOn, encode

VERSION = "1"  # bump when templating.encode changes what it produces


def default_cache_dir() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "ftatlas-tokenized"


def file_backed(rows: list[dict[str, Any]], cache_dir: str | Path | None = None) -> Any:
    """``rows`` as a ``datasets.Dataset`` memory-mapped from ``<cache_dir>/rows-<content hash>.arrow`` (written once,
    then reused as it is, so its fingerprint and every ``map`` over it stay the same from run to run)."""
    import os

    import datasets

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(VERSION.encode())
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, default=str).encode())
    path = folder / f"rows-{h.hexdigest()[:32]}.arrow"
    if not path.is_file():  # written under a temporary name, then renamed: a reader never sees half a file
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        datasets.Dataset.from_list(rows).map(cache_file_name=str(tmp), new_fingerprint=path.stem,
                                             desc="writing rows")
        os.replace(tmp, path)
    return datasets.Dataset.from_file(str(path))


def _tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return json.dumps([type(tokenizer).__name__, vocab, tokenizer.chat_template, tokenizer.eos_token])


def fingerprint(tokenizer: PreTrainedTokenizerBase, rows: list[Conversation], max_length: int,
                train_on: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([VERSION, max_length, train_on]).encode())
    h.update(hashlib.sha256(_tokenizer_identity(tokenizer).encode()).digest())
    for r in rows:
        h.update(json.dumps([r.to_json(), r.source, r.line]).encode())
    return h.hexdigest()[:32]


def _row(conv: Conversation) -> dict[str, Any]:
    return {"text": conv.text, "roles": [m.role for m in conv.messages], "contents": [m.content for m in conv.messages],
            "where": f"{conv.source}:{conv.line}"}


def _encode_row(row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int,
                train_on: TrainOn) -> dict[str, Any]:
    messages = [Message(r, c) for r, c in zip(row["roles"], row["contents"], strict=True)]
    source, _, line = row["where"].rpartition(":")
    conv = Conversation(messages=messages, text=row["text"], source=source, line=int(line) if line.isdigit() else 0)
    e = encode(tokenizer, conv, max_length, train_on)
    return {"input_ids": e.input_ids, "labels": e.labels, "truncated": e.truncated, "n_loss": e.n_loss}


def encode_cached(tokenizer: PreTrainedTokenizerBase, rows: list[Conversation], max_length: int, train_on: TrainOn,
                  cache_dir: str | Path | None = None) -> tuple[list[Encoded], EncodeStats, bool]:
    """(encoded rows with loss tokens, stats, whether the cache was hit); the same rows and stats as
    ``templating.encode_all``, rows with no loss tokens left skipped and counted."""
    import datasets

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(tokenizer, rows, max_length, train_on)
    path = folder / f"{fp}.arrow"
    hit = path.is_file()
    if hit:
        data = datasets.Dataset.from_file(str(path))
    else:
        data = datasets.Dataset.from_list([_row(r) for r in rows]).map(
            _encode_row, fn_kwargs=dict(tokenizer=tokenizer, max_length=max_length, train_on=train_on),
            remove_columns=["text", "roles", "contents"], cache_file_name=str(path), new_fingerprint=fp,
            desc="tokenizing")
    return *_collect(data), hit


def _collect(data: Any) -> tuple[list[Encoded], EncodeStats]:
    stats, out = EncodeStats(rows=len(data)), []
    cols = data.to_dict()
    for ids, labels, truncated, n_loss, where in zip(cols["input_ids"], cols["labels"], cols["truncated"],
                                                     cols["n_loss"], cols["where"], strict=True):
        stats.truncated += truncated
        if n_loss == 0:
            stats.no_loss.append(where)
            continue
        stats.tokens += len(ids)
        stats.loss_tokens += n_loss
        out.append(Encoded(ids, labels, truncated))
    return out, stats
