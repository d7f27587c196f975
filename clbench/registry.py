"""Name -> builder registries for strategies, scenarios and backbones.

`clbench` never imports a concrete strategy or scenario by module name: packages
announce themselves through the ``clbench.plugins`` entry-point group (ours do, in
pyproject.toml) or call ``register`` directly, and are found here by name.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

ENTRY_POINT_GROUP = "clbench.plugins"


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of builders: raises on duplicates, suggests on typos."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        load_plugins()
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

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_loaded = False


def load_plugins() -> None:
    """Import every package registered under the ``clbench.plugins`` entry point, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value)


def registrar(registry: Registry[T]) -> Callable[[str], Callable[[T], T]]:
    """Decorator factory: ``@register_x("name")`` adds the decorated object to ``registry``."""

    def decorator_for(name: str) -> Callable[[T], T]:
        def decorate(item: T) -> T:
            return registry.register(name, item)

        return decorate

    return decorator_for
