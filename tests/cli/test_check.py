"""`clbench check` (clbench.cli.check): it passes a good strategy and fails a plugin's LwF whose
teacher is not described by structure() (naming build_structure()); it refuses a missing or
unknown strategy. The contract's checks themselves: tests/protocol/test_contract.py."""
from __future__ import annotations

import textwrap

from clbench.cli import main


def test_clbench_check_passes_a_good_strategy_and_fails_the_bad_one(tmp_path, capsys, monkeypatch):
    assert main(["check", "strategy=naive", "--kinds", "class_incremental"]) == 0
    out = capsys.readouterr().out
    assert "config composes" in out and "state round trip" in out and "resume" in out and "FAIL" not in out
    plugin = tmp_path / "my_lwf.py"
    plugin.write_text(textwrap.dedent('''
        from clbench.api.strategy import register_strategy
        from probes import TeacherLwF

        @register_strategy("_my_lwf")
        class MyLwF(TeacherLwF):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "strategy=_my_lwf", "--module", "my_lwf", "--kinds", "class_incremental"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "build_structure()" in out


def test_clbench_check_refuses_a_missing_or_unknown_strategy(capsys):
    assert main(["check"]) == 2
    assert "strategy=NAME" in capsys.readouterr().err
    assert main(["check", "strategy=nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
