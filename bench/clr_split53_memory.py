"""CLR over the 53-task split53 sequence: wall time and memory after 10, 25 and 53 tasks.

Runs on real split53 data under ``--data-root`` when given, else on a generated
miniature of the layout (all 53 tasks, their real class counts, tiny PNGs). Prints,
after each checkpoint task, the cumulative wall time, the process's peak and current
resident memory, and the strategy's parameter + buffer bytes against what the
per-task increment predicts, so a flat trunk plus linear per-task growth is visible.

    OMP_NUM_THREADS=1 python bench/clr_split53_memory.py                  # fixture, cnn28
    OMP_NUM_THREADS=1 python bench/clr_split53_memory.py --backbone resnet18 --resize 0 --image-size 48

ResNet-18 offline runs on a random frozen trunk (no ImageNet weights here): the memory
is the paper's architecture's, the accuracy means nothing. Keep its input >= 33 px: at
32 px layer4 is 1x1 and a last batch of one image cannot train BatchNorm.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from clbench.api.auxdata import aux_for

CHECKPOINTS = (1, 10, 25, 53)


def rss_bytes(trim: bool = False) -> int:
    """Resident memory now; with ``trim``, after glibc hands freed heap back (so heap
    fragmentation is told apart from memory that is really held)."""
    if trim:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class MemoryLog:
    """A protocol logger that samples time and memory after every experience."""

    def __init__(self, strategy) -> None:
        self.strategy, self.t0, self.rows = strategy, time.perf_counter(), []

    def start(self, record) -> None:
        self.t0 = time.perf_counter()

    def log_row(self, step: int, accuracy, record) -> None:
        wall = time.perf_counter() - self.t0
        self.rows.append((step, wall, rss_bytes(), rss_bytes(trim=True),
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, tensor_bytes(self.strategy)))

    def finish(self, record) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=None, help="real split53 data (default: a generated fixture)")
    ap.add_argument("--backbone", default="cnn28", choices=["cnn28", "resnet18"])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--resize", type=int, default=224, help="resnet18 input side (0: keep --image-size)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--per-class-train", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from clbench import protocol
    from clbench.models.backbones import BackboneConfig
    from scenarios.split53 import Split53Config, build_split53
    from strategies.clr import CLR, CLRConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from fixtures.split53_layout import write_split53_fixture

            root = write_split53_fixture(Path(tmp) / "data", per_class_train=args.per_class_train, per_class_test=1)
        scenario = build_split53(Split53Config(name="split53", image_size=args.image_size), data_root=root, seed=0)
        if args.backbone == "cnn28":
            bb, trunk = BackboneConfig(name="cnn28"), "digits"
        else:  # offline: no ImageNet weights here; the architecture (and so the memory) is the paper's
            bb, trunk = BackboneConfig(name="resnet18", input_size=args.resize or None, normalize="imagenet"), "random"
        strategy = CLR(CLRConfig(epochs=args.epochs, trunk=trunk), scenario.info, bb, seed=0)
        strategy.prepare(aux_for(strategy))
        log = MemoryLog(strategy)
        settings = protocol.RunSettings(results_dir=str(Path(tmp) / "results"), progress=False, device=args.device,
                                        eval_batch_size=256)
        base_rss = rss_bytes()
        record, _ = protocol.run(scenario, strategy, settings=settings, loggers=[log])

    inc = strategy.increment()
    per_task_bytes = 4 * (inc["excluding_head"] + inc["bn_counters"] * 2)  # float32 + int64 counters
    heads = {int(k): v for k, v in strategy.describe()["heads"].items()}
    trunk_bytes = tensor_bytes(strategy.network)
    print(f"CLR on split53 ({'real data' if args.data_root else 'generated fixture'}), backbone {args.backbone} "
          f"({strategy.network.backbone.weights_source}), image {args.image_size}px, {args.epochs} epoch(s), "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"trunk {trunk_bytes / 2**20:.1f} MiB; per-task increment {inc['excluding_head']} elements excl. head "
          f"({per_task_bytes / 2**10:.1f} KiB) + head; RSS before the stream {base_rss / 2**20:.0f} MiB")
    print(f"{'tasks':>5s} {'wall s':>8s} {'RSS MiB':>8s} {'RSS trimmed':>12s} {'peak RSS MiB':>13s} {'state MiB':>10s} "
          f"{'predicted MiB':>14s}")
    for step, wall, rss, trimmed, peak, state in log.rows:
        if step in CHECKPOINTS or step == len(log.rows):
            head_bytes = 4 * sum(v for k, v in heads.items() if k < step)
            predicted = trunk_bytes + step * per_task_bytes + head_bytes
            print(f"{step:5d} {wall:8.1f} {rss / 2**20:8.0f} {trimmed / 2**20:12.0f} {peak / 2**20:13.0f} {state / 2**20:10.2f} {predicted / 2**20:14.2f}")
    m = record.matrix
    T = len(m) - 1
    print(f"ACC {record.metrics['ACC']:.4f}  FGT {record.metrics['FGT']}  zero forgetting exact: "
          f"{all(m[T][j] == m[j + 1][j] for j in range(T))}")


if __name__ == "__main__":
    main()
