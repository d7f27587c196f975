"""The clbench command (clbench.cli.main): an unknown command names the valid ones, `list`
shows needs and visibility (test doubles hidden), the exit code of `python -m clbench`,
--help into a closed pipe and --version."""
import subprocess
import sys

from clbench.cli import main

from probes import NeedsTaskIds  # noqa: F401  (registered as _needs_task_ids, which `list` must hide)


def test_unknown_command(capsys):
    assert main(["runn"]) == 2
    assert "valid choices: run, list, show" in capsys.readouterr().err


def test_list_shows_needs_and_visibility(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "split_fmnist_ti" in out and "task_incremental" in out and "class_incremental" in out
    assert "_needs_task_ids" not in out  # test doubles are hidden


def test_console_script_exit_code(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clbench", "run", "strategy=nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown strategy 'nope'" in out.stderr


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
