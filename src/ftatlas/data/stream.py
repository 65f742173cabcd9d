"""A streamed training split (``data.train: {path: ..., streaming: true}``): conversations read from the source as
training asks for them, templated and tokenized one at a time, never all held in memory.

:class:`StreamedRows` stands where a list of rows stands in a :class:`~ftatlas.data.splits.Splits`: it iterates
(each pass reads the source again from its start), gives its first rows (``rows[0]``, ``rows[:n]``) and has no
length. The checks that look at the rows (chat template, overlap with the held-out rows, the memory estimate, a
few-shot pool) read a :func:`sample` of its first rows. :class:`StreamedEncoded` is what the SFT trainer iterates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

from torch.utils.data import IterableDataset
from transformers import PreTrainedTokenizerBase

from ftatlas.data.errors import DataError
from ftatlas.data.records import Conversation
from ftatlas.data.sources import RowSource
from ftatlas.data.templating import EncodeStats, TrainOn, encode

SAMPLE_ROWS = 1000  # rows of a streamed split the pre-training checks read


class StreamedRows:
    """The rows of a streamed source after the first ``skip`` (held out), at most ``limit`` of them."""

    def __init__(self, source: RowSource, format: str = "auto", skip: int = 0, limit: int | None = None) -> None:
        self.source, self.format, self.skip, self.limit = source, format, skip, limit
        self._head: list[Conversation] = self.head(1)
        if not self._head:
            raise DataError(str(source), None, source.field, f"no training rows after the first {skip} (held out)"
                            if skip else "the training split is empty")

    def __iter__(self) -> Iterator[Conversation]:
        from ftatlas.data.readers import iter_records

        stop = None if self.limit is None else self.skip + self.limit
        return islice(iter_records(self.source, self.format), self.skip, stop)

    def __bool__(self) -> bool:
        return True  # the constructor read a first row

    def __len__(self) -> int:
        raise TypeError(f"{self.source} is streamed (streaming: true): its number of rows is unknown until read")

    def head(self, n: int) -> list[Conversation]:
        """The first ``n`` rows (read once, kept)."""
        if len(getattr(self, "_head", [])) < n:
            self._head = list(islice(iter(self), n))
        return self._head[:n]

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            if i.start not in (None, 0) or i.step not in (None, 1) or i.stop is None or i.stop < 0:
                raise TypeError(f"{self.source} is streamed: only its first rows can be taken (rows[:n])")
            return self.head(i.stop)
        if i < 0:
            raise TypeError(f"{self.source} is streamed: its last rows are unknown until read")
        first = self.head(i + 1)
        if i >= len(first):
            raise IndexError(f"{self.source} has fewer than {i + 1} training rows")
        return first[i]

    def steps(self, per_step: int) -> int | None:
        """Optimizer steps of one pass over ``limit`` rows at ``per_step`` rows a step (None: length unknown)."""
        return None if self.limit is None else max(1, math.ceil(self.limit / per_step))


def sample(rows: list[Any] | StreamedRows, n: int = SAMPLE_ROWS) -> list[Any]:
    """``rows`` itself, or a streamed split's first ``n`` rows."""
    return rows.head(n) if isinstance(rows, StreamedRows) else rows


class StreamedEncoded(IterableDataset):
    """Streamed rows templated and tokenized as the trainer reads them; rows left with no loss tokens are skipped.
    ``stats`` counts the first full pass (what was read so far while it runs)."""

    def __init__(self, rows: StreamedRows, tokenizer: PreTrainedTokenizerBase, max_length: int,
                 train_on: TrainOn) -> None:
        self.rows, self.tokenizer, self.max_length, self.train_on = rows, tokenizer, max_length, train_on
        self.stats, self._passes = EncodeStats(), 0

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        count = self._passes == 0
        for conv in self.rows:
            e = encode(self.tokenizer, conv, self.max_length, self.train_on)
            if count:
                self.stats.rows += 1
                self.stats.truncated += e.truncated
            if e.n_loss == 0:
                if count:
                    self.stats.no_loss.append(f"{conv.source}:{conv.line}")
                continue
            if count:
                self.stats.tokens += len(e.input_ids)
                self.stats.loss_tokens += e.n_loss
            yield {"input_ids": e.input_ids, "labels": e.labels}
        self._passes += 1
