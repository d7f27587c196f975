"""Name -> builder registries for strategies, scenarios and backbones.

`clbench` never imports a concrete strategy or scenario by module name: packages
announce themselves through the ``clbench.plugins`` entry-point group (ours do, in
pyproject.toml) or call ``register`` directly, and are found here by name.

A plugin package may list its modules in a ``plugin_modules`` tuple (names relative to
the package) instead of importing them all in its ``__init__``: :func:`load_plugins`
imports every listed module, and a registry asked for one name imports only the module
that registers it (the config index, ``clbench.config_index``, remembers which one).
"""
from __future__ import annotations

import difflib
import importlib
import sys
import weakref
from importlib import metadata
from typing import Callable, Generic, Iterator, Optional, TypeVar

T = TypeVar("T")

ENTRY_POINT_GROUP = "clbench.plugins"
#: the attribute of a plugin package that lists its modules (relative names)
PLUGIN_MODULES = "plugin_modules"

#: every registry made in this process (the config index records who registers what)
REGISTRIES: "weakref.WeakSet[Registry]" = weakref.WeakSet()


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of builders: raises on duplicates, suggests on typos.

    Asking for a name that is not registered yet imports the one module that registers
    it (per the config index), and only then every plugin."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, Optional[str]] = {}  # name -> the module whose import registered it
        REGISTRIES.add(self)

    def register(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        self._origins.setdefault(name, importing_module())
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            self._find(name)
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid choices: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names; names starting with "_" (test doubles) are not listed."""
        load_plugins()
        return sorted(n for n in self._items if not n.startswith("_"))

    def is_registered(self, name: str) -> bool:
        """Whether ``name`` is registered already, importing nothing."""
        return name in self._items

    def origin(self, name: str) -> Optional[str]:
        """The module whose import registered ``name`` (None: not registered at import)."""
        return self._origins.get(name)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._items:
            self._find(name)
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _find(self, name: str) -> None:
        """Import what registers ``name``: the module the config index names, else every plugin."""
        from clbench import config_index

        module = config_index.module_for(self.kind, name)
        if module is not None and module not in sys.modules:
            importlib.import_module(module)
        if name not in self._items:
            load_plugins()


def importing_module() -> Optional[str]:
    """The module whose top-level code is running (the one being imported), if any."""
    try:
        frame = sys._getframe(1)
    except (AttributeError, ValueError):  # pragma: no cover - not CPython
        return None
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return frame.f_globals.get("__name__")
        frame = frame.f_back
    return None


_loaded = False


def plugin_packages() -> list[str]:
    """The module names registered under the ``clbench.plugins`` entry point."""
    return [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins() -> None:
    """Import every package registered under the ``clbench.plugins`` entry point (and the
    modules each lists in ``plugin_modules``), once; then write the config index."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from clbench import config_index

    before = config_index.fingerprint() if config_index.cache_root() is not None else None
    for name in plugin_packages():
        package = importlib.import_module(name)
        for module in getattr(package, PLUGIN_MODULES, ()):
            importlib.import_module(f"{package.__name__}.{module}")
    config_index.after_full_load(before)


def registrar(registry: Registry[T]) -> Callable[[str], Callable[[T], T]]:
    """Decorator factory: ``@register_x("name")`` adds the decorated object to ``registry``."""

    def decorator_for(name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            return registry.register(name, item)

        return decorate

    return decorator_for
