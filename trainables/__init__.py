"""vaesearch model side: PyTorch VAEs, data, schedules and metrics (no Ray, no MLflow
except in ``trainable.py``)."""
