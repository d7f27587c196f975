"""Speed-up of cached frozen features over running the encoder every epoch (one process).

Three DKVB runs of the same stream, seed and settings: (1) ``precompute=False``, the
frozen encoder runs on every training batch of every epoch and on every evaluation;
(2) features encoded once per dataset into an empty cache; (3) the same again, read
back from the warm cache. Prints wall times, the ratios against (1) and whether the
accuracy matrices agree. Usage:

    OMP_NUM_THREADS=1 python bench/dkvb_cache_speedup.py --epochs 5 --train-per-class 500
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from clbench import protocol

from clbench.models import features
from clbench.models.backbones import BackboneConfig
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental
from strategies.dkvb import DKVB, DKVBConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--codebooks", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--width", type=int, default=32, help="cnn28 width (the frozen encoder)")
    args = ap.parse_args()

    scenario = build_class_incremental(
        ClassIncrementalConfig(name="split_fmnist", kind="class_incremental", train_per_class=args.train_per_class,
                               test_per_class=args.test_per_class), data_root=None, seed=0)
    bb = BackboneConfig(name="cnn28", width=args.width)
    cache = tempfile.mkdtemp(prefix="dkvb_speedup_cache_")
    rows = []
    with tempfile.TemporaryDirectory() as results:
        settings = protocol.RunSettings(seed=0, device="cpu", results_dir=results, progress=False)
        for label, precompute, where in (("encoder every epoch", False, "off"), ("cache cold (encode once)", True, cache),
                                         ("cache warm (read back)", True, cache)):
            os.environ["CLBENCH_CACHE"] = where
            import torch

            torch.manual_seed(0)  # the frozen cnn28's random init: the same encoder in every run
            cfg = DKVBConfig(name="dkvb", epochs=args.epochs, num_codebooks=args.codebooks, pairs_per_codebook=args.pairs,
                             precompute=precompute)
            strategy = DKVB(cfg, scenario.info, bb, seed=0)
            hits = features.stats["hits"]
            t0 = time.perf_counter()
            record, _ = protocol.run(scenario, strategy, settings=settings)
            wall = time.perf_counter() - t0
            rows.append((label, wall, record, features.stats["hits"] - hits))
    base = rows[0][1]
    print(f"split_fmnist {args.train_per_class}/{args.test_per_class} per class, frozen cnn28 (width {args.width}), "
          f"{args.epochs} epochs/stage, DKVB C={args.codebooks} P={args.pairs}")
    print(f"{'run':28s} {'wall s':>8s} {'speed-up':>9s} {'encode s':>9s} {'train s':>8s} {'cache hits':>10s} {'ACC':>6s}")
    for label, wall, rec, hits in rows:
        t = rec.timing
        print(f"{label:28s} {wall:8.1f} {base / wall:8.2f}x {t['encode_s']:9.2f} {sum(t['train_s']):8.1f} {hits:10d} "
              f"{rec.metrics['ACC']:6.3f}")
    same = rows[1][2].matrix == rows[2][2].matrix
    diff = max(abs(a - b) for ra, rb in zip(rows[0][2].matrix, rows[1][2].matrix) for a, b in zip(ra, rb))
    print(f"cold and warm cache matrices identical: {same}; max |diff| encoder-every-epoch vs cached: {diff:.4f}")


if __name__ == "__main__":
    main()
