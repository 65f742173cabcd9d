"""Any ``datasets`` source as rows for the existing readers: a hub id (config, split, revision), local parquet /
csv / arrow / json files or folders, a ``save_to_disk`` folder, streamed or not.

A :class:`RowSource` stands where the readers expect a file path: ``str()`` of it is ``<path>:<split>`` and its
rows are numbered from 0, so every reader's error reads ``<path>:<split>:<index>: field 'x': ...``. Columns are
renamed onto the readers' fields first (``columns: {instruction: question, output: answer}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftatlas.data.errors import DataError

# Local files read through a datasets builder (the .json/.jsonl/.txt files keep the line-numbered readers).
BUILDERS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


class DatasetSource(BaseModel):
    """``load_dataset`` arguments plus a column mapping: ``data.train: {path: org/name, split: train, ...}``."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(..., description="hub id, builder (parquet/csv/json/arrow) or a local file or folder")
    name: str | None = Field(None, description="dataset configuration (load_dataset's name)")
    split: str = Field("train", description="split to read, e.g. train, test, train[:1000]")
    revision: str | None = Field(None, description="hub revision: branch, tag or commit")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="files for a builder path (parquet/csv/json/arrow)")
    streaming: bool = Field(False, description="read rows as they come, without downloading/converting the whole "
                            "dataset: sft tokenizes and trains on them one by one (needs train.max_steps or "
                            "data.max_train); other objectives read data.max_train rows into memory")
    columns: dict[str, str] = Field(default_factory=dict, description="reader field -> dataset column, e.g. "
                                    "{instruction: question, output: answer} or {messages: chat}")


def source_spec(value: str | DatasetSource | dict | None) -> DatasetSource | None:
    """The datasets source a ``data.train``/``data.eval`` value names, or None for a .json/.jsonl/.txt file."""
    if value is None or isinstance(value, DatasetSource):
        return value
    if isinstance(value, dict):
        return DatasetSource(**value)
    p = Path(value)
    if p.suffix.lower() in BUILDERS or p.is_dir():
        return DatasetSource(path=value)
    return None


def describe(value: str | DatasetSource | None) -> str:
    """How the note and errors name a data value: ``<path>:<split>`` for a datasets source, else the file."""
    spec = source_spec(value)
    return str(value) if spec is None else f"{spec.path}:{spec.split}"


class RowSource:
    """Rows of one dataset split, in place of a file path for the readers (see module doc)."""

    suffix = ""  # never a .txt file

    def __init__(self, spec: DatasetSource, field: str = "data.train", limit: int | None = None) -> None:
        self.spec, self.field, self.limit = spec, field, limit
        self._data: Any = None

    def __str__(self) -> str:
        return f"{self.spec.path}:{self.spec.split}"

    def __fspath__(self) -> str:
        return str(self)

    def dataset(self) -> Any:
        if self._data is None:
            self._data = load(self.spec, self.field)
            self._check_columns(self._data)
        return self._data

    def _check_columns(self, data: Any) -> None:
        names = data.column_names
        if names is None:  # some streamed sources only know their columns once read
            return
        for target, column in self.spec.columns.items():
            if column not in names:
                raise DataError(str(self), None, f"{self.field}.columns.{target}",
                                f"no column {column!r}; columns: {', '.join(names)}")

    def rows(self) -> Iterator[tuple[int, dict]]:
        """``(index, row)`` with columns renamed and null values dropped (a null optional field is an absent one)."""
        rename = {column: target for target, column in self.spec.columns.items()}
        for i, row in enumerate(self.dataset()):
            if self.limit is not None and i >= self.limit:
                return
            yield i, {rename.get(k, k): v for k, v in row.items() if v is not None}


def _builder_args(spec: DatasetSource) -> dict[str, Any]:
    """A local file becomes (builder, data_files); a hub id, builder name or folder goes to load_dataset as is."""
    p = Path(spec.path)
    args: dict[str, Any] = dict(path=spec.path, name=spec.name, revision=spec.revision, data_files=spec.data_files)
    if p.is_file():
        builder = BUILDERS.get(p.suffix.lower()) or {".json": "json", ".jsonl": "json"}.get(p.suffix.lower())
        if builder is None:
            raise DataError(spec.path, None, None, f"unsupported file type {p.suffix!r}; supported: "
                            f"{', '.join([*BUILDERS, '.json', '.jsonl'])} (or a folder of them)")
        args |= dict(path=builder, data_files=str(p))  # one file is the split "train" (slices work on it)
        if builder == "csv":  # CSV cells are text; pandas' type guesses would turn an answer "42" into a number
            args["features"] = _text_features(p)
    return {k: v for k, v in args.items() if v is not None}


def _text_features(p: Path) -> Any:
    import csv

    import datasets

    with open(p, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return datasets.Features({name: datasets.Value("string") for name in header})


def load(spec: DatasetSource, field: str = "data.train") -> Any:
    """``datasets.load_dataset`` (or ``load_from_disk`` for a saved folder) of one split; errors name the source."""
    import datasets

    p = Path(spec.path)
    looks_local = p.is_absolute() or spec.path.startswith(".") or p.suffix.lower() in BUILDERS
    if looks_local and not p.exists():
        raise DataError(spec.path, None, field, "does not exist")
    try:
        if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
            data = datasets.load_from_disk(str(p))
            return data[spec.split] if isinstance(data, datasets.DatasetDict) else data
        return datasets.load_dataset(**_builder_args(spec), split=spec.split, streaming=spec.streaming)
    except DataError:
        raise
    except Exception as e:  # any failure to load (missing files, unknown split or config, offline hub) is named
        raise DataError(f"{spec.path}:{spec.split}", None, field, f"{type(e).__name__}: {e}") from None
