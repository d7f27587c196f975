"""Compare the results of run records in two folders, ignoring how the runs were executed.

Records are paired by (scenario, strategy, seed, config without execution keys); for each
pair every result field (matrix, metrics, union accuracy, forgetting matrix, parameter
counts, per-row extras, loss curve, deviations, FLOP counts, the strategy's details) must
be equal value for value. Wall times, ids, dates, hosts, versions and paths are ignored.
Used to show that a refactoring leaves the reference records bit-identical:

    python scripts/compare_records.py results/reference /tmp/rerun   # exit 1 on any difference
    python scripts/compare_records.py old/ new/ --allow-new extra.first_steps   # a field only the new records have
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: top-level keys that say how a run was executed, not what it computed
IGNORED = {"run_id", "created", "updated", "pid", "host", "environment", "timing", "status", "error"}
#: config keys that may differ between two executions of the same run
EXECUTION = {"results_dir", "progress", "resume", "keep_checkpoints", "logger", "data_root", "num_workers", "device"}
#: run settings added after some records were made, with the value an older record means by leaving them out
LATER_SETTINGS = {"channels_last": False}


def result_view(data: dict) -> dict:
    """The part of a record that a faithful rerun must reproduce exactly."""
    out = {k: v for k, v in data.items() if k not in IGNORED}
    out["config"] = {k: v for k, v in data.get("config", {}).items()
                     if k not in EXECUTION and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    timing = data.get("timing") or {}
    out["flops"] = timing.get("flops")
    compute = dict(data.get("compute") or {})
    for k in ("peak_memory_bytes", "checkpoint_bytes"):
        compute.pop(k, None)
    out["compute"] = compute
    extra = dict(data.get("extra") or {})
    extra.pop("resumed", None)
    out["extra"] = extra
    details = dict((data.get("strategy") or {}).get("details") or {})
    out["strategy"] = {**data.get("strategy", {}), "details": _drop_paths(details)}
    return out


def _drop_paths(value):
    """Details without host paths and cache flags (a weights cache hit is not a result)."""
    if isinstance(value, dict):
        return {k: _drop_paths(v) for k, v in value.items() if k not in ("weights", "path", "cached", "cache")}
    if isinstance(value, list):
        return [_drop_paths(v) for v in value]
    return value


def key_of(data: dict) -> str:
    view = result_view(data)
    return json.dumps([data["scenario"]["name"], data["strategy"]["name"], data["seed"], view["config"]], sort_keys=True)


def load_dir(root: Path) -> dict[str, tuple[Path, dict]]:
    found = {}
    for path in sorted((root / "runs").rglob("*.json")) if (root / "runs").is_dir() else sorted(root.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("status") == "complete":
            found[key_of(data)] = (path, data)
    return found


def differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}" if where else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("rerun", type=Path)
    parser.add_argument("--allow-new", nargs="*", default=[], metavar="FIELD",
                        help="dotted fields the rerun's records may add (absent from the reference ones)")
    ns = parser.parse_args(argv)
    ref, new = load_dir(ns.reference), load_dir(ns.rerun)
    compared, bad = 0, 0
    for key, (path, data) in sorted(new.items()):
        if key not in ref:
            print(f"no reference record for {path}")
            bad += 1
            continue
        compared += 1
        diff = [d for d in differences(result_view(ref[key][1]), result_view(data))
                if not any(d.startswith(f"{f}: \"<absent>\" != ") for f in ns.allow_new)]
        status = "identical" if not diff else f"{len(diff)} difference(s)"
        print(f"{data['scenario']['name']}/{data['strategy']['name']} seed {data['seed']}: {status}")
        for d in diff[:10]:
            print(f"    {d}")
        bad += bool(diff)
    print(f"{compared} record(s) compared, {bad} differ or lack a reference")
    return 1 if bad or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
