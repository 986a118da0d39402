"""End to end: a small search with real Ray Tune, real Optuna and a real MLflow SQLite store."""
from __future__ import annotations

import math
import re
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from search.config import parse_config
from search.connect import TrackingUnavailableError
from search.driver import run_search
from search.review_plots import REVIEW_PLOTS
from search.tracking import PARENT_TAG, TRIAL_ID_TAG
from search.trial_runs import BEST_TAG, EPOCHS_METRIC, STOPPED_BY_TAG
from tests.search.helpers import EPOCHS, small_search, trial_states

pytestmark = pytest.mark.integration



def _children(client: MlflowClient, summary) -> list:
    return client.search_runs([summary.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")


def _vamp_iwae_search(tmp_path: Path) -> dict:
    """The small search with a VampPrior (pseudo-inputs from training images) and the objective
    searched: the ELBO, or IWAE with k = 2 or 4."""
    data = small_search(tmp_path)
    data["model"].update(prior="vampprior", prior_params={"n_components": 8, "init": "data"})
    data["search"]["space"]["objective"] = {"elbo": {}, "iwae": {"k": [2, 4]}}
    return data


def test_search_records_every_trial_in_mlflow(tmp_path: Path, ray_local) -> None:
    config = parse_config(_vamp_iwae_search(tmp_path))
    summary = run_search(config, yaml_text=yaml.safe_dump(_vamp_iwae_search(tmp_path)), verbose=0)
    assert summary.n_trials == 4 and summary.n_errors == 0
    # every epoch's checkpoint was kept while the search ran; at the end only each trial's last
    trial_dirs = list(Path(summary.experiment_path).glob("train_vae_*"))
    assert len(trial_dirs) == 4
    assert all([c.name for c in d.glob("checkpoint_*")] == [f"checkpoint_{EPOCHS - 1:06d}"] for d in trial_dirs)

    client = MlflowClient(tracking_uri=summary.tracking_uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.num_samples"] == "4"
    assert "config.yaml" in [a.path for a in client.list_artifacts(summary.parent_run_id)]
    assert "best/test/nll" in parent.data.metrics and "best/val/nelbo" in parent.data.metrics
    assert parent.data.params["best.decoder"] in ("mlp_small", "deconv_2x2")
    # searched settings: the space and the winner, never the base value the trials overrode
    assert "model.decoder" not in parent.data.params and "train.beta" not in parent.data.params
    assert parent.data.params["model.encoder"] == "mlp" and "search.space.decoder" in parent.data.params
    review = {a.path for a in client.list_artifacts(summary.parent_run_id, "review")}
    assert review == set(REVIEW_PLOTS)

    children = _children(client, summary)
    assert len(children) == 4
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        params = child.data.params
        assert set(params) >= {"beta", "latent_dim", "decoder", "schedule", "objective", "model.encoder", "model.width",
                               "model.likelihood", "train.epochs", "final_eval.test_nll_k"}
        assert params["model.decoder"] == params["decoder"] and params["train.beta"] == params["beta"]
        assert re.fullmatch(rf"t0[1-4] {params['decoder']} β=[0-9.]+ z={params['latent_dim']} {params['schedule']} "
                            rf"{params['objective']}", child.info.run_name), child.info.run_name
        history = client.get_metric_history(child.info.run_id, "val/nelbo")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        assert {"val/rate", "val/distortion", "val/active_units", "val/mi", "val/marginal_kl", "train/loss",
                "train/beta_t"} <= set(child.data.metrics)
        assert not {"beta", "test/nll_k"} & set(child.data.metrics)   # settings are params
        assert child.data.metrics[EPOCHS_METRIC] == EPOCHS and STOPPED_BY_TAG not in child.data.tags
        assert child.data.metrics["val/mi"] <= math.log(180) + 1e-6  # digits: 180 validation images, MI ≤ log N
        iwae = params["objective"] == "iwae"
        assert ("val/iwae" in child.data.metrics) == iwae
        assert params.get("objective.iwae.k") in ({"2", "4"} if iwae else {None})
        images = {a.path for a in client.list_artifacts(child.info.run_id, "images")}
        assert {"images/reconstructions.png", "images/samples.png", "images/pseudo_inputs.png"} <= images
        assert [a.path for a in client.list_artifacts(child.info.run_id, "prior")] == ["prior/prior.json"]
        # and the reconstructions at every epoch (2 planned: every epoch), with a step for the UI's slider
        stepped = sorted(p.split("+")[2] for p in images if p.startswith("images/reconstructions+step+") and p.endswith(".png"))
        assert stepped == [str(e) for e in range(1, EPOCHS + 1)], images

    # the best trial's run carries the importance-sampled test NLL; the best is really the best
    best_child = client.get_run(summary.best_run_id)
    assert "test/nll" in best_child.data.metrics
    assert best_child.data.metrics["val/nelbo"] == min(c.data.metrics["val/nelbo"] for c in children)

    assert [c.info.run_id for c in children if c.data.tags.get(BEST_TAG) == "true"] == [summary.best_run_id]
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Best trial: [{best_child.info.run_name}](#/experiments/{summary.experiment_id}/runs/{best_child.info.run_id})**")
    assert "**4 trials**: 4 ran to the end, 0 stopped early" in note and "### Top 4 by `val/nelbo`" in note
    assert all(f"`{path}`" in note for path in REVIEW_PLOTS)

    # registered from the best trial's run, described, tagged, with a signature; the alias points at it
    version = client.get_model_version_by_alias("itest-vae", "champion")
    assert str(version.version) == "1" and version.run_id == summary.best_run_id
    assert "dataset `digits`" in version.description and summary.parent_run_id in version.description
    assert version.tags["decoder"] == best_child.data.params["decoder"] and float(version.tags["test/nll"]) > 0
    info = mlflow.models.get_model_info("models:/itest-vae@champion")
    assert info.signature is not None and list(info.signature.inputs.inputs[0].shape) == [-1, 1, 8, 8]
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.source_run_id == summary.best_run_id
    assert not [m.key for m in logged.metrics or [] if m.key.startswith(("arm/", "best/"))]
    assert "best_checkpoint/state.pt" in [a.path for a in client.list_artifacts(summary.best_run_id, "best_checkpoint")]

    # the registered model loads back and is a working VAE
    model = mlflow.pytorch.load_model("models:/itest-vae@champion")
    x = torch.rand(3, 1, 8, 8)
    assert model.reconstruct(x).shape == (3, 1, 8, 8)
    assert torch.isfinite(model(x.bernoulli()).log_px_z).all()


def test_failing_trial_does_not_take_the_search_down(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    """A diverging trial fails at once (retries are for lost nodes, not for errors a retry
    repeats), in one line on the console, with its error in MLflow; the search goes on."""
    data = small_search(tmp_path, num_samples=3, max_concurrent=1, algorithm="random")
    data["search"]["space"] = {"lr": [1e-3, 1e30]}  # lr = 1e30 diverges: NonFiniteLossError
    data["seed"] = 0  # RandomSampler(seed=0) draws 1e30, 1e-3, 1e30
    data["resources"]["max_failures"] = 2
    summary = run_search(parse_config(data), verbose=0)
    err = capsys.readouterr().err
    failed_lines = [line for line in err.splitlines() if " failed: NonFiniteLossError" in line]
    assert len(failed_lines) == summary.n_errors == 2, err[-3000:]
    assert all("not retried" in line and "error.txt" in line for line in failed_lines)
    assert "retrying" not in err and "Traceback" not in err
    states = trial_states(Path(summary.experiment_path))
    assert sorted(failures for status, failures in states.values() if status == "ERROR") == [1, 1]  # one try each
    client = MlflowClient(tracking_uri=summary.tracking_uri)
    children = _children(client, summary)
    assert summary.n_trials == 3 and len(children) == 3
    failed = [c for c in children if c.info.status == "FAILED"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert failed and finished, "this seed must draw both learning rates"
    assert all(c.data.params["lr"] == "1e+30" for c in failed)
    assert all("non-finite training loss" in c.data.tags["vaesearch.error"] for c in failed)
    assert summary.best_config is not None and summary.best_config["lr"] == 1e-3
    assert len(summary.errors) == 1 and "NonFiniteLossError" in summary.errors[0]
    assert "trial error: " in summary.describe()


def test_a_diverged_trial_is_flagged_and_never_best(tmp_path: Path, ray_local) -> None:
    """lr 10 on digits: the loss stays finite but the validation NELBO is thousands of times the
    per-pixel marginal's: the trial fails as diverged (MLflow tag, summary), nothing registered."""
    data = small_search(tmp_path, num_samples=1, max_concurrent=1)
    data["search"]["space"] = {"lr": 10.0}
    data["train"]["epochs"] = 3
    summary = run_search(parse_config(data), verbose=0)
    assert summary.n_errors == summary.n_diverged == 1 and summary.best_config is None
    assert "of which diverged: 1" in summary.describe()
    client = MlflowClient(tracking_uri=summary.tracking_uri)
    [child] = _children(client, summary)
    assert child.info.status == "FAILED" and child.data.tags["vaesearch.diverged"] == "true"
    assert "DivergenceError: diverged: val/nelbo" in child.data.tags["vaesearch.error"]
    assert not client.search_registered_models()


def test_cli_run_prints_a_summary(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    data = small_search(tmp_path, num_samples=8, scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["run", str(path), "--num-samples", "2", "--tracking-uri", uri, "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "best config:" in out and "MLflow parent run:" in out and "mlflow ui --backend-store-uri" in out
    runs = MlflowClient(tracking_uri=uri).search_runs([MlflowClient(tracking_uri=uri).get_experiment_by_name("itest").experiment_id])
    assert len(runs) == 3  # parent + 2 trials (--num-samples overrides the file's 8)
    for child in [r for r in runs if PARENT_TAG in r.data.tags]:   # ASHA may stop one: then it says so
        stopped = child.data.metrics[EPOCHS_METRIC] < EPOCHS
        assert child.data.tags.get(STOPPED_BY_TAG) == ("asha" if stopped else None), child.data



def test_unreachable_tracking_server_fails_before_any_trial(tmp_path: Path) -> None:
    config = parse_config(small_search(tmp_path))
    with pytest.raises(TrackingUnavailableError, match="no trial was started"):
        run_search(config, tracking_uri="http://127.0.0.1:9", verbose=0)
    assert not (tmp_path / "ray_results").exists()
