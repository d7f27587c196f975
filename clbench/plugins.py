"""Plugin packages: whatever the ``clbench.plugins`` entry-point group names (ours:
``strategies`` and ``scenarios``, in pyproject.toml; a user's package the same way).

:func:`load_all` imports each package and the modules it lists in ``plugin_modules``
(names relative to the package), once. :class:`PluginFinder` is the registries' default
finder (``clbench.registry.set_finder``; installed when ``clbench`` is imported): a name
that is not registered yet makes it load every plugin. Standard library only.
"""
from __future__ import annotations

import importlib
from importlib import metadata

ENTRY_POINT_GROUP = "clbench.plugins"
#: the attribute of a plugin package that lists its modules (relative names)
PLUGIN_MODULES = "plugin_modules"

_loaded = False


def plugin_packages() -> list[str]:
    """The module names registered under the ``clbench.plugins`` entry point."""
    return [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def plugin_modules() -> list[str]:
    """Every module the plugin packages list (imports the packages, not the modules)."""
    out = []
    for name in plugin_packages():
        package = importlib.import_module(name)
        out += [f"{package.__name__}.{m}" for m in getattr(package, PLUGIN_MODULES, ())]
    return out


def loaded() -> bool:
    """Whether :func:`load_all` has run in this process."""
    return _loaded


def load_all() -> None:
    """Import every plugin package and the modules it lists, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in plugin_modules():
        importlib.import_module(module)


class PluginFinder:
    """The default finder: it knows no shortcut, so a missing name loads every plugin (once)."""

    def find(self, kind: str, name: str) -> None:
        return None

    def load_all(self) -> None:
        load_all()
