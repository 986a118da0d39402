"""The rate–distortion plane of a search: every trial a point, the Pareto front joined, lines of
constant ELBO (D + R = c) for reference, points coloured by β. A PNG (matplotlib) and a
self-contained HTML page (inline SVG; hovering a point shows its trial and settings: the MLflow
UI shows ``.html`` artifacts in its artifact viewer, with no script and no network)."""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from search.pareto import front, hypervolume
from search.plots import plt  # pyplot with the headless Agg backend selected


@dataclass(frozen=True)
class RDPoint:
    """One trial in the RD plane."""

    name: str
    rate: float
    distortion: float
    beta: float | None = None
    details: Mapping[str, object] = field(default_factory=dict)   # shown on hover in the HTML

    @property
    def nelbo(self) -> float:
        return self.rate + self.distortion


def _elbo_levels(points: Sequence[RDPoint], n: int = 4) -> list[float]:
    """D + R = c for c from the best ELBO upward, evenly over the points' range."""
    values = sorted(p.nelbo for p in points)
    lo, hi = values[0], values[-1]
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def _front_of(points: Sequence[RDPoint]) -> list[tuple[float, float]]:
    return front([(p.rate, p.distortion) for p in points])


def rd_front_figure(points: Sequence[RDPoint], reference: tuple[float, float] | None = None, *,
                    title: str = "rate–distortion") -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if not points:
        ax.text(0.5, 0.5, "no finished trials", ha="center", va="center", transform=ax.transAxes)
        return fig
    rates = [p.rate for p in points]
    dists = [p.distortion for p in points]
    for c in _elbo_levels(points):       # the lines of constant ELBO, behind the points
        r0, r1 = min(rates), max(rates)
        ax.plot([r0, r1], [c - r0, c - r1], color="0.8", lw=0.8, ls="--", zorder=1)
        ax.annotate(f"D+R={c:.4g}", (r1, c - r1), fontsize=7, color="0.5", ha="right", va="bottom")
    betas = [p.beta for p in points]
    if all(b is not None and b > 0 for b in betas):
        from matplotlib.colors import LogNorm

        sc = ax.scatter(rates, dists, c=betas, cmap="viridis", norm=LogNorm(), s=24, zorder=3)
        fig.colorbar(sc, ax=ax, label="β")
    else:
        ax.scatter(rates, dists, color="tab:blue", s=24, zorder=3)
    fr = _front_of(points)
    if fr:
        xs, ys = zip(*fr)
        ax.plot(xs, ys, color="tab:red", lw=1.5, marker="o", mfc="none", ms=9, zorder=4, label="Pareto front")
    if reference is not None:
        ax.plot(*reference, marker="x", color="k", zorder=4, label="reference point")
        ax.set_title(f"{title}: hypervolume {hypervolume(list(zip(rates, dists)), reference):.4g}")
    else:
        ax.set_title(title)
    # keep the axes on the trials (and the reference point), not on the ELBO lines' ends
    corner = [reference] if reference is not None else []
    shown_r, shown_d = [*rates, *(r for r, _ in corner)], [*dists, *(d for _, d in corner)]
    pad_r = 0.05 * (max(shown_r) - min(shown_r) or 1.0)
    pad_d = 0.05 * (max(shown_d) - min(shown_d) or 1.0)
    ax.set_xlim(min(shown_r) - pad_r, max(shown_r) + pad_r)
    ax.set_ylim(min(shown_d) - pad_d, max(shown_d) + pad_d)
    ax.set_xlabel("rate (nats): KL(q(z|x) ‖ p(z))")
    ax.set_ylabel("distortion (nats): −E log p(x|z)")
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def rd_front_html(points: Sequence[RDPoint], reference: tuple[float, float] | None = None, *,
                  title: str = "rate–distortion", width: int = 720, height: int = 480) -> str:
    """A self-contained page: an SVG scatter whose points carry their trial as a hover title."""
    m = 56  # margin for the axes' labels
    esc = html.escape
    if not points:
        return f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title><p>no finished trials</p>"
    rates = [p.rate for p in points] + ([reference[0]] if reference else [])
    dists = [p.distortion for p in points] + ([reference[1]] if reference else [])
    r0, r1 = min(rates), max(rates) or 1.0
    d0, d1 = min(dists), max(dists) or 1.0
    r1, d1 = (r1 if r1 > r0 else r0 + 1.0), (d1 if d1 > d0 else d0 + 1.0)

    def x(r: float) -> float:
        return m + (r - r0) / (r1 - r0) * (width - 2 * m)

    def y(d: float) -> float:
        return height - m - (d - d0) / (d1 - d0) * (height - 2 * m)

    on_front = set(_front_of(points))
    log_betas = [math.log(p.beta) for p in points if p.beta]
    lb0, lb1 = (min(log_betas), max(log_betas)) if log_betas else (0.0, 0.0)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
             f"font-size='11'>",
             f"<line x1='{m}' y1='{height - m}' x2='{width - m}' y2='{height - m}' stroke='black'/>",
             f"<line x1='{m}' y1='{m}' x2='{m}' y2='{height - m}' stroke='black'/>",
             f"<text x='{width / 2}' y='{height - 16}' text-anchor='middle'>rate (nats) {r0:.4g} … {r1:.4g}</text>",
             f"<text x='14' y='{height / 2}' transform='rotate(-90 14 {height / 2})' text-anchor='middle'>"
             f"distortion (nats) {d0:.4g} … {d1:.4g}</text>"]
    fr = sorted(on_front)
    if fr:
        path = " ".join(f"{x(r):.1f},{y(d):.1f}" for r, d in fr)
        parts.append(f"<polyline points='{path}' fill='none' stroke='crimson' stroke-width='1.5'/>")
    for p in sorted(points, key=lambda p: (p.rate, p.distortion) in on_front):   # front points on top
        share = (math.log(p.beta) - lb0) / (lb1 - lb0) if p.beta and lb1 > lb0 else 0.5
        colour = f"hsl({int(260 - 200 * share)}, 70%, 45%)"     # blue (small β) … yellow-green (large β)
        lines = [p.name, f"rate {p.rate:.4g}  distortion {p.distortion:.4g}  nelbo {p.nelbo:.4g}"]
        if p.beta is not None:
            lines.append(f"β {p.beta:.4g}")
        lines += [f"{k}: {v}" for k, v in p.details.items()]
        edge = " stroke='crimson' stroke-width='2'" if (p.rate, p.distortion) in on_front else ""
        parts.append(f"<circle cx='{x(p.rate):.1f}' cy='{y(p.distortion):.1f}' r='5' fill='{colour}'{edge}>"
                     f"<title>{esc(chr(10).join(lines))}</title></circle>")
    if reference:
        parts.append(f"<text x='{x(reference[0]):.1f}' y='{y(reference[1]):.1f}' text-anchor='middle' "
                     f"dominant-baseline='middle'>×<title>reference point {reference[0]:.4g}, "
                     f"{reference[1]:.4g}</title></text>")
    parts.append("</svg>")
    heading = esc(title)
    if reference:
        hv = hypervolume([(p.rate, p.distortion) for p in points], reference)
        heading += f" — hypervolume {hv:.4g} against ({reference[0]:.4g}, {reference[1]:.4g})"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + esc(title) + "</title></head><body>"
            f"<h3>{heading}</h3><p>Hover a point for its trial. Red: the Pareto front (no other trial has both "
            "a lower rate and a lower distortion). Colour: β, small (blue) to large (green).</p>"
            + "".join(parts) + "</body></html>")
