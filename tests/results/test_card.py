"""The per-row assumption card of the HTML leaderboard (clbench.results.leaderboard.card),
read from what records carry; a record without the newer fields says "not recorded"."""
from __future__ import annotations

from handmade_records import make_record

from clbench.results import records
from clbench.results.leaderboard.aggregate import build_tables
from clbench.results.leaderboard.card import card, render_cards
from clbench.results.leaderboard.collect import group_runs, load_records


def test_card_reads_visibility_data_weights_memory_compute_and_tuning(tmp_path):
    rec = make_record("er", 0, compute={"train_flops": 2e12, "budget": {"steps": 28, "flops": None},
                                        "memory": [{"total": 3 << 20, "stored": 1 << 20, "frozen_copies": 0}]})
    rec.scenario["visibility"] = {"task_id_train": True, "task_id_test": False, "boundaries": True}
    rec.strategy.update(aux_data={"pretrain": "digits"}, backbone={"name": "resnet18", "weights": "imagenet"},
                        tuning="tuned-on-first-task")
    records.save(rec, tmp_path)
    records.save(make_record("naive", 0), tmp_path)
    (table,) = build_tables(group_runs(load_records(tmp_path)[0])[0])
    cards = {row.strategy: dict(card(row)) for row in table.rows}
    er, naive = cards["er"], cards["naive"]
    assert er["task ids in training"] == "yes" and er["task ids at test"] == "no" and er["experience boundaries"] == "yes"
    assert er["extra data"] == "pretrain: digits" and er["pretrained weights"] == "imagenet"
    assert er["memory (model + frozen copies + stored data)"] == "3 MiB (stored data 1 MiB, frozen copies 0 B)"
    assert er["training compute"] == "2e+12 FLOPs; budget per experience: steps=28"
    assert er["settings chosen"] == "tuned-on-first-task"
    assert naive["task ids in training"] == "not recorded" and naive["settings chosen"] == "not recorded"
    text = "\n".join(render_cards(table))
    assert text.count('<div class="card">') == 2 and "&lt;" not in text and "tuned-on-first-task" in text
