"""Issue 10, "a newcomer's first hour": the README's commands in order, honest records
under every fault, early refusals, safe loading, a leaderboard and show that never die
on one bad record, and output a researcher can read. No training here: records are
hand-made, the CLI is driven up to the point where it would build a run."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.results import records
from clbench.cli import main
from clbench.results.leaderboard import leaderboard_command
from clbench.results.records import RunRecord

REPO = Path(__file__).resolve().parents[1]

M3 = [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.3, 0.4, 0.9]]  # ACC 0.5333


def make_record(strategy: str = "naive", seed: int = 0, matrix=None, *, scenario: str = "toy",
                kind: str = "class_incremental", status: str = "complete", run_id=None, strategy_config=None,
                deviations=(), metrics_extra=None, timing=None, **fields) -> RunRecord:
    from clbench.results import metrics

    matrix = matrix or M3
    T = len(matrix[0])
    union = [sum(matrix[i][:i]) / i for i in range(1, len(matrix))]
    scfg = {"name": strategy, "epochs": 1, "lr": 0.01, **(strategy_config or {})}
    config = {"seed": seed, "strategy": scfg, "scenario": {"name": scenario, "kind": kind}, "backbone": {"name": "cnn28"},
              "val_fraction": 0.1}
    m = metrics.summarize(matrix, union, kind) if len(matrix) == T + 1 else {"ACC": None}
    m.update(metrics_extra or {})
    return RunRecord(
        run_id=run_id or f"{strategy}-{scenario}-s{seed}-{abs(hash(json.dumps(config, sort_keys=True))) % 10**8}",
        created=f"2026-11-26T00:00:{seed:02d}+00:00", seed=seed,
        scenario={"name": scenario, "kind": kind, "num_experiences": T},
        strategy={"name": strategy, "config": scfg}, config=config, matrix=matrix, union_accuracy=union,
        metrics=m, timing=timing if timing is not None else {"prepare_s": 0.5, "train_s": [1.0] * T, "eval_s": [0.1] * (T + 1)},
        params={"initial": {"total": 100}, "after": [{"total": 100}] * T, "added": [{"total": 0}] * T},
        deviations=list(deviations), status=status, experiences_done=T if status == "complete" else 1, **fields,
    )


def board_md(capsys, root, *args) -> tuple[int, str, str]:
    code = leaderboard_command([str(root), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- 1. reference results apart from user runs -------------------------------------------------

def test_reference_results_live_apart_from_user_runs():
    ref = REPO / "results" / "reference"
    assert (ref / "LEADERBOARD.md").is_file() and records.find(ref), "reference records and leaderboard in results/reference"
    assert not (REPO / "results" / "LEADERBOARD.md").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/y/z.json"], cwd=REPO)
    kept = subprocess.run(["git", "check-ignore", "-q", "results/reference/runs/x/y/z.json"], cwd=REPO)
    if ignored.returncode in (0, 1):  # a git checkout
        assert ignored.returncode == 0 and kept.returncode == 1
    script = (REPO / "scripts" / "reference_runs.sh").read_text()
    assert "RESULTS=${RESULTS:-results/reference}" in script
    readme = (REPO / "README.md").read_text()
    assert "clbench leaderboard results/" in readme and "results/reference" in readme


def test_a_user_run_never_changes_the_reference_leaderboard(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "reference", results / "reference")
    _, before, _ = board_md(capsys, results / "reference")
    _, fresh, _ = board_md(capsys, results)  # a fresh clone: no runs of the user's yet
    assert "No complete run records found." in fresh
    records.save(make_record("naive", 0), results)  # the quickstart's record: results/runs/...
    _, after, _ = board_md(capsys, results / "reference")
    assert after == before
    _, mine, _ = board_md(capsys, results)
    assert "## toy" in mine and "split_fmnist" not in mine  # the user's board: only the user's runs


# -- 2. CI runs the README quickstart, as written, before tox -----------------------------------

def test_ci_runs_the_readme_quickstart_before_tox():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
    assert block.startswith("apt-get") and "clbench run strategy=naive scenario=split_fmnist seed=0" in block
    ci = (REPO / ".ci" / "run").read_text()
    assert "--print-quickstart" in ci  # else running it below would run the whole CI
    out = subprocess.run([str(REPO / ".ci" / "run"), "--print-quickstart"], capture_output=True, text=True, check=True,
                         timeout=30)
    assert out.stdout.strip() == block.strip()
    assert ci.index('bash -euo pipefail -c "$command"') < ci.index("tox -e py311")
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)


# -- 3. records: statuses, any value, failed saves, umask, the writing process ------------------

def test_interrupted_is_a_status_and_old_records_still_load(tmp_path):
    assert records.STATUSES == ("running", "complete", "failed", "interrupted")
    rec = make_record(status="interrupted", error="interrupted by SIGTERM after 1/3 experiences")
    assert records.load(records.save(rec, tmp_path)).status == "interrupted"
    old = make_record().to_dict()
    for key in ("pid", "host", "updated", "nonfinite"):  # a record written before these fields existed
        del old[key]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = records.load(tmp_path / "old.json")
    assert loaded.pid is None and loaded.host is None and loaded.nonfinite == []


def test_records_serialise_whatever_the_numbers_are(tmp_path):
    class Opaque:
        def __str__(self):
            return "<opaque thing>"

    rec = make_record(metrics_extra={"ACC": float("nan"), "weird": float("inf")})
    rec.strategy["details"] = {"lr": np.float32(0.5), "steps": np.int64(7), "w": torch.ones(2),
                               "t0": torch.tensor(float("nan")), "arr": np.array([[1.0, np.nan]]),
                               "obj": Opaque(), 3: (1, float("-inf")), "ok": True}
    rec.compute["x"] = torch.tensor(2.5, requires_grad=True)
    path = records.save(rec, tmp_path)
    data = json.loads(path.read_text())
    d = data["strategy"]["details"]
    assert d == {"lr": 0.5, "steps": 7, "w": [1.0, 1.0], "t0": None, "arr": [[1.0, None]], "obj": "<opaque thing>",
                 "3": [1, None], "ok": True}
    assert data["metrics"]["ACC"] is None and data["compute"]["x"] == 2.5
    assert set(data["nonfinite"]) == {"metrics.ACC", "metrics.weird", "strategy.details.t0",
                                      "strategy.details.arr[0][1]", "strategy.details.3[1]"}
    again = records.load(path)
    assert again.nonfinite == data["nonfinite"]
    records.save(again, tmp_path)  # the flags survive a re-save of the loaded (null) values
    assert json.loads(path.read_text())["nonfinite"] == data["nonfinite"]
    # the leaderboard skips it and says why
    loaded, skipped = __import__("clbench.results.leaderboard.collect", fromlist=["x"]).load_records(tmp_path)
    assert not loaded and "metrics.ACC" in skipped[0].reason


def test_check_writable_names_the_path(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for bad in (a_file, a_file / "below"):
        with pytest.raises(records.RecordWriteError, match=re.escape(str(a_file))):
            records.check_writable(bad)
    assert records.check_writable(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(records.RecordWriteError, match="not writable"):
            records.check_writable(ro)


def test_save_into_an_unwritable_place_keeps_a_copy_and_says_so_in_one_line(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    rec = make_record(run_id="copy-me")
    with pytest.raises(records.RecordWriteError) as info:
        records.save(rec, blocker)
    msg = str(info.value)
    assert "\n" not in msg and str(blocker) in msg and "a copy is at" in msg
    copy = Path(msg.rsplit("a copy is at ", 1)[1])
    assert records.load(copy).run_id == "copy-me"
    copy.unlink()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_records_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = records.save(make_record(), tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_running_record_is_told_from_a_live_one(tmp_path, capsys):
    live = make_record(status="running", run_id="live")
    assert live.pid == os.getpid() and live.host == socket.gethostname()
    assert records.liveness(live) == "live"
    dead = make_record(status="running", run_id="dead", pid=_dead_pid())
    assert records.liveness(dead) == "gone"
    elsewhere = make_record(status="running", run_id="far", host="another-host-" + socket.gethostname())
    assert records.liveness(elsewhere) == "unknown"
    assert records.liveness(make_record()) is None
    path = records.save(dead, tmp_path)
    assert main(["show", str(path)]) == 0
    assert "running (process gone: killed?)" in capsys.readouterr().out
    records.save(live, tmp_path)
    code, md, _ = board_md(capsys, tmp_path)
    assert code == 0
    assert re.search(r"dead\.json`: status 'running' \(process gone: killed\?", md)
    assert re.search(r"live\.json`: status 'running' \(live: pid", md)


# -- 4. leaderboard: wrong types deeper down are skipped, labels escaped ------------------------

@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d["params"].update(after=5), "params.after"),
    (lambda d: d["timing"].update(train_s="abc"), "timing.train_s"),
    (lambda d: d["timing"].update(train_s=[1, "x", 2]), "timing.train_s"),
    (lambda d: d["params"]["added"][0].update(total="x"), "params.added[0].total"),
    (lambda d: d["scenario"].update(name=["a", "list"]), "scenario.name"),
    (lambda d: d.update(deviations=[1, "a"]), "deviations"),
    (lambda d: d["timing"].update(phases="slow"), "timing.phases"),
    (lambda d: d["config"].update(strategy=[1]), "config.strategy"),
    (lambda d: d.update(extra={"aux": {"x": "high"}}), "extra.aux.x"),
    (lambda d: d.update(compute={"train_flops": "many"}), "compute.train_flops"),
])
def test_wrong_types_deeper_down_are_skipped_not_fatal(tmp_path, capsys, mutate, reason):
    records.save(make_record("naive", 0), tmp_path)
    bad = make_record("er", 0, run_id="bad").to_dict()
    mutate(bad)
    where = tmp_path / "runs" / "toy" / "er"
    where.mkdir(parents=True)
    (where / "bad.json").write_text(json.dumps(bad))
    for fmt in ("md", "csv", "latex", "html"):
        code, out, err = board_md(capsys, tmp_path, "--format", fmt)
        assert code == 0, err
    code, md, err = board_md(capsys, tmp_path)
    assert "skipped 1 record file " in err
    skipped = md.split("## Skipped records")[1]
    assert "1 record file was left out" in skipped and "bad.json" in skipped and reason in skipped
    assert "| naive |" in md.replace("`", "")


def test_labels_with_dollars_reach_no_math_parser(tmp_path, capsys):
    for seed in (0, 1):
        records.save(make_record("naive", seed, strategy_config={"tag": "$\\foo$"}), tmp_path)
        records.save(make_record("naive", seed, strategy_config={"tag": "plain"}, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]),
                     tmp_path)
    page = tmp_path / "board.html"
    code, _, err = board_md(capsys, tmp_path, "--format", "html", "--out", page)
    assert code == 0, err
    assert "tag=$\\foo$" in page.read_text()
    import matplotlib.pyplot as plt

    from clbench.results import plots

    fig = plots.accuracy_curves({"naive (tag=$\\foo$)": ([0.5, 0.6], [0.0, 0.1])}, "a $\\bar$ title")
    fig.savefig(io.BytesIO(), format="png")  # unescaped, mathtext raises on \foo
    plt.close(fig)


# -- 5. show, broken pipes, --version --------------------------------------------------------------

def test_show_on_a_folder_a_loop_or_a_typo_says_one_line(tmp_path, capsys):
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    for target, words in ((tmp_path, "is a folder"), (loop, "cannot read"), (tmp_path / "typo.jsn", "no such record")):
        assert main(["show", str(target)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(target) in err and len(err.strip().splitlines()) == 1
    assert main(["show"]) == 2 and "usage" in capsys.readouterr().err


def test_show_survives_odd_values(tmp_path, capsys):
    rec = make_record(status="failed", error="boom")
    rec.matrix = [[0.1, None, "x"], [float("nan"), 0.2, 0.3]]
    rec.timing = {"train_s": ["abc", 1.0]}
    path = records.save(rec, tmp_path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "status: failed" in out and "boom" in out


def test_help_into_a_closed_pipe_and_version():
    for args in (["--help"], ["--version"]):
        p = subprocess.Popen([sys.executable, "-m", "clbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # `| head` that has already exited
        err = p.stderr.read().decode()
        p.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
    out = subprocess.run([sys.executable, "-m", "clbench", "--version"], capture_output=True, text=True)
    import clbench

    assert out.returncode == 0 and out.stdout.strip() == f"clbench {clbench.__version__}"


# -- 6. early validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("override, words", [
    ("strategy.epochs=0", ["strategy.epochs=0", ">= 1"]),
    ("strategy.epochs=-1", ["strategy.epochs=-1", ">= 1"]),
    ("strategy.batch_size=-4", ["strategy.batch_size=-4", ">= 1"]),
    ("strategy.batch_size=0", ["strategy.batch_size=0", ">= 1"]),
    ("strategy.lr=nan", ["strategy.lr=nan", "a number > 0"]),
    ("strategy.lr=0", ["strategy.lr=0", "> 0"]),
    ("strategy=er strategy.buffer_size=-1", ["strategy.buffer_size=-1", ">= 0"]),
    ("scenario.train_per_class=0", ["scenario.train_per_class=0", ">= 1"]),
    ("scenario.test_per_class=-5", ["scenario.test_per_class=-5", ">= 1"]),
    ("scenario=split_fmnist_stream scenario.repeats=0", ["scenario.repeats=0", ">= 1"]),
    ("scenario=split_fmnist_blurry scenario.blurry=0.7", ["scenario.blurry=0.7", "[0, 0.5]"]),
    ("val_fraction=1.5", ["val_fraction=1.5", "[0, 1)"]),
    ("eval_batch_size=0", ["eval_batch_size=0", ">= 1"]),
    ("num_workers=-1", ["num_workers=-1", ">= 0"]),
    ("seed=-3", ["seed=-3", ">= 0"]),
    ("-m seed=0,1,-2", ["seed=-2", ">= 0"]),  # each value of a sweep
])
def test_out_of_range_settings_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, override, words):
    from clbench.cli import launch

    def must_not_run(cfg):
        raise AssertionError(f"{override} was not refused: a run was built")

    monkeypatch.setattr(launch, "run_from_config", must_not_run)
    args = ["run", *override.split(), "logger=none", f"results_dir={tmp_path}", "progress=false"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not list(tmp_path.rglob("*.json"))


def test_an_unwritable_results_dir_is_refused_first(tmp_path, capsys, monkeypatch):
    from clbench.cli import launch

    monkeypatch.setattr(launch, "run_from_config", lambda cfg: pytest.fail("results_dir was not refused"))
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0")
    assert main(["run", f"results_dir={a_file}", "logger=none"]) == 2
    err = capsys.readouterr().err
    assert str(a_file) in err and "not a folder" in err


def test_the_composed_config_is_checked_wherever_a_value_came_from(tmp_path, capsys, monkeypatch):
    from clbench.cli import launch
    from clbench.config.validate import check_config

    from clbench.config import compose

    a_file = tmp_path / "f"
    a_file.write_text("")
    cfg = compose(["strategy=naive", "scenario=split_fmnist", "logger=none"])  # typed, as every composed config
    cfg.val_fraction, cfg.results_dir = 1.0, str(a_file)
    cfg.strategy.epochs, cfg.strategy.lr, cfg.strategy.batch_size = 0, float("inf"), 8
    cfg.scenario.train_per_class, cfg.scenario.test_per_class = None, 0
    problems = check_config(cfg)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    for w in ("val_fraction=1.0", "strategy.epochs=0", "strategy.lr=inf", "scenario.test_per_class=0", str(a_file)):
        assert w in text
    called = []
    monkeypatch.setattr(launch, "run_from_config", lambda cfg: called.append(cfg))
    cfg = compose(["strategy=naive", "logger=none", f"results_dir={tmp_path}"])
    cfg.strategy.epochs = 0  # e.g. from an experiment file
    assert launch.execute(cfg) == 2 and not called
    assert "strategy.epochs=0" in capsys.readouterr().err


def test_a_refusal_is_instant_and_imports_no_torch(tmp_path):
    code = ("import sys, time; t = time.perf_counter(); from clbench.cli import main; "
            "rc = main(['run', 'strategy=naive', 'scenario=split_fmnist', 'strategy.epochs=0']); "
            "print(rc, 'torch' in sys.modules, 'hydra.core.config_store' in sys.modules, time.perf_counter() - t)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    wall = time.perf_counter() - t0
    rc, torch_loaded, _, _ = out.stdout.split()
    assert rc == "2" and torch_loaded == "False", out.stderr
    assert "strategy.epochs=0" in out.stderr
    assert wall < 5, f"refusal took {wall:.1f} s"  # about 0.3 s; generous for a loaded CI machine


# -- 7. CIFAR pickles load safely --------------------------------------------------------------------

class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_cifar_pickle_is_refused_and_never_runs(tmp_path):
    from scenarios.sources import cifar

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        labels = list(range(10))
        with open(d / name, "wb") as f:
            pickle.dump({"labels": labels, "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)
    marker = tmp_path / "pwned"
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({"labels": [0], "data": _Evil(marker)}, f, protocol=2)
    with pytest.raises(ValueError) as err:
        cifar.load_cifar10(tmp_path)
    assert "data_batch_1" in str(err.value) and "refused" in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    # the same file without the payload loads (arrays, lists, dicts, bytes are admitted)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({"labels": list(range(10)), "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                     "batch_label": b"raw bytes"}, f, protocol=2)
    assert len(cifar.load_cifar10(tmp_path).train) == 50


# -- 8. leaderboard output -----------------------------------------------------------------------------

def test_prepare_train_eval_and_total_seconds_and_ties_ranked_on_the_total(tmp_path, capsys):
    slow = {"prepare_s": 30.0, "encode_s": 2.0, "train_s": [1.0, 1.0, 1.0], "eval_s": [0.5] * 4}
    fast = {"phases": [{"prepare": 1.0, "eval": 0.25}] + [{"train": 2.0, "eval": 0.25}] * 3}  # per experience
    records.save(make_record("aaa_slow", 0, timing=slow), tmp_path)
    records.save(make_record("zzz_fast", 0, timing=fast), tmp_path)
    _, out, _ = board_md(capsys, tmp_path, "--format", "csv")
    import csv

    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["strategy"] for r in rows] == ["zzz_fast", "aaa_slow"]  # same ACC: the faster total first
    by = {r["strategy"]: r for r in rows}
    assert float(by["aaa_slow"]["prepare_s_mean"]) == 32.0 and float(by["aaa_slow"]["train_s_mean"]) == 3.0
    assert float(by["aaa_slow"]["eval_s_mean"]) == 2.0 and float(by["aaa_slow"]["total_s_mean"]) == 37.0
    assert float(by["zzz_fast"]["total_s_mean"]) == 8.0 and float(by["zzz_fast"]["train_s_mean"]) == 6.0
    _, md, _ = board_md(capsys, tmp_path)
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    assert "Prep s ↓" in header and "Train s ↓" in header and "Eval s ↓" in header and "Total s ↓" in header


def _two_configs(root: Path) -> None:
    for seed in (0, 1, 2):
        records.save(make_record("naive", seed, deviations=["epochs=1 (paper: 50)"]), root)
        records.save(make_record("er", seed, strategy_config={"buffer_size": 10 ** 6, "a_long_option_name": "x" * 20},
                                 matrix=[[0, 0, 0], [1, 0, 0], [0.9, 0.9, 0], [0.8, 0.8, 0.9]]), root)


def test_latex_default_columns_are_compact(tmp_path, capsys):
    _two_configs(tmp_path)
    _, tex, _ = board_md(capsys, tmp_path, "--format", "latex")
    head = next(ln for ln in tex.splitlines() if ln.strip().startswith(r"\#"))
    assert [h.split(" $")[0].strip() for h in head.rstrip("\\ ").split("&")][3:] == ["ACC", "AIA", "FGT", "Params", "Total s"]
    _, tex, _ = board_md(capsys, tmp_path, "--format", "latex", "--metric", "ACC", "BWT")
    assert "BWT" in tex and "AIA" not in tex.split(r"\midrule")[0].split(r"\toprule")[1]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_tables_compile_and_fit_one_column(tmp_path, capsys):
    _two_configs(tmp_path / "r")
    _, tex, _ = board_md(capsys, tmp_path / "r", "--format", "latex")
    (tmp_path / "board.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
        "\\usepackage{booktabs,graphicx}\n\\begin{document}\n\\input{board.tex}\n\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert out.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log


def test_heatmaps_leave_structural_zeros_blank_and_figures_come_as_svg(tmp_path, capsys):
    import matplotlib.pyplot as plt

    from clbench.results import plots

    fig = plots.accuracy_heatmap(M3, "ci", kind="class_incremental")
    assert len(fig.axes[0].texts) == 6  # 12 cells less row 0 (3) and j > i (2 + 1)
    plt.close(fig)
    fig = plots.accuracy_heatmap(M3, "ti", kind="task_incremental")
    assert len(fig.axes[0].texts) == 12
    paths = plots.save_figure(fig, tmp_path / "fig" / "ti")
    assert [p.suffix for p in paths] == [".png", ".svg"] and paths[1].read_text().lstrip().startswith("<?xml")
    _two_configs(tmp_path / "r")
    code, _, err = board_md(capsys, tmp_path / "r", "--format", "html", "--out", tmp_path / "b.html", "--figures",
                            tmp_path / "figs")
    assert code == 0, err
    svgs = sorted(p.name for p in (tmp_path / "figs").glob("*.svg"))
    assert len(svgs) == 1 + 2 * 2 and len(list((tmp_path / "figs").glob("*.png"))) == 5


def test_multilabel_shows_last_and_avg_map_once(tmp_path, capsys):
    rec = make_record("er", 0, kind="multilabel", scenario="voc")
    rec.metrics.update(last_mAP=rec.metrics["ACC"], avg_mAP=rec.metrics["AIA"], CF1=0.4, OF1=0.5)
    records.save(rec, tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    assert "ACC" in header and "Avg mAP" not in header and "Last mAP" not in header and "CF1" in header
    assert "ACC is the last mAP" in md


def test_footnotes_in_order_wording_and_no_bold_within_noise(tmp_path, capsys):
    for seed in (0, 1):
        records.save(make_record("aaa", seed, deviations=["zeta deviation", "alpha deviation"]), tmp_path)
    records.save(make_record("bbb", 0, deviations=["beta deviation", "alpha deviation"],
                             matrix=[[0, 0, 0], [1, 0, 0], [0.5, 0.8, 0], [0.3, 0.4, 0.8]]), tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "`" in ln]
    assert "aaa<sup>1,2</sup>" in rows[0] and "bbb<sup>1,3</sup>" in rows[1]
    notes = re.findall(r"^(\d)\. (.*)$", md, re.M)
    assert notes == [("1", "alpha deviation"), ("2", "zeta deviation"), ("3", "beta deviation")]
    assert "from 3 run records" in md
    one = tmp_path / "one"
    records.save(make_record("naive", 0), one)
    _, md, _ = board_md(capsys, one)
    assert "from 1 run record;" in md
    code, _, _ = board_md(capsys, one, "--format", "html", "--out", one / "b.html")
    assert "over 1 seed<" in (one / "b.html").read_text()
    # bold only when the lead exceeds the std: ACC 0.55 ± 0.21 vs 0.45 (no); 0.50 ± 0.014 vs 0.45 (yes)
    noisy = tmp_path / "noisy"
    for seed, last in ((0, [0.4, 0.4, 0.4]), (1, [0.7, 0.7, 0.7])):
        records.save(make_record("a", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], last]), noisy)
    for seed in (0, 1):
        records.save(make_record("b", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0.45, 0.45, 0.45]]), noisy)
    _, md, _ = board_md(capsys, noisy, "--metric", "ACC")
    assert "**" not in md.split("## Skipped")[0].split("| --:")[-1]
    clean = tmp_path / "clean"
    for seed, last in ((0, [0.49, 0.49, 0.49]), (1, [0.51, 0.51, 0.51])):
        records.save(make_record("a", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], last]), clean)
        records.save(make_record("b", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0.45, 0.45, 0.45]]), clean)
    _, md, _ = board_md(capsys, clean, "--metric", "ACC")
    assert "**50.00 ± 1.41**" in md


def test_protocol_definition_ships_with_the_repo_and_is_linked(tmp_path, capsys):
    doc = REPO / "docs" / "PROTOCOL.md"
    assert doc.is_file() and "## Accuracy matrix" in doc.read_text()
    records.save(make_record(), tmp_path)
    for fmt in ("md", "latex"):
        assert "docs/PROTOCOL.md" in board_md(capsys, tmp_path, "--format", fmt)[1]


def test_flops_aux_and_routing_columns(tmp_path, capsys):
    for seed in (0, 1):
        rec = make_record("dkvb", seed, metrics_extra={"routing_accuracy": 0.8 + 0.1 * seed})
        rec.compute["train_flops"] = 2e15
        rec.extra["aux"] = [{"key_usage": 0.5}, {}, {"key_usage": 0.25, "steps": 1960}] if seed else \
            {"key_usage": 0.25, "steps": 1960}  # one dict per step (the last counts), or one dict
        records.save(rec, tmp_path)
    records.save(make_record("naive", 0), tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    assert "Train FLOPs ↓" in header and "ACC/PFLOP ↑" in header and "Routing acc ↑" in header
    row = next(ln for ln in md.splitlines() if ln.startswith("| ") and "dkvb" in ln)
    assert "| 2P |" in row or "| 2P ± 0 |" in row, row
    assert "26.7" in row  # 53.33 % / 2 PFLOP
    _, md, _ = board_md(capsys, tmp_path, "--metric", "ACC", "aux.key_usage")
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    assert header.endswith("| ACC ↑ | aux.key_usage |") and "0.25 ± 0" in md
    code, _, err = board_md(capsys, tmp_path, "--metric", "aux.")
    assert code == 2 and "aux.<name>" in err


# -- 9. W&B: partial matrices, exit codes, group, tags, summary, loss curves, the sync hint ----------

class _FakeRun:
    def __init__(self, tmp: Path, **kw) -> None:
        self.kw, self.logged, self.summary, self.metrics, self.exit_code = kw, [], {}, [], "open"
        self.dir = str(tmp / "wandb" / "offline-run-20261126_000000-x" / "files")

    def define_metric(self, name, step_metric=None, **kw):
        self.metrics.append((name, step_metric))

    def log(self, data, step=None):
        self.logged.append(data)

    def finish(self, exit_code=None):
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    import types

    import wandb

    runs = []

    def init(**kw):
        runs.append(_FakeRun(tmp_path, **kw))
        return runs[-1]

    fake = types.SimpleNamespace(init=init, Settings=lambda **kw: kw, Table=wandb.Table, Image=lambda fig: "img")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return runs


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_failed_or_interrupted_run_closes_its_wandb_run_with_partial_matrices(fake_wandb, tmp_path, status):
    from clbench.loggers import wandb_logger
    from clbench.loggers.wandb_logger import WandbLogger

    T = 5
    rec = make_record("naive", 0, deviations=["epochs=1 (paper: 5)"], status=status,
                      matrix=[[0.0] * T, [0.9, 0, 0, 0, 0], [0.5, 0.8, 0, 0, 0]])
    rec.scenario["num_experiences"] = T
    rec.error = "RuntimeError: non-finite loss at experience 3, step 12"
    lg = WandbLogger(dir=str(tmp_path))
    lg.start(rec)
    lg.log_steps(10, {"loss": 0.5})
    lg.log_steps(20, {"train/loss": 0.25})
    lg.log_row(1, rec.matrix[1], rec)
    where = lg.finish(rec)
    (run,) = fake_wandb
    assert run.exit_code == 1 and run.summary["status"] == status and "non-finite" in run.summary["error"]
    tables = [d for d in run.logged if "accuracy_matrix" in d][0]
    acc, fgt = tables["accuracy_matrix"], tables["forgetting_matrix"]
    assert len(acc.columns) == T + 1 and all(len(r) == T + 1 for r in acc.data) and len(acc.data) == 3
    assert len(fgt.data) == 2 and fgt.data[1][1] == pytest.approx(0.4)  # F[2][1] = R[1][1] - R[2][1] = 0.9 - 0.5
    from clbench.results.leaderboard.collect import config_id, config_key

    assert run.kw["group"] == f"toy/naive/{config_id(config_key(rec))}"
    assert "class_incremental" in run.kw["tags"] and "deviations" in run.kw["tags"]
    assert {"train/loss": 0.5, "train/global_step": 10} in run.logged
    assert {"train/loss": 0.25, "train/global_step": 20} in run.logged
    assert ("train/*", "train/global_step") in run.metrics and ("acc/*", "experience") in run.metrics
    assert run.summary["params/total"] == 100 and run.summary["timing/train_s_total"] == 5.0
    assert wandb_logger.location_line(where).endswith(f"wandb sync {where})")
    wandb_logger.FINISHED.clear()


def test_a_complete_run_finishes_with_exit_code_0(fake_wandb, tmp_path):
    from clbench.loggers import wandb_logger
    from clbench.loggers.wandb_logger import WandbLogger

    lg = WandbLogger(dir=str(tmp_path))
    rec = make_record()
    lg.start(rec)
    lg.finish(rec)
    assert fake_wandb[0].exit_code == 0 and fake_wandb[0].summary["ACC"] == pytest.approx(1.6 / 3)
    wandb_logger.FINISHED.clear()


def test_cli_prints_the_record_path_unbroken_and_the_sync_hint_once(tmp_path, capsys, monkeypatch):
    from omegaconf import OmegaConf

    from clbench.cli import launch
    from clbench.loggers import wandb_logger

    deep = tmp_path / ("a-very-long-folder-name-" * 4) / "runs" / "toy" / "naive" / "20261126T000000-s0-abcdef.json"
    wdir = str(tmp_path / "wandb" / "offline-run-20261126_000000-abc")
    rec = make_record()
    rec.environment = {"logs": {"WandbLogger": wdir}}

    def fake_run(cfg):
        wandb_logger.FINISHED.append(wdir)
        return rec, deep

    monkeypatch.setattr(launch, "run_from_config", fake_run)
    monkeypatch.setenv("COLUMNS", "60")
    cfg = OmegaConf.create({"seed": 0, "results_dir": str(tmp_path), "strategy": {"epochs": 1}, "scenario": {}})
    assert launch.execute(cfg) == 0
    out = capsys.readouterr().out
    assert f"record: {deep}" in out  # on one line, not wrapped mid-name
    assert out.count(f"wandb sync {wdir}") == 1


@pytest.mark.parametrize("error, code, words", [
    (KeyboardInterrupt(), 130, "run interrupted (Ctrl-C)"),
    (FloatingPointError("non-finite training loss (nan) at step 12 of experience 3"), 1, "run failed: non-finite"),
])
def test_a_stopped_run_ends_in_one_line(tmp_path, capsys, monkeypatch, error, code, words):
    from omegaconf import OmegaConf

    from clbench.cli import launch

    def stop(cfg):
        raise error

    monkeypatch.setattr(launch, "run_from_config", stop)
    cfg = OmegaConf.create({"seed": 0, "results_dir": str(tmp_path), "strategy": {}, "scenario": {}})
    assert launch.execute(cfg) == code
    err = capsys.readouterr().err
    assert words in err and "keeps the rows done so far" in err and len(err.strip().splitlines()) == 1


# -- 10. progress -------------------------------------------------------------------------------------

def test_progress_lines_without_a_terminal(tmp_path):
    from clbench.progress import PhaseProgress

    buf = io.StringIO()
    with PhaseProgress(True, stream=buf, interval=0.05) as progress:  # a StringIO is no TTY: lines
        assert progress.mode == "lines"
        with progress.phase("key init", total=None, unit="steps"):
            time.sleep(0.3)  # silent phase: still a line every interval
        with progress.phase("train 1/2", total=1000) as advance:
            for _ in range(4):
                advance(250)
                progress.set_postfix("epoch 1/1 · loss 0.43")
                time.sleep(0.06)
            advance.set_postfix("loss 0.40")
    lines = buf.getvalue().splitlines()
    assert any(ln.startswith("key init: running") for ln in lines)
    assert "key init: done in" in buf.getvalue()
    assert any(re.match(r"train 1/2: \d+/1,000 samples \(\d+%\), .* ETA .*loss 0.43", ln) for ln in lines), lines
    assert re.search(r"train 1/2: done in .*, 1,000 samples · loss 0.40", buf.getvalue())
    with PhaseProgress(False) as progress:
        with progress.phase("x", total=3) as advance:
            assert advance is None
        progress.set_postfix("ignored")


def test_progress_bar_shows_total_eta_and_postfix():
    from rich.console import Console

    from clbench.progress import PhaseProgress

    buf = io.StringIO()
    progress = PhaseProgress(True, mode="bar", stream=buf)
    progress._progress.live.console = Console(file=buf, width=150, force_terminal=True)
    with progress:
        with progress.phase("train 1/5", total=1000) as advance:
            advance(400)
            advance.set_postfix("epoch 2/3 · loss 0.43")
            progress._progress.refresh()
            assert "400/1,000 samples" in buf.getvalue() and "ETA" in buf.getvalue()
            assert "loss 0.43" in buf.getvalue()
