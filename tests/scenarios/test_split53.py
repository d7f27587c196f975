"""split53: task table, task selection, the paper's subsampling rule, the layout check
and lazy loading, on a miniature of the 53-task layout written by the tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from clbench.cli import main
from clbench.cli.launch import run_from_config
from clbench.config import compose
from clbench.errors import DataMissingError
from clbench.api.scenario import Scenario
from clbench.types import TASK_INCREMENTAL
from fixtures.split53_layout import write_split53_fixture
from scenarios import split53
from scenarios.split53 import (
    Split53Config, build_split53, check_split53, class_offsets, parse_tasks, per_class_counts,
    subsample, subsample_target, task_table,
)

FIRST_FIVE_RANGES = [(0, 67), (67, 267), (267, 294), (294, 341), (341, 406)]  # scenes, birds, wikiart, DTD, Clipart


def build(data_root: Path, **fields) -> Scenario:
    return build_split53(Split53Config(name="split53", **fields), data_root=data_root, seed=0)


@pytest.fixture(scope="module")
def full_layout(tmp_path_factory) -> Path:
    """All 53 tasks with their real class counts: 1 train + 1 test image per class."""
    return write_split53_fixture(tmp_path_factory.mktemp("split53"), per_class_train=1, per_class_test=1)


@pytest.fixture
def three_tasks(tmp_path) -> Path:
    return write_split53_fixture(tmp_path, tasks=[1, 2, 3], per_class_train=2, per_class_test=1)


def test_task_table_matches_the_paper():
    table = task_table()
    assert [t.order for t in table] == list(range(1, 54))
    assert sum(t.classes for t in table) == 1583
    assert (sum(t.train_images for t in table), sum(t.eval_images for t in table)) == (132625, 13863)
    offsets = class_offsets()
    assert [offsets[o] for o in range(1, 6)] == [a for a, _ in FIRST_FIVE_RANGES]
    assert offsets[53] + table[-1].classes == 1583


def test_parse_tasks_forms_and_errors():
    assert [t.order for t in parse_tasks("1-5")] == [1, 2, 3, 4, 5]
    assert [t.order for t in parse_tasks("3")] == [3]
    assert [t.order for t in parse_tasks("7,1,4")] == [1, 4, 7]
    assert [t.order for t in parse_tasks("1-3, 9")] == [1, 2, 3, 9]
    assert len(parse_tasks("all")) == 53
    for bad in ("0", "54", "5-3", "x", "1-", "", "1-2-3"):
        with pytest.raises(ValueError, match=r"scenario\.tasks=.*valid"):
            parse_tasks(bad)


def test_subsampling_rule_counts():
    assert subsample_target(59, "train") == 2560 and subsample_target(60, "train") == 5120
    assert subsample_target(59, "test") == 256 and subsample_target(60, "test") == 512
    assert per_class_counts([1000] * 67, "train") == [76] * 67  # round(5120 / 67) = 76 -> 5,092 as in the paper
    assert per_class_counts([1000] * 67, "test") == [8] * 67    # round(512 / 67) = 8 -> 536
    assert per_class_counts([1000] * 27, "train") == [95] * 27  # round(2560 / 27) = 94.8 -> 95
    assert per_class_counts([10, 1000, 95], "train") == [10, 853, 95]  # round(2560 / 3) = 853, capped by availability
    with pytest.raises(ValueError, match="validation"):
        subsample_target(10, "validation")


def test_paper_counts_never_exceed_the_rule():
    """Caps only lower a task's count, so the paper's counts sit at or below C x round(target / C)."""
    exact = 0
    for t in task_table():
        for split, paper in (("train", t.train_images), ("test", t.eval_images)):
            most = sum(per_class_counts([10 ** 6] * t.classes, split))
            assert paper <= most, (t.name, split, paper, most)
            exact += paper == most
    assert exact >= 50  # most of the 106 splits are uncapped: the rule reproduces them exactly


def test_subsample_is_seeded_per_class_and_capped():
    files = [[f"c{c}/{i:03d}.png" for i in range(n)] for c, n in enumerate([300, 50, 120])]
    kept = subsample(files, "train")  # 3 classes: round(2560 / 3) = 853 each, capped
    assert [len(k) for k in kept] == [300, 50, 120]
    files = [[f"c{c}/{i:04d}.png" for i in range(1000)] for c in range(4)]
    kept = subsample(files, "train")  # round(2560 / 4) = 640 of 1000
    assert [len(k) for k in kept] == [640] * 4
    assert all(all(p.startswith(f"c{c}/") for p in k) for c, k in enumerate(kept))
    assert kept == subsample(list(reversed(files))[::-1], "train")  # same input, same choice
    assert kept != subsample(files, "train", seed=28)
    assert subsample([list(reversed(f)) for f in files], "train") == kept  # input order does not matter


def test_check_reports_all_present(full_layout, capsys):
    report = check_split53(full_layout)
    assert report.ok and len(report.tasks) == 53
    assert all(t.found_classes == {"train": t.task.classes, "test": t.task.classes} for t in report.tasks)
    assert main(["data", "check", "split53", "--data-root", str(full_layout)]) == 0
    assert "53 of 53 tasks usable" in capsys.readouterr().out


def test_missing_task_fails_check_and_build(full_layout, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(full_layout / "split53", root / "split53")
    shutil.rmtree(root / "split53" / "5_OfficeHome_Clipart")
    report = check_split53(root)
    assert [t.task.order for t in report.problems] == [5] and report.problems[0].status == "missing"
    assert main(["data", "check", "split53", "--data-root", str(root)]) == 1
    assert "5_OfficeHome_Clipart: missing" in capsys.readouterr().out
    with pytest.raises(DataMissingError) as err:
        build(root, image_size=8)
    msg = str(err.value)
    assert "52 of 53 tasks usable" in msg and "5_OfficeHome_Clipart: missing" in msg and "clbench data check split53" in msg
    assert len(build(root, tasks="1-4", image_size=8).experiences) == 4  # the tasks that are there still run


def test_class_count_mismatch_and_missing_split(three_tasks):
    (three_tasks / "split53" / "3_wikiart" / "train" / "extra").mkdir()
    shutil.copy(next((three_tasks / "split53" / "3_wikiart" / "train" / "c000").iterdir()),
                three_tasks / "split53" / "3_wikiart" / "train" / "extra" / "x.png")
    shutil.rmtree(three_tasks / "split53" / "2_birds" / "test")
    report = check_split53(three_tasks, "1-3")
    status = {t.task.order: (t.status, t.detail) for t in report.tasks}
    assert status[1][0] == "ok"
    assert status[2][0] == "missing" and "test/" in status[2][1]
    assert status[3] == ("class count mismatch", "train/ has 28")
    with pytest.raises(DataMissingError, match="3_wikiart: class count mismatch"):
        build(three_tasks, tasks="1-3", image_size=8)


def test_empty_class_and_differing_names_are_caught(three_tasks):
    cdir = three_tasks / "split53" / "1_scenes" / "test" / "c005"
    for f in cdir.iterdir():
        f.unlink()
    (three_tasks / "split53" / "3_wikiart" / "test" / "c000").rename(three_tasks / "split53" / "3_wikiart" / "test" / "zzz")
    status = {t.task.order: t.status for t in check_split53(three_tasks, "1-3").tasks}
    assert status == {1: "empty classes", 2: "ok", 3: "class names differ"}


def test_first_five_tasks_global_class_ranges(full_layout):
    sc = build(full_layout, tasks="1-5", image_size=8)
    assert sc.kind == TASK_INCREMENTAL and sc.info.visibility.task_id_test and sc.num_classes == 406
    assert [e.classes for e in sc.experiences] == [tuple(range(a, b)) for a, b in FIRST_FIVE_RANGES]
    assert [e.task_id for e in sc.experiences] == [0, 1, 2, 3, 4]
    for exp, (a, b) in zip(sc.experiences, FIRST_FIVE_RANGES):
        for data in (exp.train, exp.test):
            assert sorted(set(data.labels)) == list(range(a, b))
    subset = build(full_layout, tasks="3,5", image_size=8)  # ids do not depend on which tasks run
    assert [e.classes for e in subset.experiences] == [tuple(range(267, 294)), tuple(range(341, 406))]
    assert [e.task_id for e in subset.experiences] == [2, 4]
    assert any("2 of 53 tasks" in d for d in subset.description["deviations"])


def test_subsampling_applies_to_real_files_and_ignores_run_seed(three_tasks):
    # 2 train images per class: birds' quota is round(5120 / 200) = 26, capped at 2
    a = build_split53(Split53Config(name="split53", tasks="1-3", image_size=8), data_root=three_tasks, seed=0)
    b = build_split53(Split53Config(name="split53", tasks="1-3", image_size=8), data_root=three_tasks, seed=5)
    assert [len(e.train) for e in a.experiences] == [134, 400, 54]
    assert [e.train.fingerprint for e in a.experiences] == [e.train.fingerprint for e in b.experiences]
    assert "seed 27" in a.description["subsampling"]
    assert a.description["images"]["1_scenes"] == {"train": 134, "test": 67, "paper": {"train": 5092, "test": 536}}


def test_images_are_decoded_lazily_resized_and_rgb(three_tasks):
    sc = build(three_tasks, tasks="1", image_size=12)
    data = sc.experiences[0].train
    assert all(isinstance(p, str) for p in data.paths)
    assert not any(isinstance(v, torch.Tensor) for v in vars(data).values())  # paths and labels, no pixels
    x, y = data[2]  # c001 (odd: grey, square) -> 3 equal channels
    assert x.shape == (3, 12, 12) and x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and y == 1
    x0, _ = data[0]  # c000 is 10x8 on disk: resized to 12x12
    assert x0.shape == (3, 12, 12)
    Image.new("RGB", (5, 5), (255, 0, 0)).save(data.paths[0])  # change the file after the build ...
    x0, _ = data[0]  # ... and the dataset sees it: it reads on access
    assert torch.allclose(x0[0], torch.ones(12, 12)) and float(x0[1:].abs().max()) == 0.0
    assert data.fingerprint.startswith("split53/1_scenes/train/12px/")


@pytest.mark.slow
def test_naive_runs_three_tasks_through_the_protocol(full_layout, tmp_path):
    cfg = compose([
        "logger=none", "progress=false", f"results_dir={tmp_path}", "device=cpu", "strategy=naive",
        "scenario=split53", "scenario.tasks=9-11", "scenario.image_size=16", "backbone=cnn28", "backbone.width=8",
        f"data_root={full_layout}", "strategy.epochs=1", "strategy.batch_size=32",
    ])
    record, path = run_from_config(cfg)
    assert record.status == "complete" and path.exists()
    assert len(record.matrix) == 4 and all(len(r) == 3 for r in record.matrix)
    assert all(0.0 <= v <= 1.0 for r in record.matrix for v in r)
    assert record.scenario["description"]["tasks"] == [9, 10, 11]
    assert any("image_size 16" in d for d in record.deviations)
    totals = record.extra["rows"][-1]["total"]
    assert totals == [10, 7, 3]  # every test image of the three tasks was evaluated
    assert record.scenario["class_order"] == list(range(637, 657))  # EuroSAT, HistAerial, OriSet's global ids


def test_bad_task_spec_stops_the_run(full_layout, tmp_path):
    cfg = compose(["logger=none", "progress=false", f"results_dir={tmp_path}", "strategy=naive", "scenario=split53",
                   "scenario.tasks=1-99", "backbone=cnn28", f"data_root={full_layout}"])
    with pytest.raises(ValueError, match=r"'1-99'"):
        run_from_config(cfg)


def write_release(root: Path, tasks: dict[int, int], per_class: int = 2) -> Path:
    """A miniature of the authors' release: rolling_releases/database_2.sqlite (the tables
    and columns the official loader queries) and original_images/<dataset_name>/..."""
    import sqlite3

    (root / "rolling_releases").mkdir(parents=True)
    db = sqlite3.connect(root / "rolling_releases" / "database_2.sqlite")
    db.execute("CREATE TABLE datasets (dataset_id INTEGER, dataset_name TEXT)")
    db.execute('CREATE TABLE files (hash TEXT, path TEXT, filename TEXT, class_id INTEGER, dataset_id INTEGER, problem INTEGER, "set" INTEGER)')
    for dct_id, classes in tasks.items():
        name = f"ds{dct_id}"
        db.execute("INSERT INTO datasets VALUES (?, ?)", (dct_id, name))
        for c in range(classes):
            for s in (0, 1, 2):  # train, validation (the paper's evaluation split), test (unused)
                for i in range(per_class + 1):
                    rel = f"/class {c}/"
                    fname = f"s{s}_{i}.png"
                    problem = int(i == per_class)  # one flagged image per class and set: never used
                    (root / "original_images" / f"{name}{rel}").mkdir(parents=True, exist_ok=True)
                    (root / "original_images" / f"{name}{rel}{fname}").write_bytes(b"linked, never decoded here")
                    db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (f"h{dct_id}_{c}_{s}_{i}", rel, fname, 3 * c + 1, dct_id, problem, s))
    db.commit()
    db.close()
    return root


def test_convert_release_lays_out_the_tasks(tmp_path, capsys):
    release = write_release(tmp_path / "release", {25: 10, 30: 3})  # EuroSAT (order 9), OriSet (order 11)
    data_root = tmp_path / "data"
    code = main(["data", "convert", "split53", "--release", str(release), "--data-root", str(data_root), "--tasks", "9,11"])
    assert code == 0, capsys.readouterr().out
    assert "wrote 26 train and 26 test images for 2 tasks" in capsys.readouterr().out
    train = data_root / "split53" / "9_EuroSAT" / "train"
    assert sorted(p.name for p in train.iterdir())[:3] == ["0001", "0004", "0007"]  # zero-padded class ids
    assert all(p.is_symlink() for p in (train / "0001").iterdir()) and len(list((train / "0001").iterdir())) == 2
    assert check_split53(data_root, "9,11").ok and not check_split53(data_root, "9-11").ok  # 10 was not converted
    with pytest.raises(DataMissingError, match="dataset_id 1 "):
        split53.convert_release(release, data_root, "1")
    assert main(["data", "convert"]) == 2 and main(["data", "check", "split99"]) == 2
