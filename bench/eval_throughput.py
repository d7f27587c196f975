"""Evaluation throughput against training throughput, and what the full accuracy matrix
costs on a split53-sized stream.

In one process, interleaved (median of ``--repeats``):

- training: `naive` (cnn28) on split_fmnist, the harness path (LearnerView batches of
  64, ``observe``): samples/s;
- evaluation: the protocol's path for one row over all five test experiences (10,000
  images): the evaluation copy (``protocol.evaluation_copy``; timed on its own, the
  snapshot evaluation of the "Protocol integrity" issue), ``eval()``, then
  ``evaluation.score_mixed`` in mixed batches of ``eval_batch_size``: samples/s;
- the ratio eval/training per sample (target >= 3).

Then CLR's model (the paper's recipe of strategies/clr.py: batch 32 Adam, a validation
pass per epoch, 22..60 epochs) is timed the same way (training step vs forward) and the
(T+1) x T matrix of a 53-task split53 stream (task-incremental: every row scores every
task's test set; sizes from scenarios/data/split53_tasks.csv) is costed from those
per-sample times, as a fraction of the training time (target < 10%).

    python bench/eval_throughput.py [--repeats 3] [--quick] [--eval-batch-sizes 512,256,128] [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO, TARGET_FRACTION = 3.0, 0.10


def build_naive(train_per_class):
    from omegaconf import OmegaConf

    from clbench.config import compose, data_root
    from clbench.api.data import split_validation
    from clbench.api.scenario import build_scenario
    from clbench.api.strategy import STRATEGIES

    over = ["strategy=naive", "scenario=split_fmnist", "seed=0", "logger=none", "device=cpu"]
    if train_per_class:
        over.append(f"scenario.train_per_class={train_per_class}")
    cfg = compose(over)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    strategy = STRATEGIES.get("naive")(OmegaConf.to_object(cfg.strategy), scenario.info_for(0.1),
                                       OmegaConf.to_object(cfg.backbone), seed=0)
    train, _ = split_validation(scenario.experiences[0].train, 0.1, torch.Generator().manual_seed(0))
    return scenario, strategy, train


def time_training(strategy, train, batch_size: int, limit: int) -> float:
    """Samples/s of the harness training path (LearnerView batches, observe)."""
    from clbench.api.data import TensorData
    from clbench.api.view import LearnerView

    data = TensorData(train.x[:limit], train.y[:limit])
    view = LearnerView(data, None, task_id=None, device=torch.device("cpu"), generator=torch.Generator().manual_seed(1))
    strategy.train()
    t = time.perf_counter()
    n = 0
    for batch in view.batches(batch_size):
        strategy.observe(batch)
        n += len(batch)
    return n / (time.perf_counter() - t)


def time_eval(strategy, scenario, batch_size: int, channels_last: bool = False) -> tuple[float, float, int]:
    """(copy seconds, samples/s of score_mixed over every test experience, copied bytes)."""
    from clbench.protocol.evaluation import EVALUATORS, score_mixed
    from clbench.protocol import evaluation_copy

    t = time.perf_counter()
    copy_, copied = evaluation_copy(strategy)
    copy_s = time.perf_counter() - t
    copy_.eval()
    if channels_last:
        copy_.to(memory_format=torch.channels_last)
    test_sets = [e.test for e in scenario.experiences]
    step = len(scenario.steps)
    evaluator = EVALUATORS.get(scenario.kind)
    n = sum(len(test_sets[j]) for j in evaluator.evaluated(scenario, step))
    t = time.perf_counter()
    score_mixed(copy_.predict, evaluator, scenario, step, test_sets, device=torch.device("cpu"), batch_size=batch_size,
                generator=torch.Generator().manual_seed(5))
    return copy_s, n / (time.perf_counter() - t), copied


def clr_costs(backbone: str, side: int, repeats: int, batches: int) -> tuple[float, float]:
    """Seconds per sample of CLR's training step (batch 32) and of its forward (batch 512)."""
    from clbench.models.backbones import BackboneConfig
    from clbench.types import TASK_INCREMENTAL, VISIBILITY_BY_KIND, ExperienceInfo, ScenarioInfo
    from clbench.types import Batch
    from strategies.clr import CLR, CLRConfig

    shape = (1, 28, 28) if backbone == "cnn28" else (3, side, side)
    info = ScenarioInfo("split53-like", TASK_INCREMENTAL, shape, 100, VISIBILITY_BY_KIND[TASK_INCREMENTAL])
    strategy = CLR(CLRConfig(trunk="random"), info, BackboneConfig(name=backbone), seed=0)
    strategy.begin_experience(ExperienceInfo(0, tuple(range(100)), 0))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(max(32 * batches, 512), *shape, generator=g)
    y = torch.randint(0, 100, (len(x),), generator=g)
    train_cost, eval_cost = [], []
    for _ in range(repeats):
        strategy.train()
        t = time.perf_counter()
        for b in range(batches):
            sl = slice(32 * b, 32 * (b + 1))
            strategy.observe(Batch(x=x[sl], y=y[sl], task=torch.zeros(32, dtype=torch.long)))
        train_cost.append((time.perf_counter() - t) / (32 * batches))
        from clbench.protocol import evaluation_copy

        copy_, _ = evaluation_copy(strategy)
        copy_.eval()
        t = time.perf_counter()
        with torch.inference_mode():
            copy_.predict(x[:512], torch.zeros(512, dtype=torch.long))
        eval_cost.append((time.perf_counter() - t) / 512)
    return statistics.median(train_cost), statistics.median(eval_cost)


def split53_fraction(train_cost: float, eval_cost: float, epochs: int, val_fraction: float = 0.1) -> dict:
    """Matrix cost / training cost for the 53 tasks of split53 at CLR's recipe."""
    rows = list(csv.DictReader(open(ROOT / "scenarios/data/split53_tasks.csv")))
    train = sum(int(r["train_images"]) for r in rows)
    test = sum(int(r["eval_images"]) for r in rows)
    T = len(rows)
    kept, val = train * (1 - val_fraction), train * val_fraction
    training = epochs * (kept * train_cost + val * eval_cost)  # CLR scores its validation split every epoch
    matrix = (T + 1) * test * eval_cost
    return {"tasks": T, "train_images": train, "test_images": test, "epochs": epochs, "train_s": training,
            "matrix_s": matrix, "fraction": matrix / training}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer samples, cnn28 only for CLR")
    ap.add_argument("--eval-batch-sizes", default="512", help="comma-separated; the first is the yardstick run")
    ap.add_argument("--channels-last", action="store_true", help="also time a channels_last copy (clbench's default learner format)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    scenario, strategy, train = build_naive(300 if args.quick else None)
    limit = 1600 if args.quick else 6400
    sizes = [int(s) for s in args.eval_batch_sizes.split(",")]
    train_rates, eval_rates, copy_s = [], {s: [] for s in sizes}, []
    cl_rates: list[float] = []
    cl_train: list[float] = []
    copied = 0
    time_training(strategy, train, 64, 256)  # warm-up: allocator, oneDNN primitives
    time_eval(strategy, scenario, sizes[0])
    for r in range(args.repeats):
        train_rates.append(time_training(strategy, train, 64, limit))
        for s in sizes:
            c, rate, copied = time_eval(strategy, scenario, s)
            eval_rates[s].append(rate)
            copy_s.append(c)
        if args.channels_last:  # clbench's default: the learner in channels_last, for training and evaluation alike
            import copy

            cl = copy.deepcopy(strategy).to(memory_format=torch.channels_last)
            cl_train.append(time_training(cl, train, 64, limit))
            cl_rates.append(time_eval(cl, scenario, sizes[-1], channels_last=True)[1])
        print(f"repeat {r}: train {train_rates[-1]:,.0f}/s; eval " + ", ".join(
            f"batch {s}: {eval_rates[s][-1]:,.0f}/s" for s in sizes) + (f"; channels_last {cl_rates[-1]:,.0f}/s"
                                                                           if cl_rates else ""), flush=True)
    tr = statistics.median(train_rates)
    ev = {s: statistics.median(v) for s, v in eval_rates.items()}
    ratio = ev[sizes[0]] / tr
    copy_med = statistics.median(copy_s)
    print(f"naive cnn28, median of {args.repeats} (torch threads {torch.get_num_threads()}): training "
          f"{tr:,.0f} samples/s (batch 64, forward+backward+SGD); evaluation " +
          ", ".join(f"{ev[s]:,.0f} samples/s at batch {s} ({ev[s] / tr:.2f}x)" for s in sizes) +
          (f"; channels_last (clbench's default): training {statistics.median(cl_train):,.0f}/s, "
           f"evaluation {statistics.median(cl_rates):,.0f}/s at batch {sizes[-1]} "
           f"({statistics.median(cl_rates) / statistics.median(cl_train):.2f}x)" if cl_rates else "")
          + f"; target >= {TARGET_RATIO}x")
    n_row = sum(len(e.test) for e in scenario.experiences)
    print(f"evaluation copy (snapshot evaluation, issue 11): {1000 * copy_med:.2f} ms per row, {copied / 1e6:.2f} MB "
          f"copied; {100 * copy_med / (copy_med + n_row / ev[sizes[0]]):.1f}% of a {n_row:,}-sample row")

    backbone, side = ("cnn28", 28) if args.quick else ("resnet18", 64)
    tc, ec = clr_costs(backbone, side, args.repeats, 3 if args.quick else 4)
    early, full = split53_fraction(tc, ec, 22), split53_fraction(tc, ec, 60)
    print(f"CLR on {backbone}" + ("" if backbone == "cnn28" else f" at {side}x{side}") + f": training step "
          f"{1e3 * tc:.2f} ms/sample (batch 32), forward {1e3 * ec:.2f} ms/sample (batch 512), ratio {tc / ec:.2f}x")
    for est in (early, full):
        print(f"split53 ({est['tasks']} tasks, {est['train_images']:,} train / {est['test_images']:,} test images), "
              f"{est['epochs']} epochs per task: training {est['train_s'] / 3600:.2f} h (with the per-epoch validation "
              f"pass), full (T+1) x T matrix {est['matrix_s'] / 3600:.2f} h = {100 * est['fraction']:.1f}% of training "
              f"(target < {100 * TARGET_FRACTION:.0f}%)")
    if args.json:
        worst = max(early["fraction"], full["fraction"])
        rows = [] if not cl_rates else [
            {"target": f"evaluation vs training throughput, channels_last, clbench's default (eval batch {sizes[-1]})",
             "measured": f"eval {statistics.median(cl_rates):,.0f}/s",
             "yardstick": f"channels_last training {statistics.median(cl_train):,.0f}/s",
             "ratio": round(statistics.median(cl_rates) / statistics.median(cl_train), 2), "limit": f">= {TARGET_RATIO}",
             "met": statistics.median(cl_rates) / statistics.median(cl_train) >= TARGET_RATIO}]
        rows += [
            {"target": "evaluation throughput vs training (naive cnn28, per sample)",
             "measured": f"eval {ev[sizes[0]]:,.0f}/s (batch {sizes[0]})", "yardstick": f"train {tr:,.0f}/s (batch 64)",
             "ratio": round(ratio, 2), "limit": f">= {TARGET_RATIO}", "met": ratio >= TARGET_RATIO},
            {"target": "evaluation copy per row (snapshot, naive cnn28)", "measured": f"{1000 * copy_med:.2f} ms",
             "yardstick": f"one row of {n_row:,} samples {1000 * n_row / ev[sizes[0]]:.0f} ms",
             "ratio": round(copy_med / (n_row / ev[sizes[0]]), 4), "limit": "report", "met": None},
            {"target": "split53 full matrix vs training (CLR recipe, 22-60 epochs)",
             "measured": f"{early['matrix_s'] / 3600:.2f} h",
             "yardstick": f"training {early['train_s'] / 3600:.1f}-{full['train_s'] / 3600:.1f} h",
             "ratio": round(worst, 4), "limit": f"< {TARGET_FRACTION}", "met": worst < TARGET_FRACTION},
        ]
        if len(sizes) > 1:
            best = max(sizes, key=lambda s: ev[s])
            rows.append({"target": f"evaluation throughput at eval_batch_size={best}", "measured": f"{ev[best]:,.0f}/s",
                         "yardstick": f"train {tr:,.0f}/s", "ratio": round(ev[best] / tr, 2),
                         "limit": f">= {TARGET_RATIO}", "met": ev[best] / tr >= TARGET_RATIO})
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
