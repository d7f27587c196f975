"""Figures (clbench.results.plots): labels with dollars reach no math parser; heatmaps leave
structural zeros blank; figures come as PNG and SVG, also from `clbench leaderboard --figures`."""
from __future__ import annotations

import io

from clbench.results import records

from handmade_records import M3, _two_configs, board_md, make_record


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
