"""Outputs of a frozen encoder, computed once per dataset and cached on disk.

A strategy with a frozen encoder (DKVB, linear probes) pays for the encoder once per
dataset, not once per epoch, and a second run with the same encoder, transform and
data reads the features back from disk. The cache key hashes the encoder (the source
code of its module classes, its tensors, structure and settings), the CONTENT of the
inputs (tensor bytes, or image-file bytes) and the device type; the cache stores
features only, and labels always come from the dataset itself; an entry's file name carries a
checksum of its features, verified on every read (a damaged entry is recomputed, never used),
and a cache that cannot be written is warned about once and skipped. Cache directory: the ``cache`` argument, else
``<cache_root()>/features``; ``off`` (argument or ``$CLBENCH_CACHE``) disables it, and an
encoder with ``cache_worthy = False`` (e.g. :class:`Flatten`) is never cached.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from torch.utils.data import Subset

from clbench.api.data import TensorData, fingerprint_of, iterate
from clbench.paths import OFF, cache_root

#: how many encode() calls were served from disk / computed (for benchmarks and tests)
stats = {"hits": 0, "misses": 0}


class Flatten(nn.Module):
    """The identity encoder: raw pixels flattened to one vector per sample. Not worth a
    disk cache (``cache_worthy``): reading it back costs more than recomputing it."""

    cache_worthy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


def cache_dir(cache: Union[str, Path, bool, None] = None) -> Optional[Path]:
    """Where features are cached, or None when caching is off."""
    if cache is False:
        return None
    if cache is None or cache is True:
        root = cache_root()
        return None if root is None else root / "features"
    if str(cache).strip().lower() in OFF:
        return None
    return Path(cache).expanduser()


def encoder_digest(encoder: nn.Module) -> str:
    """A hash of what decides the encoder's outputs: the source code of every module
    class in it (a changed input transform is a new encoder), its structure, its plain
    settings (e.g. resize, normalisation) and every tensor (parameters and buffers)."""
    h = hashlib.sha256(repr(encoder).encode())
    for name, module in encoder.named_modules():
        h.update(_code_version(type(module)).encode())
        settings = {k: v for k, v in vars(module).items()
                    if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool, tuple, type(None)))}
        h.update(f"{name}:{type(module).__qualname__}:{sorted(settings.items())}".encode())
        for kind, tensors in (("p", module.named_parameters(recurse=False)), ("b", module.named_buffers(recurse=False))):
            for tname, t in tensors:
                h.update(f"{name}.{tname}:{kind}:{tuple(t.shape)}:{t.dtype}".encode())
                h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _code_version(cls: type) -> str:
    """The source of ``cls`` and its bases (torch's own modules by torch's version)."""
    import inspect

    parts = []
    for klass in cls.__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(("torch.", "builtins")) or klass is object:
            parts.append(f"{module}.{klass.__qualname__}@torch{torch.__version__}")
            continue
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):
            parts.append(f"{module}.{klass.__qualname__}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def content_digest(dataset: Dataset) -> str:
    """A hash of a dataset's INPUTS (labels play no part in features): the bytes of its
    input tensor, or of its image files (plus the decode size), or of its parent's
    inputs and the subset's indices. Memoised on the dataset object."""
    cached = getattr(dataset, "_content_digest", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    if isinstance(dataset, TensorData):
        x = dataset.x.detach().cpu().contiguous()
        h.update(f"tensor:{tuple(x.shape)}:{x.dtype}".encode())
        h.update(x.view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(dataset, Subset):
        h.update(content_digest(dataset.dataset).encode())
        h.update(torch.as_tensor(dataset.indices).numpy().tobytes())
    elif isinstance(getattr(dataset, "paths", None), (list, tuple)):
        h.update(f"files:{type(dataset).__qualname__}:{getattr(dataset, 'image_size', None)}".encode())
        h.update(_code_version(type(dataset)).encode())
        for p in dataset.paths:
            h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    else:  # anything else: hash the inputs as the dataset yields them
        h.update(f"items:{type(dataset).__qualname__}".encode())
        for tensors in iterate(dataset, 256, shuffle=False):
            h.update(tensors[0].detach().cpu().contiguous().numpy().tobytes())
    digest = h.hexdigest()
    try:
        dataset._content_digest = digest  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - objects that refuse attributes
        pass
    return digest


def cache_key(encoder: nn.Module, dataset: Dataset, device: torch.device) -> str:
    """The file name under which ``encoder``'s features of ``dataset`` are cached: the
    encoder (code, weights, settings), the inputs' content and the device type."""
    h = hashlib.sha256()
    h.update(encoder_digest(encoder).encode())
    h.update(content_digest(dataset).encode())
    h.update(torch.device(device).type.encode())
    return h.hexdigest()[:40]


def _labels(dataset: Dataset) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Labels (and multi-label masks) read from the dataset itself, never from a cache."""
    if isinstance(dataset, TensorData):
        return dataset.y, dataset.known
    if isinstance(dataset, Subset):
        y, known = _labels(dataset.dataset)
        idx = torch.as_tensor(dataset.indices, dtype=torch.long)
        return y[idx], None if known is None else known[idx]
    ys, knowns = [], []
    for tensors in iterate(dataset, 256, shuffle=False):
        ys.append(torch.as_tensor(tensors[1]))
        if len(tensors) > 2:
            knowns.append(tensors[2])
    return torch.cat(ys), torch.cat(knowns) if knowns else None


@torch.no_grad()
def compute(encoder: nn.Module, dataset: Dataset, *, device: torch.device, batch_size: int = 256) -> TensorData:
    """Run ``encoder`` (eval mode) over ``dataset``; labels and masks are kept."""
    encoder.eval()
    feats, ys, knowns = [], [], []
    for tensors in iterate(dataset, batch_size, shuffle=False):
        feats.append(encoder(tensors[0].to(device)).cpu())
        ys.append(tensors[1])
        if len(tensors) > 2:
            knowns.append(tensors[2])
    if not feats:
        raise ValueError("cannot encode an empty dataset")
    return TensorData(
        torch.cat(feats), torch.cat(ys), torch.cat(knowns) if knowns else None,
        fingerprint=f"{fingerprint_of(dataset)}@encoded",
    )


def encode(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int = 256,
    cache: Union[str, Path, bool, None] = None,
) -> TensorData:
    """``dataset`` with each input replaced by ``encoder``'s output, read from the
    on-disk cache where this encoder already encoded these exact inputs. The cache holds
    features only; labels always come from ``dataset``."""
    where = cache_dir(cache) if getattr(encoder, "cache_worthy", True) else None
    if where is None:
        stats["misses"] += 1
        return compute(encoder, dataset, device=device, batch_size=batch_size)
    key = cache_key(encoder, dataset, device)
    for path in sorted(where.glob(f"{key}*.pt")) if where.is_dir() else []:
        feats = _read_entry(path, key, len(dataset))
        if feats is not None:
            y, known = _labels(dataset)
            stats["hits"] += 1
            return TensorData(feats, y, known, fingerprint=f"{fingerprint_of(dataset)}@encoded")
    stats["misses"] += 1
    data = compute(encoder, dataset, device=device, batch_size=batch_size)
    _store(data.x, where, key)
    return data


def checksum(features: torch.Tensor) -> str:
    """A hash of a features tensor (shape, dtype, bytes): part of its cache entry's file name,
    so an entry whose content changed (zeroed, truncated, another tensor) is never used."""
    t = features.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}:{t.dtype}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:16]


def _entry_name(key: str, features: torch.Tensor) -> str:
    return f"{key}-{checksum(features)}.pt"


def _read_entry(path: Path, key: str, n: int) -> Optional[torch.Tensor]:
    """The features of a cache entry if its checksum and length hold; a damaged or mismatched
    entry is deleted (and recomputed by the caller), never trusted."""
    if path.name[len(key):len(key) + 1] not in ("-", ".") or not path.is_file():
        return None  # not an entry of this key
    try:
        feats = torch.load(path, map_location="cpu", weights_only=True)["features"]
        if isinstance(feats, torch.Tensor) and len(feats) == n and path.name == _entry_name(key, feats):
            return feats
    except Exception:  # noqa: BLE001 - unreadable: recomputed
        pass
    try:  # damaged, or an entry of an older clbench (``<key>.pt``, no checksum)
        path.unlink()
    except OSError:
        pass
    return None


#: cache folders this process could not write to (warned about once each)
_warned: set = set()


def _store(features: torch.Tensor, where: Path, key: str) -> None:
    """Write a cache entry atomically; a cache that cannot be written (read-only, a file where
    its folder should be, a full disk) is warned about once and the run goes on without it."""
    try:
        _atomic_save({"features": features}, where / _entry_name(key, features))
    except OSError as err:
        if str(where) not in _warned:
            _warned.add(str(where))
            warnings.warn(f"the feature cache {where} cannot be written ({err.strerror or err}): running without "
                          f"it (features are recomputed; set CLBENCH_CACHE to a writable folder, or off)",
                          RuntimeWarning, stacklevel=3)


def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_frozen_encoder(name: str, backbone_config, input_shape: tuple[int, ...]) -> nn.Module:
    """A frozen encoder by name: ``identity`` (flattened pixels) or ``backbone`` (the
    run's backbone config, e.g. cnn28 or resnet50); parameters never train."""
    if name == "identity":
        encoder: nn.Module = Flatten()
    elif name == "backbone":
        if backbone_config is None:
            raise ValueError("encoder='backbone' needs a backbone config; pass backbone=... or use encoder=identity")
        from clbench.models.backbones import create_backbone

        encoder = create_backbone(backbone_config, input_shape)
    else:
        raise ValueError(f"unknown encoder {name!r}; valid choices: 'backbone', 'identity'")
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval()


def output_dim(encoder: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Width of the encoder's (flattened) output for one input of ``input_shape``."""
    if isinstance(encoder, Flatten):
        n = 1
        for s in input_shape:
            n *= int(s)
        return n
    width = getattr(encoder, "out_features", None)
    if width is not None:
        return int(width)
    with torch.no_grad():
        return int(encoder.eval()(torch.zeros(1, *input_shape)).flatten(1).shape[1])
