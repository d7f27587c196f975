"""Figures of run results (matplotlib, headless)."""
from __future__ import annotations

from typing import Optional, Sequence

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
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v < (vmin + vmax) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
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
