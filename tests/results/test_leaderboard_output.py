"""What a reader gets from `clbench leaderboard` (clbench.results.leaderboard), on hand-made
records: a record with a wrong type deeper down is skipped, not fatal; prepare, train, eval
and total seconds, ties ranked on the total; compact LaTeX that compiles into one column;
the multi-label mAP shown once; footnotes in order and bold only beyond the noise; the
protocol definition linked; FLOPs, aux and routing columns."""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clbench.results import records

from handmade_records import _two_configs, board_md, make_record

REPO = Path(__file__).resolve().parents[2]


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


def test_latex_default_columns_are_compact(tmp_path, capsys):
    _two_configs(tmp_path)
    _, tex, _ = board_md(capsys, tmp_path, "--format", "latex")
    head = next(ln for ln in tex.splitlines() if ln.strip().startswith(r"\#"))
    # issue 23: the compact set fits one column at 8 pt (no n column when every row has the same n)
    assert [h.split(" $")[0].strip() for h in head.rstrip("\\ ").split("&")][2:] == ["ACC", "FGT", "Params"]
    _, tex, _ = board_md(capsys, tmp_path, "--format", "latex", "--metric", "ACC", "BWT")
    assert "BWT" in tex and "AIA" not in tex.split(r"\midrule")[0].split(r"\toprule")[1]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_tables_compile_and_fit_one_column(tmp_path, capsys):
    _two_configs(tmp_path / "r")
    _, tex, _ = board_md(capsys, tmp_path / "r", "--format", "latex")
    (tmp_path / "board.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
        "\\usepackage{booktabs,tabularx}\n\\begin{document}\n\\input{board.tex}\n\\end{document}\n")  # issue 23: tabularx
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert out.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log


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
    # bold only when a paired t-test over shared seeds finds the lead significant: ACC 0.55 ± 0.21 vs 0.45 (no);
    # 0.50 ± 0.01 vs 0.45 over 3 seeds (per-seed leads 0.04, 0.05, 0.06: p = 0.013, yes)
    noisy = tmp_path / "noisy"
    for seed, last in ((0, [0.4, 0.4, 0.4]), (1, [0.7, 0.7, 0.7])):
        records.save(make_record("a", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], last]), noisy)
    for seed in (0, 1):
        records.save(make_record("b", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0.45, 0.45, 0.45]]), noisy)
    _, md, _ = board_md(capsys, noisy, "--metric", "ACC")
    assert "**" not in md.split("## Skipped")[0].split("| --:")[-1]
    clean = tmp_path / "clean"
    for seed, last in ((0, [0.49, 0.49, 0.49]), (1, [0.50, 0.50, 0.50]), (2, [0.51, 0.51, 0.51])):
        records.save(make_record("a", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], last]), clean)
        records.save(make_record("b", seed, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0.45, 0.45, 0.45]]), clean)
    _, md, _ = board_md(capsys, clean, "--metric", "ACC")
    assert "**50.00 ± 1.00 [47.52, 52.48]**" in md


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
