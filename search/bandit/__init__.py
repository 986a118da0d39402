"""The decoder bandit: policies (pure, no Ray) and their Ray Tune adapters (searchers, schedulers)."""
