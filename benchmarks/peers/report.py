"""The per-table report: our methods and the peers' side by side, per number of workers W.

    python -m benchmarks.peers.report --results OUT/ours.json OUT/syne-tune.json --out OUT

Writes ``report.md`` (the tables the README quotes), ``comparison.json`` (the calibration and
goal checks below) and ``regret.png`` (every method's median regret against epochs, one panel per W).

"Within noise" is decided on the replay seeds themselves: a bootstrap (over seeds, 2,000
resamples) of the difference of two methods' median epochs to regret <= 0.05 gives a 95 %
interval; the two agree when it contains 0, and one is better beyond the noise when the whole
interval is on its side. A run that never got there counts as more than the budget (+inf).
Numpy and matplotlib only (either virtualenv).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers.summary import THRESHOLDS, quantiles

# (ours, theirs): the searches both harnesses run. The "-snap" peers search our replay's space
# (like with like); the plain ones Syne Tune's grid space (the same method, a different search).
CALIBRATIONS = (("random+asha", "st:asha-snap"), ("random+asha", "st:asha"),
                ("random", "st:random-snap"), ("random", "st:random"))
OURS = "bandit_tpe+asha"
#: bandit_tpe with its pooled first trials (the default) against the per-decoder-only searcher
POOLING = (("bandit_tpe-per-arm+asha", "bandit_tpe+asha"), ("bandit_tpe-per-arm", "bandit_tpe"))
ARM_COMPARISON = (("bandit_tpe-common-step+asha", "bandit_tpe+asha"), ("bandit_tpe-common-step", "bandit_tpe"))
#: bandit_tpe's changes, each set against the searcher before it (difference = before − after)
BEFORE_AFTER = {"pooling": POOLING, "arm_comparison": ARM_COMPARISON}
RESAMPLES = 2000
_BIG = 1e12


def median_difference(a: Sequence[float | None], b: Sequence[float | None], *, seed: int = 0,
                      resamples: int = RESAMPLES) -> dict[str, float]:
    """median(a) − median(b) and its bootstrap 95 % interval (None, never reached, = +inf)."""
    x = np.array([_BIG if v is None else v for v in a], dtype=float)
    y = np.array([_BIG if v is None else v for v in b], dtype=float)
    rng = np.random.default_rng(seed)
    diffs = np.median(rng.choice(x, (resamples, x.size)), axis=1) - np.median(rng.choice(y, (resamples, y.size)), axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    d = float(np.median(x) - np.median(y))

    def fin(v: float) -> float:
        return v if abs(v) < _BIG / 2 else math.copysign(math.inf, v)

    return {"difference": fin(d), "ci_low": fin(float(lo)), "ci_high": fin(float(hi))}


def verdict(diff: dict[str, float], a: str, b: str) -> str:
    if diff["ci_low"] <= 0 <= diff["ci_high"]:
        return f"{a} and {b} agree within the seed-to-seed noise"
    return f"{b} is better beyond the noise" if diff["ci_low"] > 0 else f"{a} is better beyond the noise"


def _fmt(rec: dict[str, Any], budget: int) -> str:
    def one(v: float | None) -> str:
        return f">{budget}" if v is None else f"{v:.0f}"

    return f"{one(rec['median'])} [{one(rec['q25'])}–{one(rec['q75'])}]"


def _fmt_s(rec: dict[str, Any]) -> str:
    def one(v: float | None) -> str:
        return "never" if v is None else f"{v:.0f}"

    return f"{one(rec['median'])} [{one(rec['q25'])}–{one(rec['q75'])}]"


def merge(files: Sequence[dict[str, Any]]) -> tuple[dict[str, dict[str, dict[str, Any]]], int]:
    budgets = {f["budget_epochs"] for f in files}
    tables = {f["table"] for f in files}
    if len(budgets) != 1 or len(tables) != 1:
        raise ValueError(f"results of different tables or budgets cannot be compared, got {tables=}, {budgets=}")
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for f in files:
        for w, methods in f["runs"].items():
            for name, rec in methods.items():
                runs.setdefault(w, {})[name] = {**_requantile(rec), "harness": f["harness"]}
    return runs, budgets.pop()


def _requantile(rec: dict[str, Any]) -> dict[str, Any]:
    """Median and quartiles recomputed from the per-seed values (the summary's own rule), so a
    results file is read the same way whichever version of the summary wrote it."""
    out = dict(rec)
    for key, value in rec.items():
        if isinstance(value, dict) and "per_seed" in value and key != "regret_at_budget":
            q = quantiles([math.inf if v is None else v for v in value["per_seed"]])
            out[key] = {**value, **{k: (None if not math.isfinite(v) else v) for k, v in q.items()}}
    return out


def markdown(runs: dict[str, dict[str, dict[str, Any]]], budget: int) -> str:
    lines = []
    for w in sorted(runs, key=int):
        lines += [f"### W = {w}", "",
                  "| method | harness | seeds | epochs to 0.05 | seconds to 0.05 | reached | epochs to 0.01 | "
                  "seconds to 0.01 | reached | regret at budget |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, rec in runs[w].items():
            e5, s5, e1, s1 = (rec[f"{a}_to_{t}"] for t in THRESHOLDS for a in ("epochs", "seconds"))
            r = rec["regret_at_budget"]
            lines.append(f"| `{name}` | {rec['harness']} | {len(rec['seeds'])} | {_fmt(e5, budget)} | {_fmt_s(s5)} | "
                         f"{e5['reached']} | {_fmt(e1, budget)} | {_fmt_s(s1)} | {e1['reached']} | "
                         f"{r['median']:.4f} [{r['q25']:.4f}–{r['q75']:.4f}] |")
        lines.append("")
    return "\n".join(lines)


def comparisons(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per W: the calibration (their random search / ASHA vs ours; difference = theirs − ours),
    every peer against bandit_tpe+ASHA (difference = peer − ours) and, where both ran, each of
    bandit_tpe's changes against the searcher before it (``BEFORE_AFTER``: the per-decoder-only
    searcher against the pooled default, the one-step arm comparison against the pairwise default;
    difference = before − after), on epochs and simulated seconds to regret <= 0.05."""
    out: dict[str, Any] = {}
    for w, methods in runs.items():
        entry: dict[str, Any] = {}
        for axis in ("epochs", "seconds"):
            key = f"{axis}_to_0.05"
            for ours_name, theirs_name in CALIBRATIONS:
                if ours_name in methods and theirs_name in methods:
                    d = median_difference(methods[theirs_name][key]["per_seed"], methods[ours_name][key]["per_seed"])
                    entry.setdefault(f"calibration_{axis}", {})[f"{theirs_name} vs {ours_name}"] = {
                        **d, "verdict": verdict(d, theirs_name, ours_name)}
            if OURS in methods:
                for name, rec in methods.items():
                    if rec["harness"] != "syne-tune":
                        continue
                    d = median_difference(rec[key]["per_seed"], methods[OURS][key]["per_seed"])
                    entry.setdefault(f"vs_{OURS}_{axis}", {})[name] = {**d, "verdict": verdict(d, name, OURS)}
            for change, pairs in BEFORE_AFTER.items():
                for before, after in pairs:
                    if before in methods and after in methods:
                        d = median_difference(methods[before][key]["per_seed"], methods[after][key]["per_seed"])
                        entry.setdefault(f"{change}_{axis}", {})[f"{before} vs {after}"] = {
                            **d, "verdict": verdict(d, before, after)}
        out[w] = entry
    return out


def plot(runs: dict[str, dict[str, dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = sorted(runs, key=int)
    fig, axes = plt.subplots(1, len(ws), figsize=(4.2 * len(ws) + 1.8, 4.2), sharey=True, squeeze=False)
    names = sorted({n for w in ws for n in runs[w]})
    colours = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
    for ax, w in zip(axes[0], ws):
        for name, rec in runs[w].items():
            b = rec["by_epochs"]
            style = "--" if rec["harness"] == "syne-tune" else "-"
            ax.plot(b["grid"], np.maximum(b["median"], 1e-3), style, color=colours[name], label=name, linewidth=1.4)
        ax.axhline(0.05, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.01, color="grey", linestyle=":", linewidth=0.7)
        ax.set_yscale("log")
        ax.set_title(f"W = {w}")
        ax.set_xlabel("epochs spent (all trials)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median normalised regret (best val/nelbo)")
    handles = {}
    for ax in axes[0]:  # one legend for every method, whichever panels it appears in
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), fontsize=8, loc="center right")
    fig.suptitle(title + "  (solid: ours, dashed: Syne Tune)")
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / (4.2 * len(ws) + 1.8), 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    files = [json.loads(p.read_text()) for p in args.results]
    runs, budget = merge(files)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(runs, budget)
    (args.out / "report.md").write_text(f"# {files[0]['table']}, budget {budget} epochs\n\n{text}\n")
    comp = comparisons(runs)
    (args.out / "comparison.json").write_text(json.dumps(comp, indent=1) + "\n")
    plot(runs, args.out / "regret.png", Path(files[0]["table"]).name)
    print(text)
    print(json.dumps(comp, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
