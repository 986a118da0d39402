"""``examples/plugins``: the plug-in decoder against two built-ins in a decoder-bandit allocation run
on the .npz the example writes, in real Ray Tune with MLflow checked (run from a copy under tmp_path:
the module is found beside the config, and each Ray worker imports it from there)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.config import load_config
from search.driver import run_bandit
from tests.plugin_files import forget

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins"


def test_the_plugin_example_runs(tmp_path: Path, ray_local: None) -> None:
    example = tmp_path / "plugins"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("digits.npz", "__pycache__", "mlruns", "ray_results"))
    subprocess.run([sys.executable, str(example / "make_digits_npz.py")], check=True, timeout=120)  # beside itself
    assert (example / "digits.npz").is_file()

    config = load_config(example / "bandit.yaml")
    # The example as shipped, with its stores under tmp_path and half its budget (two pulls an arm).
    config.resources.storage_path = str(tmp_path / "ray_results")
    config.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config.bandit.allocation.budget_epochs = 6
    try:
        summary = run_bandit(config, verbose=0)
    finally:
        forget(example)
    assert summary.n_errors == 0
    arms = {a.name: a for a in summary.arms}
    assert list(arms) == ["mlp_small", "deconv_2x2", "residual"]
    assert arms["residual"].pulls >= 1 and arms["residual"].best_reward is not None
    assert summary.epochs_used == 6

    client = MlflowClient(config.tracking.uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.metrics["arm/residual/pulls"] == arms["residual"].pulls
    children = client.search_runs([summary.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    residual = [c for c in children if c.data.params.get("decoder") == "residual"]
    assert len(residual) == 1 and residual[0].info.status == "FINISHED"
    history = client.get_metric_history(residual[0].info.run_id, "val/distortion")
    assert len(history) == arms["residual"].epochs
