"""Multiple-choice rows: a ``choices`` list beside the usual fields of any format.

The correct choice is ``answer`` (an index into ``choices``, or the choice's text) or, when the row has no
``answer``, the row's reference answer (alpaca ``output`` / the last assistant message), which must then be one
of the choices. For example ``{"instruction": "Capital of France?", "output": "Paris", "choices": ["Lyon",
"Paris", "Nice"]}``. Bad rows raise DataError naming file, line and field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.data.readers import iter_rows
from ftatlas.data.records import Conversation


@dataclass(frozen=True)
class ChoiceRow:
    choices: list[str]
    gold: int  # index of the correct choice


@functools.lru_cache(maxsize=8)
def _file_rows(path: str, mtime_ns: int) -> dict[int, dict[str, Any]]:
    return dict(iter_rows(path))


def _raw(row: Conversation) -> dict[str, Any]:
    """The row's own fields: ``meta`` when a reader put them there, else the source file's row at that line."""
    if "choices" in row.meta:
        return row.meta
    path = Path(row.source) if row.source else None
    if path is None or path.suffix.lower() not in (".json", ".jsonl") or not path.is_file():
        return {}
    return _file_rows(str(path), path.stat().st_mtime_ns).get(row.line, {})


def _choices(raw: dict[str, Any], file: str, line: int | None) -> list[str]:
    if "choices" not in raw:
        raise DataError(file, line, "choices", "missing: multiple-choice metrics need a 'choices' list on every row")
    choices = raw["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise DataError(file, line, "choices", "expected a list of at least 2 strings")
    for i, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise DataError(file, line, f"choices[{i}]", "expected a non-empty string")
    if len({c.strip() for c in choices}) < len(choices):
        raise DataError(file, line, "choices", "two choices are the same text")
    return choices


def _gold(raw: dict[str, Any], choices: list[str], reference: str, file: str, line: int | None) -> int:
    stripped = [c.strip() for c in choices]
    if "answer" not in raw:
        if reference.strip() not in stripped:
            raise DataError(file, line, "choices", f"the reference answer {reference.strip()!r} is not one of the "
                            "choices; add 'answer' (an index or the choice's text)")
        return stripped.index(reference.strip())
    answer = raw["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise DataError(file, line, "answer", f"index {answer} out of range 0..{len(choices) - 1}")
        return answer
    if isinstance(answer, str) and answer.strip() in stripped:
        return stripped.index(answer.strip())
    raise DataError(file, line, "answer", f"expected an index into choices or one of their texts, got {answer!r}")


def read_choices(row: Conversation, reference: str) -> ChoiceRow:
    raw = _raw(row)
    file, line = row.source or "<rows>", row.line or None
    choices = _choices(raw, file, line)
    return ChoiceRow(choices, _gold(raw, choices, reference, file, line))
