"""DKVB vs probes on the same frozen features: ACC and FGT on split_fmnist.

The paper's claim (Träuble et al. 2023, Fig. 3): on a class-incremental stream of
frozen features, the bottleneck forgets far less than a linear probe or an MLP trained
on the same features. Usage (small defaults, CPU):

    OMP_NUM_THREADS=1 python bench/dkvb_vs_probes.py --epochs 5 --train-per-class 2000
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from clbench import protocol
from clbench.models.backbones import BackboneConfig
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental
from strategies.dkvb import DKVB, DKVBConfig
from strategies.probes import LinearProbe, LinearProbeNoBias, MLPProbe, ProbeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="DKVB epochs per stage")
    ap.add_argument("--probe-epochs", type=int, nargs="+", default=[5, 100],
                    help="probe epochs per stage (each a run; lr 1e-3 needs many)")
    ap.add_argument("--train-per-class", type=int, default=2000)
    ap.add_argument("--test-per-class", type=int, default=500)
    ap.add_argument("--codebooks", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=1024)
    ap.add_argument("--encoder", choices=["identity", "cnn28"], default="identity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation-key-init-limit", type=int, default=10000,
                    help="fmnist images for the same-data key-init ablation (all 60000 is slow on CPU)")
    ap.add_argument("--skip-ablation", action="store_true", help="skip DKVB with keys fitted on the stream's own images")
    args = ap.parse_args()
    os.environ.setdefault("CLBENCH_CACHE", tempfile.mkdtemp(prefix="dkvb_bench_cache_"))

    scenario = build_class_incremental(
        ClassIncrementalConfig(name="split_fmnist", kind="class_incremental", train_per_class=args.train_per_class,
                               test_per_class=args.test_per_class), data_root=None, seed=args.seed)
    enc = "identity" if args.encoder == "identity" else "backbone"
    bb = BackboneConfig(name="cnn28") if args.encoder == "cnn28" else None
    dkvb = dict(name="dkvb", epochs=args.epochs, encoder=enc, num_codebooks=args.codebooks, pairs_per_codebook=args.pairs)
    runs = {f"dkvb, {args.epochs} ep (keys: sklearn_digits)": lambda: DKVB(DKVBConfig(**dkvb), scenario.info, bb, seed=args.seed)}
    if not args.skip_ablation:
        ablation = DKVBConfig(**dkvb, key_init_source="fmnist", key_init_limit=args.ablation_key_init_limit)
        runs[f"dkvb, {args.epochs} ep (keys: fmnist ablation)"] = lambda: DKVB(ablation, scenario.info, bb, seed=args.seed)
    for epochs in args.probe_epochs:
        for name, cls in (("linear_probe", LinearProbe), ("linear_probe_nobias", LinearProbeNoBias), ("mlp_probe", MLPProbe)):
            runs[f"{name}, {epochs} ep"] = (lambda cls=cls, name=name, epochs=epochs: cls(
                ProbeConfig(name=name, epochs=epochs, encoder=enc), scenario.info, bb, seed=args.seed))
    print(f"split_fmnist {args.train_per_class}/{args.test_per_class} per class, encoder={args.encoder}, "
          f"DKVB {args.epochs} epochs/stage, DKVB C={args.codebooks} P={args.pairs} d_k=14, seed {args.seed}")
    print(f"{'strategy':44s} {'ACC':>6s} {'FGT':>6s} {'AIA':>6s} {'used pairs':>10s} {'wall s':>7s}")
    with tempfile.TemporaryDirectory() as results:
        settings = protocol.RunSettings(seed=args.seed, device="cpu", results_dir=results, progress=False)
        for name, make in runs.items():
            t0 = time.perf_counter()
            record, _ = protocol.run(scenario, make(), settings=settings)
            m = record.metrics
            used = record.strategy["details"].get("used_pairs_fraction")
            print(f"{name:44s} {m['ACC']:6.3f} {m['FGT']:6.3f} {m['AIA']:6.3f} "
                  f"{'' if used is None else f'{used:.3f}':>10s} {time.perf_counter() - t0:7.1f}", flush=True)


if __name__ == "__main__":
    main()
