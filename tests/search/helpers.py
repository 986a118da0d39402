"""Configs shared by the integration tests: small, real searches that take seconds on 2 cores."""
from __future__ import annotations

from pathlib import Path
from typing import Any

EPOCHS = 2


def small_search(tmp_path: Path, **search: Any) -> dict[str, Any]:
    """A 4-trial TPE search on scikit-learn's 8×8 digits; ``search`` overrides keys of ``search``."""
    return {
        "name": "itest",
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"encoder": "mlp", "latent_dim": 4, "width": 0.125},
        "train": {"epochs": EPOCHS, "batch_size": 128, "n_images": 16},
        "search": {
            "algorithm": "optuna", "num_samples": 4, "max_concurrent": 2, "n_startup_trials": 2,
            "space": {
                "beta": {"low": 0.5, "high": 2.0, "log": True},
                "latent_dim": [2, 4],
                "decoder": ["mlp_small", "deconv_2x2"],
                "schedule": {"constant": {}, "linear": {"warmup_fraction": {"low": 0.2, "high": 0.8}}},
            },
            **search,
        },
        "final_eval": {"test_nll_k": 20, "chunk_size": 10, "max_examples": 50},
        "resources": {"cpu": 1, "storage_path": str(tmp_path / "ray_results"), "max_failures": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "itest", "registered_model": "itest-vae"},
    }


def assert_one_child_per_trial(tracking_uri: str, parent_run_id: str, trial_ids: set[str], epochs: int) -> None:
    """MLflow holds exactly one FINISHED child run per trial under the parent, each with every
    epoch's ``val/nelbo`` logged once (steps 1..epochs, no duplicates from restarts)."""
    from mlflow.tracking import MlflowClient

    from search.tracking import PARENT_TAG, TRIAL_ID_TAG

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
    by_trial = [c.data.tags[TRIAL_ID_TAG] for c in children]
    assert sorted(by_trial) == sorted(trial_ids), f"child runs {sorted(by_trial)} != trials {sorted(trial_ids)}"
    for child in children:
        assert child.info.status == "FINISHED", (child.data.tags[TRIAL_ID_TAG], child.info.status)
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val/nelbo"))
        assert steps == list(range(1, epochs + 1)), (child.data.tags[TRIAL_ID_TAG], steps)


def trial_states(experiment: Path) -> dict[str, tuple[str, int]]:
    """trial id -> (status, failures survived), from Tune's newest experiment state file."""
    import json

    # The newest by the timestamp in its name, as Tune picks it (mtimes are all touched by the
    # final sync to storage).
    newest = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.name)
    out = {}
    for trial_json, metadata_json in json.loads(newest.read_text())["trial_data"]:
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        out[trial["trial_id"]] = (trial["status"], int(metadata.get("num_failures", 0)))
    return out


def trial_runs(uri: str, experiment: str = "itest") -> list:
    """The trial (child) runs MLflow holds so far: what the driver logged, without Tune's lag."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], filter_string="tags.`vaesearch.role` = 'trial'")
