"""How hard the decoder choice is on a learning-curve table (issue 16 §2).

Each combination of the other axes (β, latent size, schedule and, where it is an axis, lr) is one
decoder-choice problem. For each, the decoders are ranked by ``metric`` (lower is better) averaged
over the recorded seeds, at every epoch. Reported:

- ``best_counts``: how many problems each decoder wins at the last epoch (one decoder winning
  all of them means the choice answers itself);
- ``margin``: the gap between the best and the second decoder at the last epoch (median, IQR);
- ``seed_disagreement``: the share of problems whose winner differs between single seeds
  (what one replayed seed per arm sees);
- ``leader_is_final_winner[e]``: the share of problems whose leader after epoch e is the final
  winner (a bandit that judges arms early is misled where this is low), and the mean Kendall τ
  between the ranking after epoch e and the final one;
- ``lead_changes``: per problem, how often the leader changes from one epoch to the next (mean,
  and the share of problems with at least one change).

    .venv/bin/python -m benchmarks.decoder_ranking --table benchmarks/data/digits-mlp
"""
from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.table import Point, Table


def _key(point: Point) -> tuple[Any, ...]:
    return (point.beta, point.latent_dim, point.schedule, point.lr)


def _curve(values: Sequence[float | None]) -> np.ndarray:
    """A curve with missing or non-finite values as +inf (a failed trial ranks last)."""
    return np.array([v if v is not None and math.isfinite(v) else math.inf for v in values], dtype=float)


def problems(table: Table, metric: str = "val/nelbo") -> dict[tuple[Any, ...], np.ndarray]:
    """Per decoder-choice problem: an array [decoder, seed, epoch] of ``metric`` in the grid's
    decoder order; epochs a failed curve did not reach are +inf."""
    decoders = table.grid.decoder
    out: dict[tuple[Any, ...], np.ndarray] = {}
    for point in table.grid.points():
        key = _key(point)
        if key in out:
            continue
        cube = np.full((len(decoders), len(table.grid.seed), table.epochs), math.inf)
        for d, decoder in enumerate(decoders):
            same = Point(decoder, point.beta, point.latent_dim, point.schedule, point.lr)
            for s, curve in enumerate(table.curves[same]):
                values = _curve(curve.metrics.get(metric, []))[: table.epochs]
                cube[d, s, : len(values)] = values
        out[key] = cube
    return out


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-a between two score vectors (ties count as neither concordant nor discordant)."""
    n = len(a)
    if n < 2:
        return 1.0
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) if np.isfinite([a[i], a[j], b[i], b[j]]).all() else 0.0
    return float(total / (n * (n - 1) / 2))


@dataclass
class Ranking:
    table: str
    metric: str
    decoders: list[str]
    problems: int
    seeds: int
    best_counts: dict[str, int]
    margin_median: float
    margin_iqr: tuple[float, float]
    seed_disagreement: float
    leader_is_final_winner: list[float]     # index e - 1: after epoch e
    kendall_tau_to_final: list[float]
    lead_changes_mean: float
    share_with_a_lead_change: float


def rank(table: Table, metric: str = "val/nelbo", name: str = "") -> Ranking:
    decoders = list(table.grid.decoder)
    cubes = problems(table, metric)
    winners: Counter[str] = Counter()
    margins, disagree, changes = [], 0, []
    leader_hits = np.zeros(table.epochs)
    taus = np.zeros(table.epochs)
    for cube in cubes.values():
        with np.errstate(invalid="ignore"):
            mean = cube.mean(axis=1)                    # [decoder, epoch], +inf if any seed failed there
        final = mean[:, -1]
        order = np.argsort(final, kind="stable")
        winner = int(order[0])
        winners[decoders[winner]] += 1
        margins.append(float(final[order[1]] - final[order[0]]) if len(order) > 1 else 0.0)
        seed_winners = {int(np.argmin(cube[:, s, -1])) for s in range(cube.shape[1])}
        disagree += len(seed_winners) > 1
        leaders = np.argmin(mean, axis=0)               # the leader after each epoch (first on ties)
        leader_hits += leaders == winner
        taus += [kendall_tau(mean[:, e], final) for e in range(table.epochs)]
        changes.append(int(np.count_nonzero(np.diff(leaders))))
    n = len(cubes)
    finite_margins = [m for m in margins if math.isfinite(m)]
    q1, median, q3 = np.percentile(finite_margins, [25, 50, 75]) if finite_margins else (math.nan,) * 3
    return Ranking(table=name, metric=metric, decoders=decoders, problems=n, seeds=len(table.grid.seed),
                   best_counts={d: winners.get(d, 0) for d in decoders}, margin_median=float(median),
                   margin_iqr=(float(q1), float(q3)), seed_disagreement=disagree / n,
                   leader_is_final_winner=[float(x) for x in leader_hits / n],
                   kendall_tau_to_final=[float(x) for x in taus / n],
                   lead_changes_mean=float(np.mean(changes)), share_with_a_lead_change=sum(c > 0 for c in changes) / n)


def format_ranking(r: Ranking, epochs: Sequence[int] = (1, 2, 5, 10)) -> str:
    shown = [e for e in epochs if e <= len(r.leader_is_final_winner)]
    lines = [
        f"table {r.table}: {r.problems} decoder-choice problems (configs of the other axes), "
        f"{len(r.decoders)} decoders, {r.seeds} seeds, metric {r.metric}",
        "best decoder at the last epoch (mean over seeds): "
        + ", ".join(f"{d} {c}" for d, c in sorted(r.best_counts.items(), key=lambda kv: -kv[1])),
        f"margin best -> second: median {r.margin_median:.2f} nats [IQR {r.margin_iqr[0]:.2f}, {r.margin_iqr[1]:.2f}]",
        f"single seeds disagree on the winner in {100 * r.seed_disagreement:.0f} % of the problems",
        "leader after epoch e is the final winner: "
        + ", ".join(f"e={e} {100 * r.leader_is_final_winner[e - 1]:.0f} %" for e in shown)
        + "; Kendall tau to the final ranking: "
        + ", ".join(f"e={e} {r.kendall_tau_to_final[e - 1]:.2f}" for e in shown),
        f"the leader changes {r.lead_changes_mean:.2f} times per problem on average; "
        f"{100 * r.share_with_a_lead_change:.0f} % of the problems have a change",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--metric", default="val/nelbo")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    ranking = rank(Table.load(args.table), args.metric, name=args.table.name)
    print(format_ranking(ranking))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(ranking), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
