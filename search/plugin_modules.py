"""Where the plug-in modules a config names live, so that every Ray worker can import them.

A plug-in's module (the part of ``package.module:ClassName`` before the colon; its top-level
package is what travels) is looked up on the import path (``PYTHONPATH``, installed packages),
then in the config file's directory. Nothing is imported here (``importlib.util.find_spec`` of a
top-level name reads no module): a module is imported only when a model is built.

- local runs: the trial spec's plug-ins carry the directory found here (``Plugin.search_path``),
  which a worker on the same machine (or on a filesystem every node mounts) adds to its path;
  joining a cluster with ``--address``, the modules also go in Ray's ``runtime_env`` ``py_modules``
  (:func:`local_sources`; ``search.connect.join_runtime_env``);
- ``vaesearch submit``: the modules are copied beside the config into the job's ``working_dir``
  (``search/jobs.py``), which Ray ships to every node.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from search.config import Config, ConfigError


@dataclass(frozen=True)
class ModuleSource:
    """A plug-in's top-level module as found on this machine."""

    name: str        # the top-level module or package name
    source: Path     # the .py file or the package directory
    home: Path       # the directory to put on sys.path to import it

    @property
    def size(self) -> int:
        files = [self.source] if self.source.is_file() else [p for p in self.source.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files)


def find_module(module: str, config_dir: Path | None) -> ModuleSource | None:
    """The top-level module of ``module`` on the import path, else in ``config_dir``; None if neither."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin not in (None, "built-in", "frozen"):
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        return ModuleSource(top, source, source.parent)
    if spec is not None and spec.submodule_search_locations:   # a namespace package
        source = Path(next(iter(spec.submodule_search_locations)))
        return ModuleSource(top, source, source.parent)
    if config_dir is not None:
        for source in (config_dir / f"{top}.py", config_dir / top):
            if source.is_file() or (source / "__init__.py").is_file():
                return ModuleSource(top, source, config_dir)
    return None


def plugin_modules(config: Config, *, required: bool = False) -> dict[str, ModuleSource]:
    """The config's plug-in modules by top-level name. ``required``: a module found neither on the
    import path nor beside the config is a :class:`ConfigError` (what ``submit`` must upload)."""
    found: dict[str, ModuleSource] = {}
    missing: list[str] = []
    for label, plugin in config.plugins().items():
        module = plugin.path.partition(":")[0]
        source = find_module(module, config.directory)
        if source is None:
            missing.append(f"plug-in {label!r} ({plugin.path}): module {module!r}")
        else:
            found.setdefault(source.name, source)
    if missing and required:
        where = f"beside the config ({config.directory})" if config.directory else "in the working directory"
        raise ConfigError("cannot find the plug-in module(s) on this machine, neither on the import path "
                          f"(PYTHONPATH) nor {where}:\n  " + "\n  ".join(missing))
    return found


def installed(path: Path) -> bool:
    """Inside an installed-packages directory: the cluster's image provides it; nothing to ship."""
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def local_sources(config: Config) -> dict[str, Path]:
    """What must travel to a cluster's nodes: the top-level module (a .py file or a package folder)
    of every plug-in and of a callable dataset, by name, except installed packages. A module found
    nowhere is a :class:`ConfigError`."""
    found = dict(plugin_modules(config, required=True))
    data = config.data
    if data.name == "callable" and data.path:
        module = find_module(data.path.partition(":")[0], config.directory)
        if module is None:
            where = config.directory or Path.cwd()
            raise ConfigError(f"data.path {data.path!r}: cannot find module {data.path.partition(':')[0]!r} on this "
                              f"machine, neither on the import path (PYTHONPATH) nor beside the config ({where})")
        found.setdefault(module.name, module)
    return {m.source.name: m.source for m in found.values() if not installed(m.source)}


def search_paths(config: Config) -> dict[str, str]:
    """Top-level module name -> the directory a worker adds to its path to import it."""
    return {name: str(m.home) for name, m in plugin_modules(config).items()}


def importable_here(config: Config) -> None:
    """Let this process import the config's plug-ins as workers will (their directories appended to
    sys.path, after everything installed: a plug-in never shadows an installed module)."""
    for home in search_paths(config).values():
        if home not in sys.path:
            sys.path.append(home)
