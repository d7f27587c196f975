"""Figures that read well at 20 rows (clbench.results.plots): no two curves share colour
and line style, the legend sits outside the axes; heatmap cells show one decimal and
never "-0"."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex

from clbench.results import plots


def _curves(n: int, long: bool = False) -> dict:
    name = "naive (backbone.name=lenet5, backbone.normalize=half, scenario.repeats=10, lr=0.01)" if long else "s"
    return {f"{name}-{i}": ([0.5 + 0.01 * i] * 5, [0.02] * 5) for i in range(n)}


def test_twenty_curves_are_told_apart_and_the_legend_is_outside_the_axes():
    for n, long in ((20, False), (20, True), (3, False)):
        fig = plots.accuracy_curves(_curves(n, long), "twenty")
        ax = fig.axes[0]
        lines = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
        assert len(lines) == n
        looks = {(to_hex(ln.get_color()), ln.get_linestyle()) for ln in lines}
        assert len(looks) == n, "two rows share colour and line style"
        assert len({to_hex(ln.get_color()) for ln in lines}) >= min(n, 10)
        fig.canvas.draw()
        legend = ax.get_legend() or fig.legends[0]
        box, axes_box, fig_box = legend.get_window_extent(), ax.get_window_extent(), fig.bbox
        assert box.x0 >= axes_box.x1 or box.y1 <= axes_box.y0, "legend overlaps the axes"
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1 and box.y0 >= fig_box.y0 - 1 \
            and box.y1 <= fig_box.y1 + 1, "legend cut off by the figure edge"
        assert axes_box.width >= 0.4 * fig_box.width  # the plot keeps room
        plt.close(fig)


def test_heatmap_cells_show_one_decimal_and_never_minus_zero():
    fig = plots.matrix_heatmap([[0.995, 0.12345], [-0.0001, 0.0]], "m", row_labels=["1", "2"], col_labels=["1", "2"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["99.5", "12.3", "0.0", "0.0"]
    plt.close(fig)
    fig = plots.forgetting_heatmap([[None, None], [-0.00004, None]], "f")
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.0"]
    plt.close(fig)
