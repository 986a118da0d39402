"""The search mode's own logic, without starting Ray."""
from __future__ import annotations

from search.config import parse_config
from search.modes.search import search_columns


def test_progress_table_shows_only_the_searched_parameters() -> None:
    """Tune's table fails on a parameter column no trial has (``vaesearch run`` at --verbose 1)."""
    config = parse_config({"search": {"space": {"beta": {"low": 0.5, "high": 2.0}, "decoder": ["mlp_small", "deconv_2x2"],
                                                "schedule": {"constant": {}, "linear": {}}}}})
    assert search_columns(config) == ["decoder", "beta", "schedule"]
    assert search_columns(parse_config({})) == []
    both = parse_config({"search": {"space": {"prior": ["standard_normal", "vampprior"], "objective": ["elbo", "iwae"]}}})
    assert search_columns(both) == ["prior", "objective"]
