"""Datasets held in memory, seeded validation splits and batch iteration."""
from __future__ import annotations

import hashlib
from typing import Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset


class TensorData(Dataset):
    """Samples held as tensors: ``x``, ``y`` and (multi-label) a ``known`` mask.

    ``fingerprint`` names the content (source, split, indices) so that caches keyed by
    it are valid across runs; subsets derive theirs from the parent's.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        known: Optional[torch.Tensor] = None,
        fingerprint: Optional[str] = None,
    ) -> None:
        if len(x) != len(y) or (known is not None and len(known) != len(y)):
            raise ValueError(f"x, y and known differ in length: {len(x)}, {len(y)}, {None if known is None else len(known)}")
        self.x, self.y, self.known = x, y, known
        self.fingerprint = fingerprint or tensor_fingerprint(x, y)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.x, self.y) if self.known is None else (self.x, self.y, self.known)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return tuple(t[i] for t in self.tensors)

    def subset(self, indices: torch.Tensor, tag: str = "") -> "TensorData":
        indices = torch.as_tensor(indices, dtype=torch.long)
        digest = hashlib.sha1(indices.numpy().tobytes()).hexdigest()[:12]
        return TensorData(
            self.x[indices], self.y[indices],
            None if self.known is None else self.known[indices],
            fingerprint=f"{self.fingerprint}/{tag}{digest}",
        )


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (used when a dataset does not name itself)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_of(dataset: Dataset) -> str:
    """The dataset's declared fingerprint, or one derived from a Subset's parent and indices."""
    fp = getattr(dataset, "fingerprint", None)
    if fp is not None:
        return fp
    if isinstance(dataset, Subset):
        digest = hashlib.sha1(torch.as_tensor(dataset.indices).numpy().tobytes()).hexdigest()[:12]
        return f"{fingerprint_of(dataset.dataset)}/{digest}"
    raise TypeError(f"{type(dataset).__name__} has no fingerprint; give it a `fingerprint` attribute")


def subset(dataset: Dataset, indices: torch.Tensor, tag: str = "") -> Dataset:
    """A subset that keeps the fast tensor path where the dataset has one."""
    if isinstance(dataset, TensorData):
        return dataset.subset(indices, tag)
    return Subset(dataset, torch.as_tensor(indices).tolist())


def split_validation(dataset: Dataset, fraction: float, generator: torch.Generator) -> tuple[Dataset, Optional[Dataset]]:
    """Carve a seeded validation split off a training set: ``(train, validation)``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    n = len(dataset)
    n_val = int(round(n * fraction))
    if n_val == 0:
        return dataset, None
    perm = torch.randperm(n, generator=generator)
    return subset(dataset, perm[n_val:].sort().values, "train"), subset(dataset, perm[:n_val].sort().values, "val")


def iterate(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield batches as tuples of tensors; tensor datasets are sliced, not collated."""
    if len(dataset) == 0:
        return
    if isinstance(dataset, TensorData):
        n = len(dataset)
        order = torch.randperm(n, generator=generator) if shuffle else None  # drawn on the CPU generator
        if order is not None and dataset.x.device != order.device:  # resident data: index on its device
            order = order.to(dataset.x.device)
        for start in range(0, n, batch_size):
            if order is None:
                yield tuple(t[start:start + batch_size] for t in dataset.tensors)
            else:
                idx = order[start:start + batch_size]
                yield tuple(t[idx] for t in dataset.tensors)
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)
    for batch in loader:
        yield tuple(batch)


def resident(dataset: Dataset, device: torch.device, limit_bytes: int = 1 << 30) -> Dataset:
    """``dataset`` with its tensors on ``device`` where it is a :class:`TensorData` of at
    most ``limit_bytes`` and ``device`` is not the CPU (small data sets live on the GPU:
    batches are indexed there, with no per-step host-to-device copy); otherwise itself.
    The fingerprint is kept (and not recomputed)."""
    if device.type == "cpu" or not isinstance(dataset, TensorData) or dataset.x.device == device:
        return dataset
    if sum(t.numel() * t.element_size() for t in dataset.tensors) > limit_bytes:
        return dataset
    moved = [t.to(device, non_blocking=True) for t in dataset.tensors]
    return TensorData(moved[0], moved[1], moved[2] if len(moved) > 2 else None, fingerprint=dataset.fingerprint)


def concat(datasets: Sequence[Dataset]) -> Dataset:
    """Concatenate datasets; tensor datasets stay tensor datasets."""
    if all(isinstance(d, TensorData) for d in datasets):
        has_known = [d.known is not None for d in datasets]
        if any(has_known) and not all(has_known):
            raise ValueError("cannot concatenate single-label and multi-label data")
        return TensorData(
            torch.cat([d.x for d in datasets]),
            torch.cat([d.y for d in datasets]),
            torch.cat([d.known for d in datasets]) if all(has_known) else None,
            fingerprint="+".join(d.fingerprint for d in datasets),
        )
    return torch.utils.data.ConcatDataset(list(datasets))


def gather(datasets: Sequence[Dataset], source: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One batch: sample ``rows[k]`` of ``datasets[source[k]]`` for each k, in that order."""
    if all(isinstance(d, TensorData) for d in datasets):
        first = datasets[int(source[0])].tensors
        out = [torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype) for t in first]
        for e in source.unique().tolist():
            at = source == e
            for k, t in enumerate(datasets[e].tensors):
                out[k][at] = t[rows[at]]
        return tuple(out)
    items = [datasets[int(e)][int(r)] for e, r in zip(source, rows)]
    return tuple(torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(len(items[0])))
