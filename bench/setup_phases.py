"""Setup phases against a training step of the same model, in one process (median of
``--repeats``, interleaved):

- DKVB's key init (EMA k-means, ``key_init_steps`` steps at batch 256 over C=256 x
  P=4096 keys of d_k=14; vectorised over codebooks in blocks of ``codebook_chunk``):
  seconds per key-init step vs seconds per DKVB training step (``observe``, batch 256);
- the shared supervised trunk pretraining (clbench/pretrain.py, CLR and MULTI-LANE):
  seconds per pretraining step (cnn28, batch 64, Adam) vs a `naive` training step of
  the same backbone (batch 64, SGD).

Both setup loops show progress (clbench.progress.setup_progress): the run's progress
bar under `clbench run`, else lines on stderr every 10 s.

    python bench/setup_phases.py [--repeats 3] [--quick] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def dkvb_costs(steps: int, quick: bool) -> tuple[float, float, int]:
    """(s per key-init step, s per training step, embedding dim) for DKVB at the paper's C, P."""
    from clbench.types import CLASS_INCREMENTAL, VISIBILITY_BY_KIND, Batch, ScenarioInfo
    from strategies.dkvb import DKVB, DKVBConfig

    info = ScenarioInfo("bench", CLASS_INCREMENTAL, (1, 28, 28), 10, VISIBILITY_BY_KIND[CLASS_INCREMENTAL])
    cfg = DKVBConfig(encoder="identity", key_init_steps=steps)
    if quick:
        cfg.num_codebooks = 64
    strategy = DKVB(cfg, info, None, seed=0)
    g = torch.Generator().manual_seed(0)
    z = torch.rand(1797, strategy.in_dim, generator=g)
    t = time.perf_counter()
    strategy.fit_keys(z)
    per_init = (time.perf_counter() - t) / steps
    x = torch.rand(256 * steps, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    strategy.train()
    t = time.perf_counter()
    for b in range(steps):
        sl = slice(256 * b, 256 * (b + 1))
        strategy.observe(Batch(x=x[sl].flatten(1), y=y[sl]))
    per_train = (time.perf_counter() - t) / steps
    return per_init, per_train, strategy.in_dim


def pretrain_costs(epochs: int) -> tuple[float, float, int]:
    """(s per pretraining step, s per naive training step) for cnn28 at batch 64."""
    import torch.nn.functional as F

    from clbench.models.backbones import BackboneConfig, create_backbone
    from clbench.api.data import TensorData
    from clbench.models.pretrain import pretrain_backbone

    g = torch.Generator().manual_seed(0)
    n = 1797  # the size of scikit-learn's digits, the offline pretraining set
    data = TensorData(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        pretrain_backbone(BackboneConfig(), (1, 28, 28), data, epochs=epochs, seed=0, batch_size=64,
                          device=torch.device("cpu"), cache_dir=Path(tmp), file_prefix="bench", key_settings={},
                          meta={})
        elapsed = time.perf_counter() - t
    steps = epochs * -(-(n - n // 10) // 64)
    backbone = create_backbone(BackboneConfig(), (1, 28, 28))
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.out_features, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(64 * 20, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    t = time.perf_counter()
    for b in range(20):
        sl = slice(64 * b, 64 * (b + 1))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[sl]), y[sl]).backward()
        opt.step()
    return elapsed / steps, (time.perf_counter() - t) / 20, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer steps; 64 codebooks instead of 256")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    steps = 5 if args.quick else 20
    epochs = 1 if args.quick else 2
    d_init, d_train, p_step, p_train = [], [], [], []
    dim = 0
    for r in range(args.repeats):
        a, b, dim = dkvb_costs(steps, args.quick)
        c, d, _ = pretrain_costs(epochs)
        d_init.append(a)
        d_train.append(b)
        p_step.append(c)
        p_train.append(d)
        print(f"repeat {r}: dkvb key-init step {1e3 * a:.1f} ms, dkvb training step {1e3 * b:.1f} ms; "
              f"pretraining step {1e3 * c:.1f} ms, naive step {1e3 * d:.1f} ms", flush=True)
    di, dt = statistics.median(d_init), statistics.median(d_train)
    ps, pt = statistics.median(p_step), statistics.median(p_train)
    books = 64 if args.quick else 256
    print(f"DKVB key init (C={books}, P=4096, d_k=14, batch 256, D={dim}): {1e3 * di:.1f} ms per step = "
          f"{di / dt:.2f}x a DKVB training step ({1e3 * dt:.1f} ms); 1,960 steps = {1960 * di:.0f} s")
    print(f"trunk pretraining (cnn28, batch 64, Adam): {1e3 * ps:.1f} ms per step = {ps / pt:.2f}x a naive training "
          f"step of the same backbone ({1e3 * pt:.1f} ms)")
    if args.json:
        rows = [
            {"target": f"DKVB key-init step (C={books}, P=4096) vs DKVB training step", "measured": f"{1e3 * di:.1f} ms",
             "yardstick": f"training step {1e3 * dt:.1f} ms", "ratio": round(di / dt, 2), "limit": "report",
             "met": None},
            {"target": "trunk pretraining step (cnn28, Adam) vs naive training step", "measured": f"{1e3 * ps:.1f} ms",
             "yardstick": f"naive step {1e3 * pt:.1f} ms", "ratio": round(ps / pt, 2), "limit": "report", "met": None},
        ]
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
