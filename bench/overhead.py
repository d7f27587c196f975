"""Harness overhead: the same model on the same split_fmnist stream, trained by a bare
PyTorch loop and by `clbench run` (naive), in one process. Prints the wall time of
each training phase and their ratio (target: clbench <= 1.05 x bare).

    python bench/overhead.py [--epochs 1] [--repeats 2] [--train-per-class N]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from clbench.backbones import create_backbone
from clbench.launch import run_from_config
from clbench.config import compose, data_root
from clbench.scenario import build_scenario


def bare_loop(cfg, seed: int) -> float:
    """Train backbone + head with SGD over each experience, nothing else: the reference."""
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=seed)
    torch.manual_seed(seed)
    backbone = create_backbone(OmegaConf.to_object(cfg.backbone), scenario.input_shape)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.out_features, scenario.num_classes))
    s = cfg.strategy
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    elapsed = 0.0
    for exp in scenario.experiences:
        x_all, y_all = exp.train.x, exp.train.y
        t0 = time.perf_counter()
        for _ in range(s.epochs):
            order = torch.randperm(len(y_all), generator=g)
            for i in range(0, len(order), s.batch_size):
                idx = order[i:i + s.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                loss.backward()
                opt.step()
        elapsed += time.perf_counter() - t0
    return elapsed


def clbench_loop(cfg) -> float:
    record, _ = run_from_config(cfg)
    return sum(record.timing["train_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-per-class", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["strategy=naive", "scenario=split_fmnist", "logger=none", "progress=true", "device=cpu",
                     f"results_dir={tmp}", f"strategy.epochs={args.epochs}", "val_fraction=0.0", "seed=0"]
        if args.train_per_class:
            overrides.append(f"scenario.train_per_class={args.train_per_class}")
        cfg = compose(overrides)
        bare, ours = [], []
        for r in range(args.repeats):  # alternate to share any drift in machine load
            bare.append(bare_loop(cfg, seed=0))
            ours.append(clbench_loop(cfg))
            print(f"repeat {r}: bare {bare[-1]:.2f}s  clbench {ours[-1]:.2f}s")
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"training phase, median of {args.repeats}: bare loop {b:.2f}s, clbench {o:.2f}s, ratio {o / b:.3f} "
          f"(torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
