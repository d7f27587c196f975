"""Figures of run results (matplotlib, headless)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    a = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * a.shape[1], 0.8 + 0.5 * a.shape[0]), dpi=100)
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(a.shape[1]), labels=list(col_labels))
    ax.set_yticks(range(a.shape[0]), labels=list(row_labels))
    ax.set_xlabel("evaluated on experience")
    ax.set_ylabel("after training")
    ax.set_title(title)
    if a.size <= 400:
        for (i, j), v in np.ndenumerate(a):
            if not np.isnan(v):
                r, g, b, _ = im.cmap(im.norm(v))  # dark cell -> white text, whatever the colormap
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.ax.yaxis.set_major_formatter(lambda x, _: f"{100 * x:.0f}")  # percent, like the cell labels
    fig.tight_layout()
    return fig


def accuracy_heatmap(matrix: Sequence[Sequence[float]], title: str = "accuracy matrix"):
    T = len(matrix[0]) if matrix else 0
    return matrix_heatmap(matrix, title, row_labels=["init"] + [str(i) for i in range(1, len(matrix))],
                          col_labels=[str(j) for j in range(1, T + 1)])


def forgetting_heatmap(F: Sequence[Sequence[Optional[float]]], title: str = "forgetting matrix"):
    T = len(F)
    return matrix_heatmap(F, title, row_labels=[str(i) for i in range(1, T + 1)],
                          col_labels=[str(j) for j in range(1, T + 1)], cmap="magma_r")


def accuracy_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "accuracy on all seen experiences",
    *,
    ylabel: str = "accuracy (%)",
):
    """Accuracy after each step, one line per strategy (mean over seeds, band of ± one
    std); ``curves`` maps a label to (means, stds) in [0, 1] for steps 1..T."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    for label, (mean, std) in curves.items():
        steps = np.arange(1, len(mean) + 1)
        m, s = 100 * np.asarray(mean, dtype=float), 100 * np.asarray(std, dtype=float)
        (line,) = ax.plot(steps, m, marker="o", label=label)
        ax.fill_between(steps, m - s, m + s, color=line.get_color(), alpha=0.2, linewidth=0)
    longest = max((len(m) for m, _ in curves.values()), default=1)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("after training experience")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
