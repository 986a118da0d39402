"""The rate–distortion figure and page: every trial drawn, the front joined, hover titles escaped."""
from __future__ import annotations

import re

from search.pareto import front
from search.plots import close
from search.rd_plots import RDPoint, rd_front_figure, rd_front_html

POINTS = [RDPoint("t0 <mlp>", 1.0, 5.0, beta=4.0), RDPoint("t1", 2.0, 3.0, beta=1.0),
          RDPoint("t2", 3.0, 4.0, beta=1.0), RDPoint("t3", 4.0, 1.0, beta=0.25, details={"decoder": "deconv_4x4"})]


def test_figure_draws_every_trial_and_joins_the_front() -> None:
    fig = rd_front_figure(POINTS, (6.0, 6.0))
    ax = fig.axes[0]
    [scatter] = ax.collections
    assert len(scatter.get_offsets()) == len(POINTS)
    [front_line] = [line for line in ax.lines if line.get_label() == "Pareto front"]
    assert list(zip(*front_line.get_data())) == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]
    assert "hypervolume 17" in ax.get_title()
    assert len(fig.axes) == 2   # the β colour bar
    close(fig)


def test_figure_without_beta_or_points() -> None:
    fig = rd_front_figure([RDPoint("a", 1.0, 2.0)])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "rate–distortion"
    close(fig)
    fig = rd_front_figure([])
    assert "no finished trials" in fig.axes[0].texts[0].get_text()
    close(fig)


def test_page_has_one_hoverable_point_per_trial_and_the_front() -> None:
    page = rd_front_html(POINTS, (6.0, 6.0))
    assert page.count("<circle") == len(POINTS)
    assert "t0 &lt;mlp&gt;" in page and "<mlp>" not in page           # names are escaped
    assert "decoder: deconv_4x4" in page and "hypervolume 17" in page
    [polyline] = re.findall(r"<polyline points='([^']*)'", page)
    assert len(polyline.split()) == len(front([(p.rate, p.distortion) for p in POINTS])) == 3
    assert page.count("stroke='crimson' stroke-width='2'") == 3        # the front's points are marked
    assert "<script" not in page
