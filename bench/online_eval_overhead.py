"""What evaluation inside experiences (``eval_every=N``) costs: the same er run on real
split_fmnist with and without it; prints one JSON line with the run's seconds, the online
points' seconds (record ``extra.online.seconds``), seconds per point, the evaluation copy's
own milliseconds, and the ratio of the run with to the run without.

    python bench/online_eval_overhead.py [--every 14] [--train-per-class 200] [--test-per-class 100]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=14)
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    from clbench.cli.launch import run_from_config
    from clbench.config import compose
    from clbench.protocol.snapshot import evaluation_copy

    out: dict = {}
    for every in (0, args.every):
        cfg = compose(["experiment=reference/split_fmnist_er", f"eval_every={every}", "seed=0",
                       f"scenario.train_per_class={args.train_per_class}",
                       f"scenario.test_per_class={args.test_per_class}",
                       f"results_dir={tempfile.mkdtemp()}", f"data_root={args.data_root}", "count_flops=false"])
        start = time.perf_counter()
        record, _ = run_from_config(cfg, backbone_given=False)
        out[f"run_s_every_{every}"] = round(time.perf_counter() - start, 2)
        if every:
            online = record.extra["online"]
            out.update(points=len(online["steps"]), online_s=online["seconds"],
                       s_per_point=round(online["seconds"] / max(1, len(online["steps"])), 4),
                       online_ACC=record.metrics.get("online_ACC"), min_ACC=record.metrics.get("min_ACC"))
    from omegaconf import OmegaConf

    from clbench.api.strategy import STRATEGIES

    strategy = STRATEGIES.get(cfg.strategy.name)(OmegaConf.to_object(cfg.strategy), record_info(cfg),
                                                 OmegaConf.to_object(cfg.backbone), seed=0)
    start = time.perf_counter()
    for _ in range(20):
        evaluation_copy(strategy)
    out["copy_ms"] = round((time.perf_counter() - start) / 20 * 1000, 3)
    out["ratio_with_to_without"] = round(out[f"run_s_every_{args.every}"] / out["run_s_every_0"], 3)
    print(json.dumps(out))


def record_info(cfg):
    """The scenario info of ``cfg`` (for building a strategy to copy)."""
    from omegaconf import OmegaConf

    from clbench.api.scenario import build_scenario
    from clbench.config import data_root

    return build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0).info_for(0.1)


if __name__ == "__main__":
    main()
