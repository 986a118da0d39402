"""vaesearch model side: PyTorch VAEs, data, schedules and metrics (no Ray Tune search APIs,
no MLflow, no Optuna; ``ray_trainables.py`` is the one module that imports ``ray.tune``, to report)."""
