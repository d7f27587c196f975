"""Is the default fast path as accurate as the standard one? `clbench run strategy=naive
scenario=split_fmnist` for seeds 0-2, once with the defaults (channels_last at evaluation
batch 128) and once with `channels_last=false eval_batch_size=512`, each as a whole process;
prints each run's final ACC and wall time, the mean ACC of both ways and their gap (in points).

    python bench/fast_path_acc.py [--seeds 0 1 2] [--train-per-class N]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

from vs_avalanche import STANDARD, run_clbench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-per-class", type=int, default=None, help="subsample (quick look)")
    args = ap.parse_args()
    extra = [f"scenario.train_per_class={args.train_per_class}"] if args.train_per_class else []
    acc: dict[str, list[float]] = {"standard": [], "default": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for way, flags in (("standard", STANDARD), ("default", [])):
                wall, a, _ = run_clbench(tmp, extra + flags, seed=seed)
                acc[way].append(a)
                print(f"seed {seed} {way:<8} ({' '.join(flags) or 'defaults'}): ACC {a:.4f}, {wall:.1f}s", flush=True)
    s, d = statistics.mean(acc["standard"]), statistics.mean(acc["default"])
    print(f"mean ACC over seeds {args.seeds}: {' '.join(STANDARD)} {s:.4f}, default {d:.4f}; "
          f"gap {100 * (d - s):+.2f} points (per seed: "
          f"{', '.join(f'{100 * (b - a):+.2f}' for a, b in zip(acc['standard'], acc['default']))})")


if __name__ == "__main__":
    main()
