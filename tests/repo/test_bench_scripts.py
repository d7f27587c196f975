"""The bench scripts of issue 23 (bench/vs_avalanche.py, bench/fast_path_acc.py,
bench/debug_fast_all.py) start, describe themselves and share one clbench runner."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", ["vs_avalanche.py", "fast_path_acc.py", "debug_fast_all.py"])
def test_the_script_explains_itself(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                          cwd=BENCH, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "python bench/" in (BENCH / script).read_text()


def test_the_fast_path_is_the_one_the_ratio_measures():
    sys.path.insert(0, str(BENCH))
    try:
        import fast_path_acc
        import vs_avalanche
    finally:
        sys.path.remove(str(BENCH))
    assert vs_avalanche.FAST == ["channels_last=true", "eval_batch_size=128"]
    assert fast_path_acc.FAST is vs_avalanche.FAST and fast_path_acc.run_clbench is vs_avalanche.run_clbench
