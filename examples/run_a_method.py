"""Run a method under the clbench protocol from Python, exactly as ``clbench run`` does, and
read its record: the (T+1) x T accuracy matrix, the summary metrics, where the files went.

    python examples/run_a_method.py --strategy er --train-per-class 500

is ``clbench run strategy=er scenario=split_fmnist scenario.train_per_class=500 ...``: any
``key=value`` override of the command line can follow ``--set``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="er", help="a registered strategy (clbench list)")
    p.add_argument("--train-per-class", type=int, default=500, help="training images per class (subsample)")
    p.add_argument("--test-per-class", type=int, default=100, help="test images per class")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results-dir", default="results/examples", help="where the record and the CSV logs go")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides, as on the command line")
    a = p.parse_args(argv)

    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    cfg = compose([f"strategy={a.strategy}", "scenario=split_fmnist", f"seed={a.seed}",
                   f"scenario.train_per_class={a.train_per_class}", f"scenario.test_per_class={a.test_per_class}",
                   f"strategy.epochs={a.epochs}", "logger=csv", f"results_dir={a.results_dir}", "progress=false",
                   *a.set])
    record, path = run_from_config(cfg)

    print(f"{record.strategy['name']} on {record.scenario['name']}, seed {record.seed}: {record.status}")
    print("accuracy matrix (row i: after training experience i; row 0: before any training)")
    for i, row in enumerate(record.matrix):
        print(f"  {i}: " + " ".join(f"{100 * v:5.1f}" for v in row))
    print("  ".join(f"{k} {v:.4f}" for k, v in record.metrics.items() if isinstance(v, float)))
    print(f"record: {path}")
    print(f"csv logs: {record.environment['logs']['CSVLogger']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
