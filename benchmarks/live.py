"""What the benchmarks that run live searches through ``run_search`` share: the config sections
of a local run whose Tune results and MLflow SQLite store live under one work directory, and the
child runs of a finished search read back from MLflow."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def local_sections(work: Path, experiment: str) -> dict[str, Any]:
    """``resources`` and ``tracking``: Tune's storage and a SQLite store under ``work``, no retries,
    nothing registered, no images."""
    return {
        "resources": {"cpu": 1, "storage_path": str(work / "ray_results"), "max_failures": 0},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": experiment,
                     "registered_model": None, "log_images": False},
    }


def child_runs(uri: str, parent_run_id: str) -> list[Any]:
    """The MLflow child runs (trials) of the parent run ``parent_run_id``."""
    from mlflow.tracking import MlflowClient

    from search.tracking import PARENT_TAG

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id], max_results=50_000,
                              filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
