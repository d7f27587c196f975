"""The yardstick of `bench/vs_avalanche.py`: clbench's default `naive` run on
`split_fmnist` (seed 0), written as a plain Avalanche 0.6 script.

Same work as `clbench run strategy=naive scenario=split_fmnist seed=0`: Fashion-MNIST
split 5 x 2 classes in the class order of seed 0 ([4, 6, 2, 7, 3, 5, 9, 0, 8, 1]), the
same 90% of each experience's training images (clbench's seeded `val_fraction=0.1`
hold-out, drawn with the same generator), the `cnn28` backbone from `clbench.models.backbones`
plus a linear head over the 10 classes, SGD lr 0.01 momentum 0.9 (no weight decay),
batch 64, 2 epochs (clbench's `FinetuneConfig` defaults in strategies/baselines.py),
and evaluation after every experience on every test experience, batch 128 (clbench's
`eval_batch_size`). Prints one JSON line: wall seconds by phase and the final accuracy
(mean over the five test experiences, which all hold 2,000 images).

    python bench/avalanche_naive.py [--seed 0] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()

import torch  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--eval-batch-size", type=int, default=128)
    ap.add_argument("--train-per-class", type=int, default=None, help="subsample (quick runs)")
    args = ap.parse_args()

    from avalanche.benchmarks import nc_benchmark
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    from clbench.models.backbones import BackboneConfig, create_backbone
    from clbench.api.data import split_validation
    from scenarios.class_incremental import class_order_for, per_class_subsample, ClassIncrementalConfig
    from scenarios.sources import load_source

    # the same tensors clbench trains on: its class order, its experiences, its hold-out
    source = load_source("fmnist", None)
    train_all = per_class_subsample(source.train, args.train_per_class, args.seed, "sub")
    order = class_order_for(ClassIncrementalConfig(), source.num_classes, args.seed)
    generator = torch.Generator().manual_seed(args.seed)  # clbench's Session generator: splits in experience order
    xs, ys = [], []
    for i in range(0, len(order), 2):
        idx = torch.nonzero(torch.isin(train_all.y, torch.tensor(order[i:i + 2]))).flatten()
        kept, _val = split_validation(train_all.subset(idx, f"e{i // 2}"), args.val_fraction, generator)
        xs.append(kept.x)
        ys.append(kept.y)
    train = TensorDataset(torch.cat(xs), torch.cat(ys))
    test = TensorDataset(source.test.x, source.test.y)
    benchmark = nc_benchmark(train, test, n_experiences=5, task_labels=False, fixed_class_order=order)

    torch.manual_seed(args.seed)
    backbone = create_backbone(BackboneConfig(name="cnn28"), tuple(source.input_shape))
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.out_features, source.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=0.0)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[])
    strategy = Naive(model=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(),
                     train_mb_size=args.batch_size, train_epochs=args.epochs, eval_mb_size=args.eval_batch_size,
                     device="cpu", evaluator=evaluator)
    setup_s = time.perf_counter() - T0
    train_s = eval_s = 0.0
    results: dict = {}
    for exp in benchmark.train_stream:
        t = time.perf_counter()
        strategy.train(exp)
        train_s += time.perf_counter() - t
        t = time.perf_counter()
        results = strategy.eval(benchmark.test_stream)
        eval_s += time.perf_counter() - t
    per_exp = [results[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(5)]
    print(json.dumps({"wall_s": time.perf_counter() - T0, "setup_s": setup_s, "train_s": train_s,
                      "eval_s": eval_s, "ACC": sum(per_exp) / len(per_exp), "final_row": per_exp,
                      "train_samples": len(train), "class_order": order}))


if __name__ == "__main__":
    main()
