"""One small name -> entry registry, used by every registry of the project.

Encoders, decoders, priors, likelihoods, KL schedules, bandit policies and datasets are each
chosen by name; every lookup goes through :meth:`Registry.get`, so an unknown name raises the
same :class:`ValueError` everywhere: what kind of thing, the name given, and the valid names.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An immutable, ordered mapping of names to entries (factories, classes, specs).

    ``kind`` names what the entries are ("decoder", "KL schedule", ...) in error messages.
    Names keep their insertion order (the decoders' order is the reference numbering).
    """

    def __init__(self, kind: str, entries: Mapping[str, T]) -> None:
        if not entries:
            raise ValueError(f"a {kind} registry needs at least one entry")
        self.kind = kind
        self._entries = dict(entries)

    def get(self, name: str) -> T:  # type: ignore[override]  # raises instead of returning None
        """The entry registered as ``name``; ``ValueError`` naming the valid names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" (a list from YAML)
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {self.names()}") from None

    def check(self, name: str) -> str:
        """``name`` itself when registered (for validators), else the same error as :meth:`get`."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
