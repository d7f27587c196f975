"""`clbench leaderboard` (clbench.results.leaderboard): aggregation over seeds, grouping by
config, ranking, the four formats, skipped records, output independent of location. Records
are hand-made RunRecords written to tmp_path (no training). The committed
results/reference/LEADERBOARD.md: tests/repo/test_reference_results.py."""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import pytest

from clbench.results import metrics

from clbench.results import records
from clbench.results.leaderboard import build_leaderboard
from clbench.results.leaderboard.aggregate import Stat
from clbench.results.leaderboard.collect import NON_SCIENTIFIC_KEYS, config_key, group_runs, load_records
from clbench.results.leaderboard.latex import escape
from clbench.results.records import RunRecord

from handmade_records import run_cli


# Three seeds of "naive" on a 3-experience toy scenario; ACC = mean of the last row.
NAIVE = [
    [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.3, 0.8, 0.0], [0.1, 0.2, 0.9]],  # ACC 0.4
    [[0.0, 0.0, 0.0], [0.8, 0.0, 0.0], [0.4, 0.9, 0.0], [0.2, 0.3, 1.0]],  # ACC 0.5
    [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 0.7, 0.0], [0.3, 0.3, 0.9]],  # ACC 0.5
]
ER = [
    [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.6, 0.6, 0.9]],  # ACC 0.7
    [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.8, 0.8, 0.0], [0.7, 0.7, 0.7]],  # ACC 0.7
]


def make_record(strategy: str, seed: int, matrix, *, scenario: str = "toy", kind: str = "class_incremental",
                strategy_config: Optional[dict] = None, run: Optional[dict] = None, scenario_config: Optional[dict] = None,
                deviations=(), status: str = "complete", metrics_extra: Optional[dict] = None,
                run_id: Optional[str] = None, flops=None) -> RunRecord:
    """A record as the protocol writes it, from a hand-made matrix."""
    T = len(matrix[0])
    union = [sum(matrix[i][:i]) / i for i in range(1, T + 1)]
    scfg = {"name": strategy, "epochs": 1, "batch_size": 32, "lr": 0.01, **(strategy_config or {})}
    config = {
        "seed": seed, "device": "cpu", "results_dir": "/somewhere", "data_root": None, "val_fraction": 0.1,
        "eval_batch_size": 512, "progress": False, "count_flops": False, "num_workers": 0,
        "strategy": scfg,
        "scenario": {"name": scenario, "kind": kind, "train_per_class": 100, "download": False, **(scenario_config or {})},
        "backbone": {"name": "cnn28", "width": 32},
        "logger": {"name": "none"},
        **(run or {}),
    }
    m = metrics.summarize(matrix, union, kind)
    m.update(metrics_extra or {})
    return RunRecord(
        run_id=run_id or f"2026-{strategy}-s{seed}-{zlib.crc32(json.dumps(config, sort_keys=True).encode()):08x}",
        created=f"2026-11-26T00:00:{seed:02d}+00:00", seed=seed,
        scenario={"name": scenario, "kind": kind, "num_experiences": T},
        strategy={"name": strategy, "config": scfg, "backbone": config["backbone"], "deviations": list(deviations)},
        config=config, matrix=matrix, union_accuracy=union, forgetting_matrix=metrics.forgetting_matrix(matrix),
        metrics=m, timing={"train_s": [1.0, 2.0, 3.0], "eval_s": [0.1] * 3, "flops": flops or [None] * 3},
        params={"initial": {"total": 1000}, "after": [{"total": 1000 + 10 * k} for k in range(1, T + 1)],
                "added": [{"total": 10}] * T},
        deviations=list(deviations), status=status, experiences_done=T if status == "complete" else 1,
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed, m in enumerate(NAIVE):
        records.save(make_record("naive", seed, m, deviations=["epochs: 1 (paper: 70)"]), root)
    for seed, m in enumerate(ER):
        records.save(make_record("er", seed, m), root)
    return root


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# -- aggregation -------------------------------------------------------------------

def test_stat_mean_sample_std_and_n_by_hand():
    s = Stat.of([0.4, 0.5, 0.5])
    assert s.n == 3 and s.mean == pytest.approx(1.4 / 3)
    # deviations from the mean 0.4667: -0.0667, 0.0333, 0.0333 -> sum of squares 0.00667 / (3 - 1)
    assert s.std == pytest.approx(math.sqrt(0.02 / 3 / 2))
    assert Stat.of([0.3, None, 0.5]) == Stat(pytest.approx(0.4), pytest.approx(math.sqrt(0.02)), 2)
    assert Stat.of([0.7]) == Stat(0.7, None, 1)  # one seed: no std, not 0
    assert Stat.of([None]) == Stat(None, None, 0)


def test_leaderboard_rows_carry_mean_std_n(results, capsys):
    code, out, _ = run_cli(capsys, results, "--format", "csv")
    assert code == 0
    rows = {r["strategy"]: r for r in csv_rows(out)}
    naive = rows["naive"]
    assert naive["n"] == "3" and naive["seeds"] == "0;1;2"
    assert float(naive["ACC_mean"]) == pytest.approx(1.4 / 3)
    assert float(naive["ACC_std"]) == pytest.approx(math.sqrt(0.01 / 3))
    assert naive["ACC_n"] == "3"
    # FGT by hand per seed: seed 0 ((0.9-0.1) + (0.8-0.2))/2 = 0.7; seed 1 (0.6+0.6)/2 = 0.6; seed 2 (0.6+0.4)/2 = 0.5
    assert float(naive["FGT_mean"]) == pytest.approx(0.6)
    assert float(naive["FGT_std"]) == pytest.approx(0.1)
    er = rows["er"]
    assert er["n"] == "2" and float(er["ACC_mean"]) == pytest.approx(0.7) and float(er["ACC_std"]) == pytest.approx(0.0)
    assert float(er["params_added_mean"]) == 10 and float(er["train_s_mean"]) == 6.0
    assert "FWT_mean" not in er  # class-incremental: FWT undefined (None), so no column, not 0


def test_mean_matrices_for_heatmaps(results):
    board = build_leaderboard(results)
    er = next(r for r in board.tables[0].rows if r.strategy == "er")
    assert er.mean_matrix()[3] == pytest.approx([0.65, 0.65, 0.8])
    F = er.mean_forgetting()
    assert F[2][0] == pytest.approx(((0.9 - 0.6) + (0.9 - 0.7)) / 2) and F[0][0] is None
    mean, std = er.union_curve()
    assert mean[0] == pytest.approx(0.9) and std[0] == 0.0


# -- grouping ----------------------------------------------------------------------

def test_config_key_ignores_exactly_the_non_scientific_settings():
    base = make_record("er", 0, ER[0])
    other = make_record("er", 1, ER[1], run={"device": "cuda", "results_dir": "/elsewhere", "progress": True,
                                            "data_root": "/data", "eval_batch_size": 64, "num_workers": 4,
                                            "count_flops": True, "logger": {"name": "wandb"}},
                        scenario_config={"download": True}, run_id="another")
    assert config_key(base) == config_key(other)
    for k in NON_SCIENTIFIC_KEYS + ("download",):
        assert k in config_key.__doc__  # the docstring names every ignored setting
    for changed in (make_record("er", 0, ER[0], strategy_config={"lr": 0.1}),
                    make_record("er", 0, ER[0], scenario_config={"train_per_class": 500}),
                    make_record("er", 0, ER[0], run={"val_fraction": 0.2}),
                    make_record("er", 0, ER[0], run={"backbone": {"name": "cnn28", "width": 64}})):
        assert config_key(changed) != config_key(base)


def test_channels_last_the_default_needs_no_label_and_older_records_keep_their_own_row():
    """``channels_last: true`` (the default) leaves a row's label alone; a record made before
    the key existed ran in the standard format and groups with ``channels_last: false``."""
    older = make_record("er", 0, ER[0])  # a run config without the key
    standard = make_record("er", 0, ER[0], run={"channels_last": False})
    default = make_record("er", 0, ER[0], run={"channels_last": True})
    assert "channels_last" not in config_key(default)
    assert config_key(older) == config_key(standard) == {**config_key(default), "channels_last": False}


def test_different_configs_never_merge(tmp_path, capsys):
    root = tmp_path / "r"
    for seed in (0, 1):
        records.save(make_record("er", seed, ER[seed]), root)
        records.save(make_record("er", seed, NAIVE[seed], strategy_config={"lr": 0.1}), root)
        records.save(make_record("er", seed, NAIVE[seed], scenario_config={"train_per_class": 500}), root)
    code, out, _ = run_cli(capsys, root, "--format", "csv")
    rows = csv_rows(out)
    assert code == 0 and len(rows) == 3 and all(r["n"] == "2" for r in rows)
    labels = sorted(r["label"] for r in rows)
    assert len(set(labels)) == 3
    assert any("lr=0.1" in x for x in labels) and any("scenario.train_per_class=500" in x for x in labels)


def test_a_seed_run_twice_keeps_the_newest(tmp_path):
    root = tmp_path / "r"
    old = make_record("er", 0, NAIVE[0], run_id="a-old")
    new = make_record("er", 0, ER[0], run_id="b-new")
    new.created = "2026-11-27T00:00:00+00:00"
    for r in (old, new, make_record("er", 1, ER[1])):
        records.save(r, root)
    loaded, skipped = load_records(root)
    groups, superseded = group_runs(loaded)
    ids = {r.run_id for r in groups[0].records}
    assert not skipped and len(groups) == 1 and len(ids) == 2 and "b-new" in ids and "a-old" not in ids
    assert [s.path for s in superseded] == ["runs/toy/er/a-old.json"] and "superseded" in superseded[0].reason


# -- ranking and best marks ----------------------------------------------------------

JOINT = [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.9, 0.9, 0.0], [0.9, 0.9, 0.9]]  # ACC 0.9, FGT 0, BWT 0
LWF = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.75, 0.75, 0.95]]  # ACC 0.817, FGT 0.25, BWT -0.25


def test_ranking_and_best_per_column(results, capsys):
    for name, m in (("joint", JOINT), ("ewc", JOINT), ("lwf", LWF)):
        records.save(make_record(name, 0, m), results)
    order = lambda *a: [r["strategy"] for r in csv_rows(run_cli(capsys, results, "--format", "csv", *a)[1])]  # noqa: E731
    # ACC: ewc = joint 0.9 (tie broken by label) > lwf 0.817 > er 0.7 > naive 0.467
    assert order() == ["ewc", "joint", "lwf", "er", "naive"]
    # FGT, lower is better: 0 = 0 < er 0.2 < lwf 0.25 < naive 0.6
    assert order("--rank", "FGT") == ["ewc", "joint", "er", "lwf", "naive"]
    # BWT, higher is better: 0 = 0 > er -0.2 > lwf -0.25 > naive -0.6
    assert order("--rank", "BWT") == ["ewc", "joint", "er", "lwf", "naive"]
    _, md, _ = run_cli(capsys, results, "--format", "md")
    header = next(ln for ln in md.splitlines() if ln.startswith("| #")).split("|")
    col = {h.strip().split(" ")[0]: k for k, h in enumerate(header)}
    cells = {re.sub("<sup>.*", "", c[2].strip()): c for c in
             (ln.split("|") for ln in md.splitlines() if ln.startswith("| ") and "`" in ln)}
    acc = {name: c[col["ACC"]].strip() for name, c in cells.items()}
    # one seed per row: no test can tell a lead from noise, so nothing is bold (issue 24)
    assert acc["ewc"] == acc["joint"] == "90.00" and "**" not in acc["lwf"] + acc["er"] + acc["naive"]
    assert cells["er"][col["FGT"]].strip() == "20.00 ± 7.07"
    assert not any("**" in c[col["+Params/exp"]] for c in cells.values())  # all equal: nothing marked


def test_intransigence_against_joint_of_same_setting_and_seed(results, capsys):
    records.save(make_record("joint", 0, JOINT), results)  # diagonal 0.9 0.9 0.9
    records.save(make_record("joint", 1, [[0, 0, 0], [1.0, 0, 0], [0.9, 1.0, 0], [0.9, 0.9, 1.0]]), results)
    records.save(make_record("joint", 2, JOINT, scenario_config={"train_per_class": 500}), results)  # other data
    rows = {r["label"].split(" ")[0] + ("*" if "500" in r["label"] else ""): r
            for r in csv_rows(run_cli(capsys, results, "--format", "csv")[1])}
    naive = rows["naive"]
    # naive diagonals: seed 0: 0.9 0.8 0.9 -> I = (0 + 0.1 + 0) / 3; seed 1: 0.8 0.9 1.0 -> (0.2 + 0.1 + 0) / 3; seed 2: no reference
    assert naive["INT_n"] == "2"
    assert float(naive["INT_mean"]) == pytest.approx((0.1 / 3 + 0.3 / 3) / 2)
    assert float(naive["INT_std"]) == pytest.approx(abs(0.3 / 3 - 0.1 / 3) / math.sqrt(2))
    assert rows["joint"]["INT_mean"] == "" and rows["joint*"]["INT_mean"] == ""  # the reference itself


# -- formats -----------------------------------------------------------------------

def test_markdown_marks_deviations_and_lists_them(results, capsys):
    _, md, _ = run_cli(capsys, results)
    assert "## toy" in md
    naive = next(ln for ln in md.splitlines() if ln.startswith("| ") and "naive" in ln)
    er = next(ln for ln in md.splitlines() if ln.startswith("| ") and " er " in ln)
    assert "naive<sup>1</sup>" in naive and "<sup>" not in er
    assert "1. epochs: 1 (paper: 70)" in md and "not a reproduction" in md
    assert "46.67 ± 5.77" in naive  # ACC in % as mean ± sample std
    header = next(ln for ln in md.splitlines() if ln.startswith("| #"))
    assert "FWT" not in header and "Train FLOPs" not in header  # undefined / not counted: no column


def test_csv_parses(results, capsys):
    _, out, _ = run_cli(capsys, results, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert len({len(r) for r in rows}) == 1 and len(rows) == 3
    assert rows[0][:4] == ["scenario", "kind", "rank", "rank_by"]
    assert next(r for r in csv_rows(out) if r["strategy"] == "naive")["deviations"] == "epochs: 1 (paper: 70)"


def test_latex_is_a_booktabs_table(results, capsys):
    _, tex, _ = run_cli(capsys, results, "--format", "latex")
    # issue 23: a tabularx as wide as the column, set at 8 pt, never scaled (was: tabular in a \resizebox)
    body = re.search(r"\\begin\{tabularx\}\{\\linewidth\}\{@\{\}r>\{\\raggedright\\arraybackslash\}X(\w+)@\{\}\}(.*?)"
                     r"\\end\{tabularx\}", tex, re.S)
    assert body and tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    ncols = 2 + len(body.group(1))
    rows = [ln.strip() for ln in body.group(2).splitlines() if ln.strip().endswith(r"\\")]
    assert len(rows) == 3 and all(len(re.findall(r"(?<!\\)&", r)) == ncols - 1 for r in rows)
    assert re.search(r"\\toprule.*\\midrule.*\\bottomrule", body.group(2), re.S)
    assert r"naive\textsuperscript{1}" in tex and r"46.67$\pm$5.77" in tex
    # er (2 seeds) leads naive, but a paired t-test over their 2 shared seeds is not significant: no bold
    assert r"70.00$\pm$0.00" in tex and r"\textbf{70.00" not in tex
    assert r"\resizebox" not in tex and r"\scriptsize" not in tex
    assert escape("split_fmnist 50% & #1 {x}") == r"split\_fmnist 50\% \& \#1 \{x\}"


class _Page(HTMLParser):
    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack, self.tables, self.images, self.headings, self.items = [], [], [], [], []
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th", "h2", "li"):
            self._text = ""

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._text.strip())
        elif tag in ("h2", "li"):
            (self.headings if tag == "h2" else self.items).append(self._text.strip())

    def handle_data(self, data):
        self._text += data


def test_html_page_has_tables_and_embedded_figures(results, capsys, tmp_path):
    (results / "runs/toy/er/zz-corrupt.json").write_text("{ not json")
    page = tmp_path / "board.html"
    code, _, _ = run_cli(capsys, results, "--format", "html", "--out", page)
    parser = _Page()
    parser.feed(page.read_text())
    parser.close()
    assert code == 0 and not parser.stack
    assert parser.headings == ["toy", "Skipped records"]
    (table,) = parser.tables
    assert table[0][:4] == ["#", "Strategy", "Config", "n"] and len(table) == 3
    assert table[1][1] == "er" and table[2][1].startswith("naive")
    # one accuracy-vs-step plot + an accuracy and a forgetting heatmap per row
    assert len(parser.images) == 1 + 2 * 2
    for src in parser.images:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("zz-corrupt.json" in item and "not valid JSON" in item for item in parser.items)


# -- robustness ----------------------------------------------------------------------

def test_bad_records_are_skipped_with_reasons(results, capsys):
    toy = results / "runs" / "toy" / "er"
    (toy / "corrupt.json").write_text('{"run_id": "x", ')
    (toy / "list.json").write_text("[1, 2]")
    partial = make_record("er", 5, ER[0], status="running", run_id="partial")
    records.save(partial, results)
    failed = make_record("er", 6, ER[0], status="failed", run_id="failed")
    failed.error = "RuntimeError: CUDA out of memory"
    records.save(failed, results)
    future = make_record("er", 7, ER[0], run_id="future").to_dict()
    future["schema_version"] = 99
    (toy / "future.json").write_text(json.dumps(future))
    missing = make_record("er", 8, ER[0], run_id="nomatrix").to_dict()
    del missing["matrix"]
    (toy / "nomatrix.json").write_text(json.dumps(missing))
    typed = make_record("er", 10, ER[0], run_id="typed")
    typed.params = [1, 2]
    records.save(typed, results)
    ragged = make_record("er", 9, ER[0], run_id="ragged")
    ragged.matrix = ragged.matrix[:2]
    records.save(ragged, results)

    code, md, err = run_cli(capsys, results)
    assert code == 0 and "skipped 8 record files" in err
    skipped = md.split("## Skipped records")[1]
    reasons = {m.group(1): m.group(2) for m in re.finditer(r"- `runs/toy/er/([\w-]+)\.json`: (.*)", skipped)}
    assert set(reasons) == {"corrupt", "list", "partial", "failed", "future", "nomatrix", "ragged", "typed"}
    assert "not valid JSON" in reasons["corrupt"] and "JSON object" in reasons["list"]
    assert "status 'running'" in reasons["partial"] and "CUDA out of memory" in reasons["failed"]
    assert "schema version 99" in reasons["future"] and "matrix" in reasons["nomatrix"]
    assert "(steps+1) x T" in reasons["ragged"] and "params" in reasons["typed"]
    er_row = next(ln for ln in md.splitlines() if ln.startswith("| ") and " er " in ln)
    assert er_row.split("|")[4].strip() == "2"  # the good er seeds only


def test_multilabel_columns_appear_and_fwt_only_where_defined(tmp_path, capsys):
    root = tmp_path / "r"
    ml = {"avg_mAP": 0.61, "last_mAP": 0.52, "CF1": 0.40, "OF1": 0.45}
    records.save(make_record("er", 0, ER[0], scenario="voc", kind="multilabel", metrics_extra=ml), root)
    records.save(make_record("er", 0, ER[0], scenario="ti", kind="task_incremental", flops=[1e9, 2e9, 3e9]), root)
    _, md, _ = run_cli(capsys, root)
    voc = md.split("## voc")[1].split("##")[0]
    ti = md.split("## ti")[1].split("## voc")[0]
    assert all(h in voc for h in ("Avg mAP ↑", "Last mAP ↑", "CF1 ↑", "OF1 ↑")) and "FWT" not in voc
    assert "61.00" in voc and "FWT ↑" in ti and "Avg mAP" not in ti and "Train FLOPs ↓" in ti and "6G" in ti
    _, md, _ = run_cli(capsys, root, "--scenario", "voc", "--metric", "avg_mAP", "CF1")
    assert "## ti" not in md and "| n | Avg mAP ↑ | CF1 ↑ |" in md


def test_bad_arguments_name_the_choices(results, capsys, tmp_path):
    code, _, err = run_cli(capsys, results, "--metric", "ACCURACY")
    assert code == 2 and "ACCURACY" in err and "FGT" in err
    code, _, err = run_cli(capsys, results, "--scenario", "split_cifar")
    assert code == 2 and "split_cifar" in err and "toy" in err
    code, _, err = run_cli(capsys, tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err
    code, _, err = run_cli(capsys, results, "--format", "pdf")
    assert code == 2 and "html" in err


def test_output_is_deterministic_and_independent_of_location(results, tmp_path, capsys):
    copy = shutil.copytree(results, tmp_path / "elsewhere" / "copy")
    outs = [run_cli(capsys, where, "--format", fmt)[1] for fmt in ("md", "csv", "latex") for where in (results, copy, results)]
    for k in range(0, len(outs), 3):
        assert outs[k] == outs[k + 1] == outs[k + 2]
    assert str(tmp_path) not in "".join(outs)
