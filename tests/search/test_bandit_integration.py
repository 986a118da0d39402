"""The three decoder-bandit modes end to end from the CLI / Python API: real Ray, real MLflow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from search.config import parse_config
from search.driver import resume_experiment, run_bandit, run_search
from search.tracking import PARENT_TAG

pytestmark = pytest.mark.integration

ARMS = ["mlp_small", "deconv_2x2"]


def _base(tmp_path: Path, bandit: dict | None = None, search: dict | None = None) -> dict:
    return {
        "name": "bandit-itest",
        "data": {"name": "digits"},
        "model": {"encoder": "mlp", "latent_dim": 4, "width": 0.125},
        "train": {"batch_size": 256, "n_images": 8},
        "bandit": bandit or {},
        "search": search or {},
        "final_eval": {"test_nll_k": 10, "chunk_size": 10, "max_examples": 20},
        "resources": {"cpu": 1, "storage_path": str(tmp_path / "ray_results"), "max_failures": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "bandit-itest"},
    }


def _parent_and_children(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bandit-itest")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parents[0].info.run_id]
    return client, parents[0], children


def test_allocation_mode_from_the_cli(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    data = _base(tmp_path, bandit={"mode": "allocation", "arms": ARMS,
                                   "allocation": {"policy": "uniform", "epochs_per_pull": 1, "budget_epochs": 4}})
    path = tmp_path / "alloc.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["bandit", str(path), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "chosen arm:" in out and "epochs used: 4 of a budget of 4" in out

    client, parent, children = _parent_and_children(data["tracking"]["uri"])
    assert parent.data.tags["vaesearch.role"] == "bandit-allocation"
    assert parent.data.tags["vaesearch.chosen_arm"] in ARMS
    assert parent.data.metrics["budget/epochs_used"] == 4
    for arm in ARMS:
        assert parent.data.metrics[f"arm/{arm}/pulls"] == 2  # uniform: 2 pulls each
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"allocation.png", "learning_curves.png", "arms.json", "config.yaml"} <= artifacts
    assert sorted(c.data.params["decoder"] for c in children) == sorted(ARMS)  # one child per arm
    assert "model.decoder" not in parent.data.params   # the arms override it: search.space / arms say what ran
    for child in children:  # each arm trained 2 epochs, paused and resumed in between: steps 1, 2 once each
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/distortion")]
        assert sorted(steps) == [1, 2]
        # 2 of the 4 epochs an arm may get: the bandit stopped it, and the run says so
        assert child.data.metrics["epochs_completed"] == 2 and child.data.tags["vaesearch.stopped_by"] == "bandit"
        assert child.info.run_name.split(" ")[1:] == [child.data.params["decoder"], f"seed={child.data.params['seed']}"]


def test_shared_encoder_mode(tmp_path: Path, ray_local) -> None:
    data = _base(tmp_path, bandit={"mode": "shared_encoder", "arms": ARMS, "shared_encoder": {
        "datasets": ["digits"], "policies": ["uniform", "epsilon_greedy"], "seeds": [0], "epochs": 2,
        "eval_every": 3, "eval_batch_size": 64, "policy_params": {"epsilon_greedy": {"epsilon": 0.3}}}})
    summary = run_bandit(parse_config(data), verbose=0)
    assert [t.policy for t in summary.trials] == ["uniform", "epsilon_greedy"] or \
        sorted(t.policy for t in summary.trials) == ["epsilon_greedy", "uniform"]
    for trial in summary.trials:
        assert trial.error is None
        assert sum(trial.pull_share.values()) == pytest.approx(1.0)
        assert trial.cumulative_regret >= 0 and len(trial.regret_curve) == 2
    uniform = next(t for t in summary.trials if t.policy == "uniform")
    assert abs(uniform.pull_share["mlp_small"] - 0.5) < 0.1

    client, parent, children = _parent_and_children(data["tracking"]["uri"])
    assert len(children) == 2
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pull_shares.png", "regret.png", "shared_encoder_trials.json"} <= artifacts
    assert "digits/uniform/regret" in parent.data.metrics
    history = client.get_metric_history(children[0].info.run_id, "regret/cumulative")
    assert sorted(m.step for m in history) == [1, 2]
    # both trials ran their planned epochs (bandit.shared_encoder.epochs): none reads as stopped early
    assert [(c.data.metrics["epochs_completed"], c.data.tags.get("vaesearch.stopped_by")) for c in children] == [(2, None)] * 2

    # The run left its record like every mode: resuming the finished run restores it through the
    # same driver (nothing left to train) and summarises the same trials.
    again = resume_experiment(summary.experiment_path, verbose=0)
    assert again.parent_run_id == summary.parent_run_id
    assert {(t.policy, t.cumulative_regret) for t in again.trials} == {(t.policy, t.cumulative_regret) for t in summary.trials}
    assert len(_parent_and_children(data["tracking"]["uri"])[2]) == 2  # no new child run


def test_bandit_tpe_search_with_a_plugin_arm_on_an_image_folder_logs_arms(tmp_path: Path, ray_local) -> None:
    """A plug-in decoder (its module only beside the config) and a built-in as the arms of one
    ``bandit_tpe`` + ASHA search on an ``image_folder`` dataset of PNGs (8x8 digits read back at 12x12)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from search.config import load_config
    from tests.plugin_files import forget, write_module

    images = (load_digits().images[:300] * (255 / 16)).astype(np.uint8)
    for i, image in enumerate(images):
        (tmp_path / "imgs" / str(i % 10)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(tmp_path / "imgs" / str(i % 10) / f"{i}.png")
    module = write_module(tmp_path)
    arms = ["mlp_small", "tiny"]
    data = _base(tmp_path, search={
        "algorithm": "bandit_tpe", "num_samples": 4, "max_concurrent": 2, "n_startup_trials": 1,
        "space": {"decoder": ["mlp_small", {"path": f"{module}:TinyDecoder", "name": "tiny"}],
                  "beta": {"low": 0.5, "high": 2.0, "log": True}},
        "scheduler": {"name": "asha", "grace_period": 1}})
    data["data"] = {"name": "image_folder", "path": "imgs", "resize": 12}
    data["train"]["epochs"] = 2
    (tmp_path / "tpe.yaml").write_text(yaml.safe_dump(data))
    try:
        summary = run_search(load_config(tmp_path / "tpe.yaml"), verbose=0)
    finally:
        forget(tmp_path)
    assert summary.n_trials == 4 and summary.n_errors == 0
    assert summary.best_config["decoder"] in arms and summary.model_uri is not None
    client, parent, children = _parent_and_children(data["tracking"]["uri"])
    assert len(children) == 4 and parent.data.params["data.name"] == "image_folder"
    assert sorted(set(c.data.params["decoder"] for c in children)) == arms   # each arm tried, by its readable name
    trials = {arm: parent.data.metrics[f"arm/{arm}/trials"] for arm in arms}
    assert sum(trials.values()) == 4 and all(n >= 1 for n in trials.values())  # untried arms go first
    assert all(f"arm/{arm}/best_val_nelbo" in parent.data.metrics for arm in arms)
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, "arms.json", str(tmp_path))).read_text())
    assert sorted(a["arm"] for a in logged) == arms
    for child in children:   # ASHA (grace period 1) may stop a trial after epoch 1: then it says so
        stopped = child.data.metrics["epochs_completed"] < 2
        assert child.data.tags.get("vaesearch.stopped_by") == ("asha" if stopped else None)
    # the model is logged in the best trial's run: it carries that trial's metrics, not the parent's arm/*
    [model] = client.search_logged_models(experiment_ids=[parent.info.experiment_id])
    assert model.source_run_id == summary.best_run_id
    assert not [m.key for m in model.metrics or [] if m.key.startswith("arm/")]
