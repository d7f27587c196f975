"""Name -> builder registries (strategies, scenarios, backbones, loggers, ...).

A leaf module: it imports nothing from clbench. A registry raises on a duplicate name
and suggests the closest names on a typo. Asking for a name that is not registered yet
asks the installed :class:`Finder` to import what registers it: by default
``clbench.plugins`` (every package of the ``clbench.plugins`` entry-point group); the
config layer installs one that reads its index and imports only the one module needed
(``clbench.config.finder``).
"""
from __future__ import annotations

import difflib
import sys
import weakref
from typing import Callable, Generic, Iterator, Optional, Protocol, TypeVar

T = TypeVar("T")

#: every registry made in this process (the config index records who registers what)
REGISTRIES: "weakref.WeakSet[Registry]" = weakref.WeakSet()


class Finder(Protocol):
    """What a registry asks when a name is missing."""

    def find(self, kind: str, name: str) -> None:
        """A shortcut: import the one module that registers ``name`` in the registry of
        ``kind``, where the finder knows it (otherwise do nothing)."""

    def load_all(self) -> None:
        """Import everything that registers names (so that listings are complete)."""


_finder: Optional[Finder] = None


def set_finder(finder: Optional[Finder]) -> Optional[Finder]:
    """Install the finder every registry asks for missing names; returns the previous one."""
    global _finder
    previous, _finder = _finder, finder
    return previous


def current_finder() -> Optional[Finder]:
    return _finder


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of builders: raises on duplicates, suggests on typos."""

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
        """Registered names (after the finder's full load); names starting with "_" (test
        doubles) are not listed."""
        if _finder is not None:
            _finder.load_all()
        return sorted(n for n in self._items if not n.startswith("_"))

    def items(self) -> dict[str, T]:
        """What is registered now (no import): name -> item."""
        return dict(self._items)

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
        """Ask the finder for ``name``: its shortcut first, then the full load."""
        if _finder is None:
            return
        _finder.find(self.kind, name)
        if name not in self._items:
            _finder.load_all()


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


def registrar(registry: Registry[T]) -> Callable[[str], Callable[[T], T]]:
    """Decorator factory: ``@register_x("name")`` adds the decorated object to ``registry``."""

    def decorator_for(name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            return registry.register(name, item)

        return decorate

    return decorator_for
