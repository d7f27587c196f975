"""CLR against naive finetuning and experience replay on split_fmnist_ti, same budget.

All three start from the same cnn28 trunk pretrained on scikit-learn digits (CLR's
offline trunk, cached under ~/.cache/clbench/weights) and get the same epochs per task
on the same data. Prints ACC, FGT, parameters added per task and train seconds per task.

    OMP_NUM_THREADS=1 python bench/clr_split_fmnist.py --train-per-class 1000 --epochs 5
"""
from __future__ import annotations

import argparse
import tempfile

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--strategies", default="clr,naive,er", help="clr_full equals clr on cnn28 (no 1x1 convs)")
    args = ap.parse_args()

    from clbench.models.backbones import BackboneConfig
    from clbench.cli.launch import run_from_config
    from clbench.config import compose
    from strategies.clr import CLRConfig, default_cache_dir, pretrain_on_digits  # registers clr, clr_full

    c = CLRConfig()
    weights, meta = pretrain_on_digits(BackboneConfig(), (1, 28, 28), epochs=c.pretrain_epochs, seed=c.pretrain_seed,
                                       device=torch.device(args.device), cache_dir=default_cache_dir())
    print(f"trunk: {weights} (digits held-out accuracy {meta['held_out_accuracy']:.3f})")
    common = [
        "scenario=split_fmnist_ti", "logger=none", "progress=false", f"seed={args.seed}", f"device={args.device}",
        f"scenario.train_per_class={args.train_per_class}", f"scenario.test_per_class={args.test_per_class}",
        f"strategy.epochs={args.epochs}",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in args.strategies.split(","):
            extra = [] if name.startswith("clr") else [f"backbone.weights={weights}"]
            record, _ = run_from_config(compose([f"strategy={name}", f"results_dir={out}", *common, *extra]))
            added = [a["total"] for a in record.params["added"]]
            train_s = record.timing["train_s"]
            rows.append((name, record.metrics["ACC"], record.metrics["FGT"], added, sum(train_s) / len(train_s),
                         record.strategy.get("details", {}).get("per_task")))
    print(f"\nsplit_fmnist_ti, {args.train_per_class}/{args.test_per_class} images per class, {args.epochs} epochs, "
          f"seed {args.seed}, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'strategy':10s} {'ACC':>7s} {'FGT':>7s} {'params added/task':>18s} {'train s/task':>13s}")
    for name, acc, fgt, added, ts, _ in rows:
        print(f"{name:10s} {acc:7.4f} {fgt:7.4f} {str(sorted(set(added))):>18s} {ts:13.2f}")
    for name, *_, per_task in rows:
        if per_task:
            print(name, "epochs run / best epoch per task:",
                  [(h["epochs_run"], h["best_epoch"]) for h in per_task.values()])


if __name__ == "__main__":
    main()
