"""One small name -> entry registry, used by every registry of the project, and the import-path
reference of a plug-in (the researcher's own encoder, decoder or prior; ``docs/plugins.md``).

Encoders, decoders, priors, likelihoods, KL schedules, bandit policies and datasets are each
chosen by name; every lookup goes through :meth:`Registry.get`, so an unknown name raises the
same :class:`ValueError` everywhere: what kind of thing, the name given, and the valid names.
Where a component may also be the user's own, a :class:`Plugin` (``"package.module:ClassName"``
plus keyword arguments) stands in for the name: it carries the path, never the class, so a spec
holding one pickles to any Ray worker, and :meth:`Plugin.load` imports the module only when a
model is built (importing user code executes it: nothing is imported that a config does not name).
"""
from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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

    def check_ref(self, ref: str | Plugin) -> str | Plugin:
        """A registered name, or a :class:`Plugin` (whose path is checked for form only: nothing
        is imported); the same error as :meth:`get` for an unknown name."""
        return ref if isinstance(ref, Plugin) else self.check(ref)


#: ``package.module:ClassName`` (the form of entry points and of ``uvicorn app:app``).
PLUGIN_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
#: A plug-in's readable name: MLflow params and metric keys, Tune's progress table, bandit arms.
PLUGIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class PluginError(ValueError):
    """A plug-in cannot be imported, built or run; the message names it and says what was expected."""


@dataclass(frozen=True)
class Plugin:
    """The user's own component by import path: ``path`` = ``"package.module:ClassName"``, built as
    ``ClassName(<the protocol's arguments>, **kwargs)``. ``name`` is its readable name (default: the
    class name). ``search_path``: the directory the driver found the module in; a worker that cannot
    import the module tries it (the same machine, or a filesystem every node mounts)."""

    path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    search_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not PLUGIN_PATH.match(self.path):
            raise PluginError(f"a plug-in path must look like 'package.module:ClassName', got path={self.path!r}")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise PluginError(f"plug-in {self.path!r}: kwargs must be a mapping of names to values, got {self.kwargs!r}")
        if self.name is not None and not (isinstance(self.name, str) and PLUGIN_NAME.match(self.name)):
            raise PluginError(f"plug-in {self.path!r}: name must be letters, digits, '_', '.', '-', got name={self.name!r}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def __hash__(self) -> int:  # kwargs is a dict: hash its canonical JSON
        return hash((self.path, json.dumps(self.kwargs, sort_keys=True, default=repr), self.name, self.search_path))

    @property
    def module(self) -> str:
        return self.path.partition(":")[0]

    @property
    def label(self) -> str:
        """The readable name: ``name``, else the class name."""
        return self.name or self.path.partition(":")[2]

    def describe(self, kind: str) -> str:
        return f"{kind} plug-in {self.label!r} ({self.path})"

    @classmethod
    def of(cls, ref: Any) -> Any:
        """``ref`` with a mapping (a plug-in as JSON or YAML writes it) turned into a :class:`Plugin`;
        anything else (a registry name, a Plugin) unchanged."""
        if isinstance(ref, Mapping):
            unknown = sorted(set(ref) - {"path", "kwargs", "name", "search_path"})
            if unknown or "path" not in ref:
                raise PluginError(f"a plug-in is {{path: 'package.module:ClassName', kwargs: {{...}}, name: ...}}, "
                                  f"got {dict(ref)!r}")
            return cls(path=ref["path"], kwargs=ref.get("kwargs") or {}, name=ref.get("name"),
                       search_path=ref.get("search_path"))
        return ref

    def load(self, kind: str) -> Any:
        """Import the module and return the attribute the path names; :class:`PluginError` otherwise."""
        what = self.describe(kind)
        try:
            module = _import(self.module, self.search_path)
        except Exception as exc:  # noqa: BLE001 - user code: any exception at import is its error
            hint = (" (is the module next to the config or on PYTHONPATH?)"
                    if isinstance(exc, ModuleNotFoundError) and exc.name == self.module.split(".")[0] else "")
            raise PluginError(f"{what}: cannot import module {self.module!r}: {type(exc).__name__}: {exc}{hint}") from None
        attr = self.path.partition(":")[2]
        try:
            return getattr(module, attr)
        except AttributeError:
            found = sorted(n for n in vars(module) if not n.startswith("_") and isinstance(vars(module)[n], type))
            raise PluginError(f"{what}: module {self.module!r} has no {attr!r}; its classes: {found}") from None

    def build(self, kind: str, **protocol: Any) -> Any:
        """``load()(**protocol, **kwargs)``; an exception in the constructor is a :class:`PluginError`."""
        factory = self.load(kind)
        clash = sorted(set(protocol) & set(self.kwargs))
        if clash:
            raise PluginError(f"{self.describe(kind)}: kwargs {clash} are given by vaesearch (the protocol passes "
                              f"{sorted(protocol)}); remove them from kwargs")
        try:
            return factory(**protocol, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - user code
            args = ", ".join(f"{k}={v!r}" for k, v in {**protocol, **self.kwargs}.items())
            raise PluginError(f"{self.describe(kind)}: the constructor raised {type(exc).__name__}: {exc} "
                              f"(called with {args})") from None


def _import(module: str, search_path: str | None) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if search_path is None or exc.name != module.split(".")[0] or search_path in sys.path:
            raise
    sys.path.append(search_path)
    importlib.invalidate_caches()   # a finder may have listed that directory before the file was there
    return importlib.import_module(module)
