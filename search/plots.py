"""Figures for the MLflow parent runs (matplotlib, headless Agg backend)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def bar_chart(names: Sequence[str], values: Sequence[float], *, title: str, ylabel: str,
              highlight: str | None = None) -> Figure:
    """One bar per name; ``highlight`` (e.g. the chosen arm) drawn in another colour."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names)), 3.5))
    colours = ["tab:orange" if n == highlight else "tab:blue" for n in names]
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def line_chart(curves: Mapping[str, Sequence[tuple[float, float]]], *, title: str, xlabel: str,
               ylabel: str) -> Figure:
    """One line per named curve of (x, y) points."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def stacked_shares(rows: Mapping[str, Sequence[float]], segments: Sequence[str], *, title: str) -> Figure:
    """One horizontal bar per row (e.g. a trial), split into segments (e.g. pull share per head)."""
    fig, ax = plt.subplots(figsize=(8.0, 0.5 * len(rows) + 2.0))
    names = list(rows)
    left = [0.0] * len(names)
    for j, segment in enumerate(segments):
        widths = [rows[n][j] for n in names]
        ax.barh(range(len(names)), widths, left=left, label=segment)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.set_xlabel("share of pulls")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(3, len(segments)))
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
