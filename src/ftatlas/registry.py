"""A tiny name -> entry registry used by every axis (methods, objectives, ...).

Each axis module registers itself with a decorator where it lives, so adding a
method touches one file and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An axis value that no module registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps a name to an entry, with errors that list the known names."""

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return deco

    def register_named(self, name: str) -> Callable[[T], T]:
        """Like ``register``, and also records the name on the entry (``cls.name``) for messages and reports."""

        def deco(entry: T) -> T:
            entry.name = name  # type: ignore[attr-defined]
            return self.register(name)(entry)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.axis} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
