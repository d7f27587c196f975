"""Harness overhead: the same model on the same split_fmnist stream, trained by a bare
PyTorch loop and by `clbench run` (naive), in one process, both in the standard memory
format (`channels_last=false`: the harness's own cost, not the format's). Prints the wall
time of each training phase and their ratio (target: clbench <= 1.03 x bare).

Speed-ups of the bare loop itself, each timed in the same process and paired with the
plain bare loop (``--variants channels_last,compile``): ``channels_last`` (NHWC tensors,
oneDNN's fused NHWC convolutions; clbench's default learner format) and ``compile``
(``torch.compile`` of the model; compilation time is reported apart). Both change
floating-point results in the last bits.

    python bench/overhead.py [--epochs 1] [--repeats 2] [--train-per-class N] [--variants ...] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from clbench.models.backbones import create_backbone
from clbench.cli.launch import run_from_config
from clbench.config import compose, data_root
from clbench.api.scenario import build_scenario


def bare_loop(cfg, seed: int, variant: str = "plain") -> float:
    """Train backbone + head with SGD over each experience, nothing else: the reference.
    ``variant``: ``plain``, ``channels_last`` or ``compile`` (the speed-ups; clbench runs the learner in channels_last by default)."""
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=seed)
    torch.manual_seed(seed)
    backbone = create_backbone(OmegaConf.to_object(cfg.backbone), scenario.input_shape)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.out_features, scenario.num_classes))
    s = cfg.strategy
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if variant == "compile" else model
    elapsed = 0.0
    if variant == "compile":  # compile (forward and backward) outside the timed region, on a throwaway batch
        t0 = time.perf_counter()
        x0 = scenario.experiences[0].train.x[:s.batch_size]
        step_model(x0).sum().backward()
        opt.zero_grad(set_to_none=True)
        COMPILE_S.append(time.perf_counter() - t0)
    for exp in scenario.experiences:
        x_all, y_all = exp.train.x, exp.train.y
        if variant == "channels_last":
            x_all = x_all.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        for _ in range(s.epochs):
            order = torch.randperm(len(y_all), generator=g)
            for i in range(0, len(order), s.batch_size):
                idx = order[i:i + s.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(step_model(x_all[idx]), y_all[idx])
                loss.backward()
                opt.step()
        elapsed += time.perf_counter() - t0
    return elapsed


COMPILE_S: list[float] = []


def clbench_loop(cfg) -> float:
    record, _ = run_from_config(cfg)
    return sum(record.timing["train_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-per-class", type=int, default=None)
    ap.add_argument("--variants", default="", help="bare-loop speed-ups to time: channels_last,compile")
    ap.add_argument("--json", action="store_true", help="last stdout line: the bench rows as JSON")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["strategy=naive", "scenario=split_fmnist", "logger=none", "progress=false", "device=cpu",
                     f"results_dir={tmp}", f"strategy.epochs={args.epochs}", "val_fraction=0.0", "seed=0",
                     "channels_last=false"]  # as the plain bare loop
        if args.train_per_class:
            overrides.append(f"scenario.train_per_class={args.train_per_class}")
        cfg = compose(overrides)
        bare, ours = [], []
        fast: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.repeats):  # alternate to share any drift in machine load
            first_ours = r % 2 == 1
            if first_ours:
                ours.append(clbench_loop(cfg))
            bare.append(bare_loop(cfg, seed=0))
            if not first_ours:
                ours.append(clbench_loop(cfg))
            for v in variants:
                fast[v].append(bare_loop(cfg, seed=0, variant=v))
            print(f"repeat {r}: bare {bare[-1]:.2f}s  clbench {ours[-1]:.2f}s" +
                  "".join(f"  bare+{v} {fast[v][-1]:.2f}s" for v in variants), flush=True)
    b, o = statistics.median(bare), statistics.median(ours)
    ratio = statistics.median(x / y for x, y in zip(ours, bare))
    print(f"training phase, median of {args.repeats}: bare loop {b:.2f}s, clbench {o:.2f}s, ratio {ratio:.3f} "
          f"(median of paired ratios; target <= 1.03; torch threads: {torch.get_num_threads()})")
    rows = [{"target": "training phase vs a bare PyTorch loop (naive cnn28)", "measured": f"clbench {o:.2f}s",
             "yardstick": f"bare loop {b:.2f}s", "ratio": round(ratio, 3), "limit": "<= 1.03", "met": ratio <= 1.03}]
    for v in variants:
        f = statistics.median(x / y for x, y in zip(fast[v], bare))
        extra = f" (+{statistics.median(COMPILE_S):.1f}s compile, once)" if v == "compile" and COMPILE_S else ""
        print(f"{v}: bare+{v} {statistics.median(fast[v]):.2f}s = {f:.3f}x the plain bare loop{extra}")
        rows.append({"target": f"{v} (bare loop, numerics differ in the last bits)",
                     "measured": f"{statistics.median(fast[v]):.2f}s{extra}", "yardstick": f"bare loop {b:.2f}s",
                     "ratio": round(f, 3), "limit": "< 1 (a gain)", "met": f < 1.0})
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
