"""A clbench strategy inside your own Avalanche experiment: Avalanche's benchmark, its
evaluator, metrics and loggers (InteractiveLogger: a progress bar per epoch and the metrics
after each epoch and evaluation), clbench's ER trained by its own steps. About a minute on
2 CPU cores with the default sizes (README, "Avalanche").

    python examples/avalanche_experiment.py --strategy er --train-per-class 1000
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="er", help="a registered clbench strategy")
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--csv", help="also write Avalanche's CSVLogger files into this folder")
    a = p.parse_args(argv)

    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics, loss_metrics, timing_metrics
    from avalanche.logging import CSVLogger, InteractiveLogger
    from avalanche.training.plugins import EvaluationPlugin

    from clbench.avalanche import make_strategy
    from scenarios.avalanche_benchmarks import fmnist_tensors

    bm = fmnist_tensors(None, n_experiences=5, train_per_class=a.train_per_class, test_per_class=a.test_per_class)
    loggers = [InteractiveLogger()] + ([CSVLogger(a.csv)] if a.csv else [])
    ev = EvaluationPlugin(accuracy_metrics(epoch=True, experience=True, stream=True),
                          loss_metrics(epoch=True, stream=True), forgetting_metrics(experience=True, stream=True),
                          timing_metrics(epoch=True), loggers=loggers)
    s = make_strategy(a.strategy, benchmark=bm, evaluator=ev, epochs=1, buffer_size=200)
    for exp in bm.train_stream:
        s.train(exp)
        results = s.eval(bm.test_stream)
    print(f"final accuracy on the test stream: {results['Top1_Acc_Stream/eval_phase/test_stream/Task000']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
