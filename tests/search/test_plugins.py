"""Plug-ins and the user's own data in the config and at ``vaesearch validate`` (``search/config/
components.py``, ``search/runnable.py``, ``search/plugin_modules.py``): every bad plug-in or dataset
is exit 2 with a message naming it, before Ray starts; nothing is imported that the config does not name."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from search.cli import main
from search.config import ConfigError, load_config, parse_config
from search.plugin_modules import find_module, plugin_modules
from search.space import DefineByRun
from search.trial_specs import trial_spec
from tests.plugin_files import forget, write_module
from trainables.registry import Plugin

BIN = Path(sys.executable).parent


@pytest.fixture
def plugs(tmp_path: Path) -> Iterator[str]:
    """A module of plug-ins beside the configs this test writes (only the config directory finds it)."""
    name = write_module(tmp_path)
    yield name
    forget(tmp_path)


def bandit_config(tmp_path: Path, arms: list, **data: object) -> Path:
    config = {
        "data": data or {"name": "digits"},
        "model": {"encoder": "mlp", "latent_dim": 4, "width": 0.125},
        "train": {"batch_size": 64},
        "bandit": {"mode": "allocation", "arms": arms, "allocation": {"policy": "uniform", "budget_epochs": 4}},
    }
    path = tmp_path / "bandit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_every_place_a_decoder_is_named_takes_a_plugin(plugs: str) -> None:
    tiny = {"path": f"{plugs}:TinyDecoder", "kwargs": {"hidden": 8}, "name": "tiny"}
    config = parse_config({
        "model": {"decoder": tiny, "encoder": {"path": f"{plugs}:TinyEncoder"}},
        "search": {"algorithm": "bandit_tpe", "space": {"decoder": ["mlp_small", tiny]}},
        "bandit": {"arms": [tiny, "deconv_2x2"]},
    })
    assert config.search.space.decoder_choices() == ["mlp_small", "tiny"]      # what Optuna and MLflow see
    assert config.bandit.arm_names() == ["tiny", "deconv_2x2"]
    assert sorted(config.plugins()) == ["TinyEncoder", "tiny"]
    spec = trial_spec(config)
    assert spec.model.decoder == Plugin(path=f"{plugs}:TinyDecoder", kwargs={"hidden": 8}, name="tiny")
    assert spec.with_overrides({"decoder": "mlp_small"}).model.decoder == "mlp_small"
    assert spec.with_overrides({"decoder": "tiny"}).model.decoder.kwargs == {"hidden": 8}
    import optuna

    study = optuna.create_study()
    fixed = DefineByRun(config.search.space)(study.ask())
    assert fixed == {} and study.trials[0].params["decoder"] in {"mlp_small", "tiny"}


@pytest.mark.parametrize(("section", "message"), [
    ({"model": {"decoder": {"path": "mymodule"}}}, r"model.decoder: a plug-in is .*path must look like "
                                                    r"'package.module:ClassName', got 'mymodule'"),
    ({"model": {"decoder": {"path": "m:D", "kwarg": {}}}}, r"kwarg: Extra inputs are not permitted"),
    ({"model": {"decoder": 3}}, r"model.decoder: a component is a registered name or \{path: "),
    ({"bandit": {"arms": [{"path": "m:D"}, {"path": "n:D"}]}}, r"arms must be distinct, got \['D', 'D'\]"),
    ({"search": {"space": {"decoder": ["mlp_small", {"path": "m:mlp_small"}]}}},
     r"plug-in 'm:mlp_small' is called 'mlp_small', the name of a registered decoder"),
    ({"model": {"decoder": {"path": "a:D", "kwargs": {"x": 1}}}, "bandit": {"arms": [{"path": "a:D"}, "mlp_small"]}},
     r"two different plug-ins are called 'D'"),
    ({"model": {"likelihood": {"path": "m:L"}}}, r"model.likelihood: Input should be a valid string"),
])
def test_bad_plugin_entries_are_config_errors(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(section)


@pytest.mark.parametrize(("cls", "expected"), [
    ("WrongShape", "returned shape (4, 1, 7, 7); expected (4, 1, 8, 8) = (batch, C, H, W)"),
    ("Float64", "returned dtype torch.float64; expected torch.float32"),
    ("NaNOutput", "non-finite value(s) (NaN or inf)"),
    ("Raises", "forward raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (on z of shape (4, 4))"),
    ("ConstructorRaises", "the constructor raised ValueError: blocks must be >= 1"),
    ("Absent", "has no 'Absent'"),
])
def test_validate_refuses_a_broken_plugin_arm(tmp_path: Path, plugs: str, cls: str, expected: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = bandit_config(tmp_path, ["mlp_small", {"path": f"{plugs}:TinyDecoder"}, {"path": f"{plugs}:{cls}"}])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"bandit.arms='{cls}': a trial with it could not start: decoder plug-in '{cls}' ({plugs}:{cls}): " in err
    assert expected in err and "Traceback" not in err
    assert "bandit.arms='TinyDecoder'" not in err                      # the good plug-in passed


@pytest.mark.parametrize("command", ["bandit", "run"])
def test_run_and_bandit_refuse_a_broken_plugin_before_anything_starts(
        tmp_path: Path, plugs: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = bandit_config(tmp_path, ["mlp_small", {"path": f"{plugs}:WrongShape"}])
    config = yaml.safe_load(path.read_text())
    config["search"] = {"num_samples": 2, "space": {"decoder": config["bandit"]["arms"]}}
    config["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    if command == "run":
        del config["bandit"]
    path.write_text(yaml.safe_dump(config))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "decoder plug-in 'WrongShape'" in err and "expected (4, 1, 8, 8)" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()                    # no tracking store, no parent run, no Ray


def test_validate_checks_shared_encoder_heads(tmp_path: Path, plugs: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = bandit_config(tmp_path, ["mlp_small", {"path": f"{plugs}:Float64", "name": "f64"}])
    config = yaml.safe_load(path.read_text())
    config["bandit"] = {"mode": "shared_encoder", "arms": config["bandit"]["arms"],
                        "shared_encoder": {"datasets": ["digits"], "policies": ["uniform"], "policy_params": {}}}
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    assert "bandit.arms='f64': a trial with it could not start: decoder plug-in 'f64'" in capsys.readouterr().err


def test_validate_a_good_plugin_in_a_search_and_on_user_data(tmp_path: Path, plugs: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "faces.npz", train=np.zeros((40, 1, 8, 8), np.uint8), test=np.zeros((8, 1, 8, 8), np.uint8))
    config = {"data": {"name": "arrays", "path": "faces.npz"},          # relative to the config's directory
              "model": {"encoder": "mlp", "width": 0.125},
              "search": {"algorithm": "bandit_tpe", "num_samples": 2,
                         "space": {"decoder": ["mlp_small", {"path": f"{plugs}:TinyDecoder"}], "latent_dim": [2, 4]}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", str(tmp_path / "run.yaml")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "bandit_tpe search, 2 trials" in out
    assert f"plug-ins imported, built on the CPU and run forward once: TinyDecoder ({plugs}:TinyDecoder)" in out


def test_validate_refuses_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.full((40, 1, 8, 8), 3.0, np.float32))
    path = bandit_config(tmp_path, ["mlp_small"], name="arrays", path="x.npy")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"data.path '{tmp_path / 'x.npy'}': float values in [3, 3]; the likelihoods need [0, 1]" in err
    for data, message in (({"name": "arrays"}, "data.name 'arrays' needs data.path"),
                          ({"name": "image_folder", "path": "imgs"}, "needs data.resize"),
                          ({"name": "callable", "path": "loader.py"}, "must look like 'package.module:function'")):
        with pytest.raises(ConfigError, match=message):
            parse_config({"data": data})


def test_nothing_is_imported_that_the_config_does_not_name(tmp_path: Path, plugs: str) -> None:
    other = write_module(tmp_path, "raise SystemExit('imported!')\n", stem="unnamed")
    path = bandit_config(tmp_path, ["mlp_small", {"path": f"{plugs}:TinyDecoder"}])
    assert main(["validate", str(path)]) == 0
    assert plugs in sys.modules and other not in sys.modules


def test_where_modules_are_found(tmp_path: Path, plugs: str) -> None:
    assert find_module(plugs, tmp_path).source == tmp_path / f"{plugs}.py"            # beside the config
    assert find_module(plugs, None) is None and find_module("no_such_mod_q", tmp_path) is None
    assert find_module("trainables.decoders", None).source.name == "trainables"          # on the import path
    config = load_config(bandit_config(tmp_path, [{"path": f"{plugs}:TinyDecoder"}, {"path": "no_such_mod_q:D"}]))
    assert set(plugin_modules(config)) == {plugs}
    with pytest.raises(ConfigError, match=r"cannot find the plug-in module\(s\) .*\n  plug-in 'D' "
                                          r"\(no_such_mod_q:D\): module 'no_such_mod_q'"):
        plugin_modules(config, required=True)


def test_the_cli_exits_2_without_a_traceback(tmp_path: Path, plugs: str) -> None:
    path = bandit_config(tmp_path, ["mlp_small", {"path": f"{plugs}:NaNOutput", "name": "nan-dec"}])
    done = subprocess.run([str(BIN / "vaesearch"), "validate", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "decoder plug-in 'nan-dec'" in done.stderr and "non-finite" in done.stderr
    assert "Traceback" not in done.stderr
