"""Run records under faults (clbench.results.records): "interrupted" is a status and records
older than today's fields still load; values of any type are saved (non-finite ones as null,
flagged); an unwritable place is named and a copy kept; the umask is respected; a dead
"running" record is told from a live one."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.cli import main
from clbench.results import records

from handmade_records import board_md, make_record


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
