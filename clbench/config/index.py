"""The config index: what the plugins register, known without importing them (or torch).

The first full load of the plugins (``IndexFinder.load_all``, ``clbench.config.finder``)
writes a small JSON file into the cache folder (``$CLBENCH_CACHE``, default ``~/.cache/clbench``;
``CLBENCH_CACHE=off``: no index, every command takes the full load). It holds:

- ``groups``: per config group (strategy, scenario, addon, backbone, logger) and option,
  the config's class, its fields (name, type, default, valid range, help) and the module
  whose import stores it in Hydra's ConfigStore;
- ``registries``: per registry kind and name, the module whose import registers it;
- ``listing``: what ``clbench list`` shows.

It is keyed by a fingerprint of the clbench version, the Python environment and the
source files (path, size, mtime) of clbench and of every ``clbench.plugins`` package,
found without importing them; a stale or missing index is ignored, and the next full
load rewrites it. (So a plugin must register the same names whenever its files are the
same: a registration that depends on something else, e.g. an optional package being
installed, is seen only after the next change to the sources.)

Uses: a refused ``clbench run`` composes its config from the index (:func:`synthetic`,
``clbench.config.validate.check_composition``), so an unknown name, key or a value of the wrong
type is refused without importing torch; ``clbench list`` reads it; a run imports only
the modules of the options Hydra loads (:func:`install_placeholders`) and registries
import only the module of a name they are asked for (:func:`module_for`, through
``clbench.config.finder``); :func:`entry` gives an option's fields (sweeps, validation).
This module reads and writes the index; it imports no plugin and nothing of the config
layer above it (what to store and what to load is handed to it).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from clbench.fields import HELP, VALID, field_meta
from clbench.paths import cache_root
from clbench.plugins import plugin_packages
from clbench.registry import REGISTRIES

INDEX_VERSION = 2
#: the config groups whose options the index records
GROUPS = ("strategy", "scenario", "addon", "backbone", "logger")
#: the pseudo-module of options stored by ``clbench.config.store_builtins`` (backbone and
#: logger presets, ``addon=none``)
BUILTINS = "clbench.config"


# -- where the index lives and whether it is fresh ---------------------------------------------

def _package_dirs() -> list[tuple[str, Path]]:
    """(package, its folder or file) for clbench and each ``clbench.plugins`` package,
    found with ``importlib.util.find_spec`` on the top-level name (imports nothing)."""
    import clbench

    found = [("clbench", Path(clbench.__path__[0]))]
    for name in plugin_packages():
        top = name.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            found.append((top, Path("<missing>")))
        elif spec.submodule_search_locations:
            found += [(top, Path(p)) for p in spec.submodule_search_locations]
        elif spec.origin:
            found.append((top, Path(spec.origin)))
    return found


def fingerprint() -> str:
    """A hash of the clbench version, the plugin entry points and every ``.py`` file
    (path, size, mtime) of clbench and the plugin packages."""
    from clbench import __version__

    h = hashlib.sha256(f"{INDEX_VERSION}|{__version__}|{sys.prefix}|{sys.version_info[:2]}|{plugin_packages()}".encode())
    for package, where in _package_dirs():
        h.update(f"|{package}:{where}".encode())
        if where.is_file():
            files = [where]
        else:
            files = sorted(Path(d) / f for d, _, names in os.walk(where) for f in names if f.endswith(".py"))
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"|{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def index_path(root: Optional[Path] = None) -> Optional[Path]:
    """The index file: one per installation (a hash of the packages' locations)."""
    root = cache_root() if root is None else root
    if root is None:
        return None
    where = "|".join([sys.prefix, *(f"{p}:{d}" for p, d in _package_dirs())])
    return root / f"config-index-{hashlib.sha256(where.encode()).hexdigest()[:12]}.json"


_cache: dict[str, Any] = {}  # path -> the fresh index read in this process (or None: stale/missing)


def load() -> Optional[dict]:
    """The index when it is fresh, else None (also when the cache is off)."""
    path = index_path()
    if path is None:
        return None
    key = str(path)
    if key not in _cache:
        _cache[key] = _read(path, fingerprint())
    return _cache[key]


def _read(path: Path, fp: str) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or data.get("fingerprint") != fp:
        return None
    return data if well_formed(data) else None  # the right fingerprint but damaged: stale, rebuilt


def well_formed(data: dict) -> bool:
    """Whether an index has every part its readers use, of the right shape (a truncated or
    hand-edited file with the right fingerprint is treated as stale)."""
    def mapping(value: Any, of: Callable[[Any], bool]) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and of(v) for k, v in value.items())

    def field_ok(f: Any) -> bool:
        if not (isinstance(f, list) and len(f) == 5 and isinstance(f[0], str) and isinstance(f[1], str)
                and (f[3] is None or isinstance(f[3], dict)) and isinstance(f[4], str)):
            return False
        try:
            parse_type(f[1])
        except (KeyError, ValueError, IndexError):
            return False
        return True

    def entry_ok(e: Any) -> bool:
        if not isinstance(e, dict) or not isinstance(e.get("module"), str):
            return False
        fields = e.get("fields")
        if fields is not None:
            return isinstance(e.get("class"), str) and isinstance(fields, list) and all(map(field_ok, fields))
        return e.get("value") is None or isinstance(e.get("value"), dict)

    listing = data.get("listing")
    return (mapping(data.get("registries"), lambda names: mapping(names, lambda m: isinstance(m, str)))
            and mapping(data.get("groups"), lambda options: mapping(options, entry_ok))
            and isinstance(listing, dict) and isinstance(listing.get("strategies"), dict)
            and isinstance(listing.get("scenarios"), dict))


def is_fresh() -> bool:
    return load() is not None


def invalidate() -> None:
    """Forget what this process read (the next call reads the file again)."""
    _cache.clear()


def module_for(kind: str, name: str) -> Optional[str]:
    """The module whose import registers ``name`` in the registry of ``kind`` (None: unknown
    to the index, or no fresh index)."""
    index = load()
    return None if index is None else index["registries"].get(kind, {}).get(name)


# -- writing it -----------------------------------------------------------------------------

def after_full_load(build_index: Callable[[str], dict], before: Optional[str] = None) -> None:
    """Called once every plugin is imported: (re)write a stale or missing index with
    ``build_index(fingerprint)``, unless the sources changed since ``before`` (their
    fingerprint when the load began). Never fails a command: the index is only a shortcut."""
    path = index_path()
    if path is None:
        return
    invalidate()
    fp = fingerprint()
    if (before is not None and fp != before) or _read(path, fp) is not None:
        return
    try:
        data = build_index(fp)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-index.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - e.g. a read-only cache: the next command is just slower
        return
    finally:
        invalidate()


def _ours(module: Optional[str], packages: list[str]) -> bool:
    """Whether ``module`` belongs to clbench or to a plugin package (not a test double)."""
    return bool(module) and any(module == p or module.startswith(p + ".") for p in packages)


def build(fp: Optional[str], *, builtins: dict[str, set[str]], listing: Callable[[dict], dict]) -> dict:
    """The index of what is registered and stored now (call after the full load, with
    the builtin options stored): ``fp`` the sources' fingerprint (None: now);
    ``builtins`` the options the config layer stores itself, per group; ``listing(only)``
    what ``clbench list`` shows of the registered names ``only``."""
    from hydra.core.config_store import ConfigStore

    packages = ["clbench", *plugin_packages()]
    registries: dict[str, dict[str, str]] = {}
    for registry in list(REGISTRIES):
        for name in registry.items():
            origin = registry.origin(name)
            if _ours(origin, packages) and not name.startswith("_"):
                registries.setdefault(registry.kind, {})[name] = origin
    fp = fingerprint() if fp is None else fp
    repo = ConfigStore.instance().repo
    groups: dict[str, dict[str, dict]] = {}
    for group in GROUPS:
        for key in list(dict.keys(repo.get(group, {}))):
            name = key[:-5] if key.endswith(".yaml") else key
            node = dict.__getitem__(repo[group], key)
            if name.startswith("_") or isinstance(node, _Pending):
                continue
            origin = registries.get(group, {}).get(name)
            if origin and not _ours(origin, ["clbench"]):
                module = origin  # e.g. backbone=lenet5, stored by strategies.tame
            elif name in builtins.get(group, ()):
                module = BUILTINS
            else:
                continue  # not stored by a plugin module on import (e.g. a test double)
            groups.setdefault(group, {})[name] = {"module": module, **_describe(node)}
    return {"version": INDEX_VERSION, "fingerprint": fp, "registries": registries, "groups": groups,
            "listing": listing(registries)}


def _describe(config_node: Any) -> dict:
    """A stored option: its config class and fields (type names and defaults), or
    ``fields: None`` where a type has no name here (then the module is imported)."""
    from omegaconf import OmegaConf

    node = config_node.node
    cls = OmegaConf.get_type(node)
    values = OmegaConf.to_container(node, resolve=False)
    out: dict[str, Any] = {"package": config_node.package, "provider": config_node.provider}
    if cls is None or not dataclasses.is_dataclass(cls):
        return {**out, "class": None, "fields": None, "value": values}
    fields = []
    try:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            text = type_name(hints[f.name])
            if text is None:
                raise TypeError(f.name)
            valid = field_meta(cls, f.name, VALID)
            fields.append([f.name, text, values[f.name], None if valid is None else valid.to_data(),
                           field_meta(cls, f.name, HELP) or ""])
        json.dumps(fields)
    except Exception:  # noqa: BLE001 - anything unusual: the option is imported when needed
        fields = None
    return {**out, "class": cls.__name__, "class_module": cls.__module__, "fields": fields}


def type_name(t: Any) -> Optional[str]:
    """``int``, ``Optional[List[int]]``, ... for the types a config field may have; None otherwise."""
    if t is Any:
        return "Any"
    if t in (int, float, str, bool):
        return t.__name__
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Union and len(args) == 2 and type(None) in args:
        inner = type_name(args[0] if args[1] is type(None) else args[1])
        return None if inner is None else f"Optional[{inner}]"
    if origin is list:
        inner = type_name(args[0]) if args else "Any"
        return None if inner is None else f"List[{inner}]"
    if origin is dict:
        k, v = (type_name(a) for a in args) if args else ("Any", "Any")
        return None if k is None or v is None else f"Dict[{k}, {v}]"
    return None


_TYPES: dict[str, Any] = {"Any": Any, "int": int, "float": float, "str": str, "bool": bool}


def parse_type(text: str) -> Any:
    """The inverse of :func:`type_name`."""
    text = text.strip()
    head, _, rest = text.partition("[")
    if not rest:
        return _TYPES[text]
    inner = rest[:-1]
    if head == "Optional":
        return Optional[parse_type(inner)]
    if head == "List":
        return typing.List[parse_type(inner)]
    if head == "Dict":
        depth, cut = 0, None
        for i, c in enumerate(inner):
            depth += c == "["
            depth -= c == "]"
            if c == "," and depth == 0:
                cut = i
                break
        return typing.Dict[parse_type(inner[:cut]), parse_type(inner[cut + 1:])]
    raise ValueError(f"unknown type {text!r}")


def listing() -> Optional[dict]:
    """What ``clbench list`` shows, from the fresh index (None: no fresh index)."""
    index = load()
    return None if index is None else index["listing"]


def entry(group: str, name: str) -> Optional[dict]:
    """The index entry of option ``name`` of config ``group`` (None: no fresh index, or not in it)."""
    index = load()
    return None if index is None else index["groups"].get(group, {}).get(name)


def entry_keys(found: dict) -> Optional[list[str]]:
    """The keys of an indexed option, in declaration order, without Hydra's ``defaults``."""
    if found.get("fields") is not None:
        return [f[0] for f in found["fields"] if f[0] != "defaults"]
    if found.get("value") is not None:
        return [k for k in found["value"] if k != "defaults"]
    return None


_synthetic = False


@contextlib.contextmanager
def synthetic() -> Iterator[None]:
    """Inside, an option Hydra loads that is not imported yet is built from the index (a
    dataclass with the same name, fields, types and defaults) instead of importing its
    module: composing then refuses exactly what the real configs refuse, without torch.
    Nothing built here stays in the ConfigStore."""
    global _synthetic
    saved, _synthetic = _synthetic, True
    try:
        yield
    finally:
        _synthetic = saved


class _Pending:
    """A ConfigStore option not imported yet: imported (or, inside :func:`synthetic`,
    built from the index) when Hydra looks it up."""

    def __init__(self, group: str, name: str, entry: dict) -> None:
        self.group, self.name, self.entry = group, name, entry
        self._built: Any = None

    def synthetic_node(self) -> Any:
        if self._built is None and (self.entry.get("fields") is not None or self.entry.get("value") is not None):
            from hydra.core.config_store import ConfigNode
            from omegaconf import OmegaConf

            e = self.entry
            if e.get("fields") is None:
                node = OmegaConf.create(copy.deepcopy(e["value"]))
            else:
                node = OmegaConf.structured(synthetic_class(e))
            self._built = ConfigNode(name=f"{self.name}.yaml", node=node, group=self.group,
                                     package=e.get("package"), provider=e.get("provider"))
        return self._built

    def resolve(self, group: "_LazyGroup", key: str) -> Any:
        if _synthetic:
            built = self.synthetic_node()
            if built is not None:
                return built
        from hydra.core.config_store import ConfigStore

        def stored() -> Any:  # Hydra composes from a deep copy of the store: read the live one
            return dict.get(ConfigStore.instance().repo.get(self.group) or {}, key)

        module = self.entry.get("module")
        if not isinstance(stored(), (_Pending, type(None))):
            pass  # imported since this copy of the store was made
        elif module == BUILTINS:
            _HOOKS["store_builtins"]()
        elif module:
            importlib.import_module(module)
        if isinstance(stored(), (_Pending, type(None))):
            _HOOKS["load_all"]()
        value = stored()
        if isinstance(value, _Pending) or value is None:
            dict.pop(group, key, None)
            from hydra.plugins.config_source import ConfigLoadError

            raise ConfigLoadError(f"Structured config {key} not found in {self.group} (the config index is stale)")
        dict.__setitem__(group, key, value)
        return value

    def __deepcopy__(self, memo: dict) -> "_Pending":
        return self  # the index entry is never changed


def synthetic_class(entry: dict) -> type:
    """A dataclass with the indexed option's class name, fields, types, defaults, declared
    ranges and help: what composing or validating needs of the real config class."""
    def field_of(value: Any, valid: Optional[dict], help: str) -> Any:
        meta = {k: v for k, v in ((VALID, valid), (HELP, help)) if v}
        if isinstance(value, (list, dict)):
            return dataclasses.field(default_factory=lambda v=value: copy.deepcopy(v), metadata=meta)
        return dataclasses.field(default=value, metadata=meta)

    return dataclasses.make_dataclass(
        entry["class"], [(f[0], parse_type(f[1]), field_of(f[2], f[3], f[4])) for f in entry["fields"]],
        namespace={"__module__": entry.get("class_module", __name__)})


class _LazyGroup(dict):
    """A ConfigStore group whose options may be :class:`_Pending` (resolved on lookup)."""

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if isinstance(value, _Pending):
            value = value.resolve(self, key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def values(self):  # type: ignore[override]
        return [self[k] for k in list(self.keys())]

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in list(self.keys())]

    def __reduce_ex__(self, protocol: Any) -> Any:  # copy and pickle placeholders as they are
        return (_LazyGroup, (), None, None, iter(list(dict.items(self))))


#: what a placeholder calls to get its option stored (set by :func:`install_placeholders`)
_HOOKS: dict[str, Callable[[], None]] = {"store_builtins": lambda: None, "load_all": lambda: None}


def install_placeholders(*, store_builtins: Callable[[], None], load_all: Callable[[], None]) -> bool:
    """Put every indexed option that is not stored yet into the ConfigStore as a
    placeholder; True when there was a fresh index to do it with. A placeholder that
    Hydra looks up imports its module, calls ``store_builtins`` (an option the config
    layer stores itself) or, where that did not store it, ``load_all``."""
    index = load()
    if index is None:
        return False
    _HOOKS.update(store_builtins=store_builtins, load_all=load_all)
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    for group, options in index["groups"].items():
        current = repo.get(group)
        lazy = current if isinstance(current, _LazyGroup) else _LazyGroup(current or {})
        repo[group] = lazy
        for name, entry in options.items():
            key = f"{name}.yaml"
            if key not in lazy:
                dict.__setitem__(lazy, key, _Pending(group, name, entry))
    return True
