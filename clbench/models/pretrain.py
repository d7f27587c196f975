"""Supervised pretraining of a backbone on an auxiliary data set, cached on disk.

For methods whose premise is a frozen PRETRAINED trunk (CLR, MULTI-LANE) run offline,
where no hub weights can be had: the trunk is trained with a temporary linear head on
auxiliary data the protocol handed over (``clbench.api.auxdata``, never the stream's own),
and its weights are cached under a key made of the caller's settings and the
architecture's tensor layout, so a changed architecture never loads stale weights.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.data import TensorData
from clbench.models.backbones import BackboneConfig, create_backbone
from clbench.progress import setup_progress

def pretrain_backbone(config: BackboneConfig, input_shape: tuple[int, ...], data: TensorData, *, epochs: int,
                      seed: int, batch_size: int, device: torch.device, cache_dir: Path, file_prefix: str,
                      key_settings: dict, meta: dict) -> tuple[Path, dict]:
    """Train ``config``'s backbone (random init, built for ``input_shape``) and a linear
    head on ``data`` resized to ``input_shape`` (Adam 1e-3, ``batch_size``, 90% of the
    images; accuracy on the other 10% goes into the facts); cache the trunk's weights.

    ``key_settings`` (plain data) plus the tensor layout key the cache file
    ``<cache_dir>/<file_prefix>-<key>.pt``. Returns the weights file (loadable as
    ``backbone.weights``) and facts for the record (``meta`` plus what was measured)."""
    config = dataclasses.replace(config, weights="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = create_backbone(config, tuple(input_shape))
        head = nn.Linear(backbone.out_features, int(data.y.max()) + 1)
    layout = [(k, list(v.shape)) for k, v in backbone.trunk.state_dict().items()]  # the architecture as built now
    key = hashlib.sha1(json.dumps({**key_settings, "layout": layout}, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"{file_prefix}-{key}.pt"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        return path, {**json.loads(meta_path.read_text()), "cached": True}

    x, y = data.x.float(), data.y.long()
    x = F.interpolate(x, size=tuple(input_shape[1:]), mode="bilinear", align_corners=False).clamp(0, 1)
    x = x.expand(-1, input_shape[0], -1, -1).contiguous()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    n_held = len(y) // 10
    held, train = perm[:n_held], perm[n_held:]

    model = nn.Sequential(backbone, head).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    if device.type == "cuda":  # small data: resident on the device, indexed there (no per-step copies)
        x, y = x.to(device), y.to(device)
    per_epoch = -(-len(train) // batch_size)
    with setup_progress(f"pretrain {file_prefix}", epochs * per_epoch) as advance:
        for epoch in range(epochs):
            order = train[torch.randperm(len(train), generator=g)]
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size].to(x.device)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
                if advance is not None:
                    advance(1)
            if advance is not None:
                advance.set_postfix(f"epoch {epoch + 1}/{epochs}")
    model.eval()
    with torch.no_grad():
        held = held.to(x.device)
        held_acc = float((model(x[held]).argmax(1) == y[held]).float().mean())
    facts: dict[str, Any] = {**meta, "train_images": len(train), "held_out_images": n_held,
                             "held_out_accuracy": held_acc, "epochs": epochs, "seed": seed,
                             "optimizer": f"Adam 1e-3, batch {batch_size}", "settings_key": key}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.cpu() for k, v in backbone.trunk.state_dict().items()}, tmp)
    os.replace(tmp, path)
    meta_path.write_text(json.dumps(facts, indent=1))
    return path, {**facts, "cached": False}


# -- where a frozen trunk's weights come from (CLR, MULTI-LANE) ----------------------------
#: ``strategy.trunk``: the backbone's own weights, supervised pretraining on scikit-learn's
#: digits, a random frozen trunk (not the methods' premise; recorded), or ``auto``
TRUNK_CHOICES = ("auto", "backbone", "digits", "random")


def resolve_trunk(choice: str, backbone: BackboneConfig, *, method: str, offline_backbone: str,
                  weights_hint: str) -> str:
    """Where a method's frozen pretrained trunk comes from: ``backbone`` (``backbone.weights``),
    ``digits`` (pretrained here, offline) or ``random``. ``auto`` picks ``backbone`` when
    weights are given and ``digits`` for ``offline_backbone``; otherwise it refuses a
    silent random trunk, naming the ways out (``weights_hint``: how to pass weights)."""
    if choice not in TRUNK_CHOICES:
        raise ValueError(f"unknown strategy.trunk {choice!r}; valid choices: {list(TRUNK_CHOICES)}")
    has_weights = backbone.weights != "none"
    if choice == "auto":
        if has_weights:
            return "backbone"
        if backbone.name == offline_backbone:
            return "digits"
        raise ValueError(
            f"{method} needs a frozen pretrained trunk, but backbone.weights=none for {backbone.name}. Pass "
            f"{weights_hint}, or strategy.trunk=digits to pretrain on sklearn digits, or strategy.trunk=random "
            f"for a random frozen trunk (recorded as a deviation)")
    if choice == "backbone" and not has_weights:
        raise ValueError(f"strategy.trunk=backbone needs backbone.weights ({weights_hint})")
    if choice in ("digits", "random") and has_weights:
        raise ValueError(f"strategy.trunk={choice} builds its own trunk weights, but backbone.weights="
                         f"{backbone.weights!r} was given too; use strategy.trunk=backbone or backbone.weights=none")
    return choice


def pretrain_on_digits(config: BackboneConfig, input_shape: tuple[int, ...], digits: TensorData, *, epochs: int,
                       seed: int, batch_size: int, device: torch.device, cache_dir: Path, method: str,
                       key_settings: dict, data_note: str, meta: Optional[dict] = None) -> tuple[Path, dict]:
    """:func:`pretrain_backbone` on scikit-learn's digits (the aux data the protocol handed
    over), cached as ``<cache_dir>/<method>-digits-<backbone>-<key>.pt``; ``key_settings``
    (the method's recipe name and settings) keys the cache. Returns the weights file and
    facts for the record."""
    return pretrain_backbone(config, input_shape, digits, epochs=epochs, seed=seed, batch_size=batch_size,
                             device=device, cache_dir=cache_dir, file_prefix=f"{method}-digits-{config.name}",
                             key_settings=key_settings, meta={"data": data_note, **(meta or {})})
