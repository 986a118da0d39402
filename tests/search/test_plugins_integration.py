"""A plug-in decoder and a built-in in one ``bandit_tpe`` search on an ``image_folder`` dataset, in
real Ray Tune and Optuna, with MLflow checked (the plug-in's module only beside the config)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from search.config import load_config
from search.driver import run_search
from tests.plugin_files import forget, write_module
from tests.search.helpers import small_search

pytestmark = pytest.mark.integration


def test_bandit_tpe_with_a_plugin_decoder_on_an_image_folder(tmp_path: Path, ray_local: None) -> None:
    from sklearn.datasets import load_digits

    images = (load_digits().images[:300] * (255 / 16)).astype(np.uint8)
    for i, image in enumerate(images):           # 8x8 PNGs, read back resized to 12x12
        (tmp_path / "imgs" / str(i % 10)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(tmp_path / "imgs" / str(i % 10) / f"{i}.png")
    module = write_module(tmp_path)
    data = small_search(tmp_path, algorithm="bandit_tpe", num_samples=4, n_startup_trials=1)
    data["data"] = {"name": "image_folder", "path": "imgs", "resize": 12}
    data["train"]["epochs"] = 1
    data["search"]["space"] = {"decoder": ["mlp_small", {"path": f"{module}:TinyDecoder", "name": "tiny"}],
                               "beta": {"low": 0.5, "high": 2.0}}
    (tmp_path / "tpe.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "tpe.yaml")
    try:
        summary = run_search(config, verbose=0)
    finally:
        forget(tmp_path)
    assert summary.n_errors == 0 and summary.n_trials == 4

    client = MlflowClient(config.tracking.uri)
    children = client.search_runs([summary.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    decoders = [c.data.params["decoder"] for c in children]
    assert sorted(set(decoders)) == ["mlp_small", "tiny"] and len(decoders) == 4    # each arm tried
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.metrics["arm/tiny/trials"] + parent.data.metrics["arm/mlp_small/trials"] == 4
    assert parent.data.params["data.name"] == "image_folder"
    assert summary.best_config["decoder"] in {"mlp_small", "tiny"} and summary.model_uri is not None
