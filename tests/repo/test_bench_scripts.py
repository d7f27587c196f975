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


def test_the_standard_path_the_benches_compare_against_is_not_the_default():
    """bench/vs_avalanche.py times the defaults and, with --standard, the former default:
    the two must differ in every key the fast path changed, or the comparison is void."""
    from clbench.settings import RunSettings

    sys.path.insert(0, str(BENCH))
    try:
        import fast_path_acc
        import vs_avalanche
    finally:
        sys.path.remove(str(BENCH))
    defaults = RunSettings()
    standard = dict(item.split("=") for item in vs_avalanche.STANDARD)
    assert {"channels_last", "eval_batch_size"} <= set(standard)
    assert str(defaults.channels_last).lower() != standard["channels_last"]
    assert str(defaults.eval_batch_size) != standard["eval_batch_size"]
    assert fast_path_acc.STANDARD is vs_avalanche.STANDARD and fast_path_acc.run_clbench is vs_avalanche.run_clbench
