"""The one error type for bad input data: it always says which file, line and field is wrong."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem in a data file, rendered as ``file:line: field 'x': message``."""

    def __init__(self, file: str | Path, line: int | None, field: str | None, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = self.message if self.field is None else f"field '{self.field}': {self.message}"
        return f"{where}: {what}"

    def __reduce__(self):  # keep the error picklable (e.g. across DataLoader workers)
        return (type(self), (self.file, self.line, self.field, self.message))
