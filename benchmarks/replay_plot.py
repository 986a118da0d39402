"""The replay's figure: median normalised regret with its interquartile band, per method,
against epochs spent and against simulated seconds (log regret axis, floored at 1e-3)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmarks.replay import MethodReport

FLOOR = 1e-3  # regret 0 (the best recorded curve) drawn at the floor of the log axis


def plot_regret(reports: Sequence[MethodReport], path: Path, *, threshold: float, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, attr, xlabel in ((axes[0], "by_epochs", "epochs spent (all trials)"),
                             (axes[1], "by_seconds", "simulated wall-clock seconds")):
        for rep in reports:
            b = getattr(rep, attr)
            if b is None:
                raise ValueError(f"{rep.method} has no {attr} band; call replay.add_bands first")
            line, = ax.plot(b.grid, np.maximum(b.median, FLOOR), label=rep.method)
            ax.fill_between(b.grid, np.maximum(b.q25, FLOOR), np.maximum(b.q75, FLOOR), color=line.get_color(), alpha=0.2)
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("normalised regret of best val/nelbo")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "replay")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
