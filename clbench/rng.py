"""Seeding: the global generators of python, numpy and torch, and their states.

The strategy's, the data order's and the evaluation's randomness use their own seeded
``torch.Generator``; the global generators are seeded once per run (weight init) and
saved in every checkpoint (:func:`state` / :func:`set_state`)."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the strategy and data order use their own generators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def eval_seed(seed: int, step: int) -> int:
    """The seed of evaluation row ``step`` of a run seeded ``seed`` (batch order, the copy's draws)."""
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


@contextlib.contextmanager
def forked(seed: int, device: torch.device) -> Iterator[None]:
    """A block whose draws from torch's global generator (and ``device``'s, on CUDA) start
    at ``seed`` and are forgotten afterwards: the state outside is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def state() -> dict:
    """The global RNG states of torch (CPU and CUDA), numpy and python, as tensors and
    plain data (``torch.load(weights_only=True)`` reads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def set_state(saved: dict) -> None:
    """Put back what :func:`state` returned."""
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
    n = saved["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = saved["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


@contextlib.contextmanager
def seeded_from(generator: torch.Generator) -> Iterator[None]:
    """Run a block (e.g. a module's weight init) on torch's global RNG seeded from a draw
    of ``generator``, leaving the global RNG as it was: a strategy whose randomness all
    comes from its own generator builds modules mid-stream with this."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
