"""Figures of run results (matplotlib, headless).

Text from records (strategy labels, config values) is escaped, so a ``$`` never reaches
matplotlib's math parser. Curves stay apart at 20 rows (:func:`curve_style`: colour,
line style and marker) with the legend beside the axes; heatmap cells show percent with
one decimal. :func:`save_figure` writes a figure as PNG and SVG.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Families whose accuracy matrix is 0 by construction before training (row 0) and on
#: experiences not yet seen (j > i): predictions range only over the classes seen so far.
STRUCTURAL_ZERO_KINDS = frozenset({"class_incremental", "task_agnostic", "multilabel"})
DPI = 100
#: Ten colours told apart also in grey and by most colour-blind readers (matplotlib's
#: tableau set), then a line style for each round of ten, and a marker per row.
PALETTE = tuple(plt.get_cmap("tab10").colors)
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: Legend labels wrap at this many characters (a label holds the settings of its row).
LEGEND_WRAP = 40
LEGEND_FONT_PT = 7


def plain_text(text: object) -> str:
    """``text`` shown literally by matplotlib (``$`` escaped: no mathtext)."""
    return str(text).replace("$", r"\$")


def _cell(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan


def percent(v: float, decimals: int = 1) -> str:
    """A fraction as percent text, never "-0" (a forgetting of -0.00004 shows as 0.0)."""
    text = f"{100 * v:.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def curve_style(i: int) -> dict:
    """Colour, line style and marker of the ``i``-th curve: no two of the first 40 share
    colour and line style."""
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
            "marker": MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]}


def matrix_heatmap(
    matrix: Sequence[Sequence[Optional[float]]],
    title: str,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
):
    """A heatmap with the values written in the cells; empty cells (None) left blank."""
    width = max((len(r) for r in matrix), default=0)
    a = np.array([[_cell(v) for v in row] + [np.nan] * (width - len(row)) for row in matrix], dtype=float)
    if a.size == 0:
        a = np.full((max(1, len(matrix)), max(1, width)), np.nan)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * a.shape[1], 0.8 + 0.5 * a.shape[0]), dpi=DPI)
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(a.shape[1]), labels=[plain_text(c) for c in list(col_labels)[: a.shape[1]]])
    ax.set_yticks(range(a.shape[0]), labels=[plain_text(r) for r in list(row_labels)[: a.shape[0]]])
    ax.set_xlabel("evaluated on experience")
    ax.set_ylabel("after training")
    ax.set_title(plain_text(title))
    if a.size <= 400:
        for (i, j), v in np.ndenumerate(a):
            if not np.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))  # dark cell -> white text, whatever the colormap
                ax.text(j, i, percent(v), ha="center", va="center", fontsize=7,
                        color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.ax.yaxis.set_major_formatter(lambda x, _: percent(x, 0))  # percent, like the cell labels
    fig.tight_layout()
    return fig


def blank_structural_zeros(matrix: Sequence[Sequence[Optional[float]]]) -> list[list[Optional[float]]]:
    """The accuracy matrix with the cells that are 0 by construction (row 0, and j > i)
    set to None: no measurement, not a 0 accuracy."""
    return [[None if i == 0 or j >= i else v for j, v in enumerate(row)] for i, row in enumerate(matrix)]


def accuracy_heatmap(matrix: Sequence[Sequence[Optional[float]]], title: str = "accuracy matrix", *,
                     kind: Optional[str] = None):
    """The (T+1) x T accuracy matrix; for the families of :data:`STRUCTURAL_ZERO_KINDS`
    the structural zeros are left blank."""
    T = max((len(r) for r in matrix), default=0)
    shown = blank_structural_zeros(matrix) if kind in STRUCTURAL_ZERO_KINDS else matrix
    return matrix_heatmap(shown, title, row_labels=["init"] + [str(i) for i in range(1, len(matrix))],
                          col_labels=[str(j) for j in range(1, T + 1)])


def forgetting_heatmap(F: Sequence[Sequence[Optional[float]]], title: str = "forgetting matrix"):
    T = max(len(F), max((len(r) for r in F), default=0))
    return matrix_heatmap(F, title, row_labels=[str(i) for i in range(1, len(F) + 1)],
                          col_labels=[str(j) for j in range(1, T + 1)], cmap="magma_r")


def accuracy_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "accuracy on all seen experiences",
    *,
    ylabel: str = "accuracy (%)",
):
    """Accuracy after each step, one line per strategy (mean over seeds, band of ± one
    std; a step without a value, e.g. ``eval_rows=final``, left out); ``curves`` maps a
    label to (means, stds) in [0, 1] for steps 1..T. Each line has its own
    :func:`curve_style`; the legend sits right of the axes, the figure widened and
    heightened to hold it."""
    labels = [textwrap.fill(plain_text(label), LEGEND_WRAP) for label in curves]
    lines = sum(label.count("\n") + 1 for label in labels)
    chars = max((len(part) for label in labels for part in label.split("\n")), default=0)
    legend_in = (0.55 * LEGEND_FONT_PT / 72) * chars + 0.6 if curves else 0.0
    height = max(3.8, 0.6 + lines * 1.3 * LEGEND_FONT_PT / 72 + 0.05 * len(labels))
    fig, ax = plt.subplots(figsize=(6.0 + legend_in, height), dpi=DPI, layout="constrained")
    for i, (label, (mean, std)) in enumerate(zip(labels, curves.values())):
        steps = np.arange(1, len(mean) + 1)
        m = 100 * np.array([_cell(v) for v in mean], dtype=float)
        s = 100 * np.array([_cell(v) for v in std], dtype=float)
        style = curve_style(i)
        ax.plot(steps, m, label=label, markersize=4, linewidth=1.4, **style)
        ax.fill_between(steps, m - s, m + s, color=style["color"], alpha=0.12, linewidth=0)
    longest = max((len(m) for m, _ in curves.values()), default=1)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("after training experience")
    ax.set_ylabel(plain_text(ylabel))
    ax.set_ylim(0, 100)
    ax.set_title(plain_text(title))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=LEGEND_FONT_PT, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  frameon=False, handlelength=3.0)
    return fig


def save_figure(fig, stem: Union[str, Path], *, dpi: int = 200, close: bool = True) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` (``dpi``) and ``<stem>.svg`` (vector); return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    fig.savefig(paths[0], format="png", dpi=dpi, metadata={"Software": None})
    fig.savefig(paths[1], format="svg", metadata={"Date": None})
    if close:
        plt.close(fig)
    return paths
