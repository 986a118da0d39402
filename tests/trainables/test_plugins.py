"""Plug-ins by import path (``trainables/registry.py``'s Plugin, ``trainables/plugins.py``): built with
the built-ins' arguments, carried as a path (picklable, JSON), checked by one forward pass."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from tests.plugin_files import forget, write_module
from trainables.checkpoint import CONFIG_FILE, load_model
from trainables.plugins import probe_model
from trainables.registry import Plugin, PluginError
from trainables.spec import SharedEncoderSpec, TrialSpec
from trainables.vae import VAEConfig, build_vae

SHAPE = (1, 8, 8)


def plugin(plugs: tuple[str, str], cls: str, **kwargs: object) -> Plugin:
    return Plugin(path=f"{plugs[0]}:{cls}", kwargs=kwargs, search_path=plugs[1])


def config(decoder: object = "mlp_small", **model: object) -> VAEConfig:
    return VAEConfig(shape=SHAPE, latent_dim=4, decoder=decoder, width=0.125, **{"encoder": "mlp", **model})


def test_a_plugin_decoder_trains_like_a_builtin(plugs: tuple[str, str]) -> None:
    vae = build_vae(config(plugin(plugs, "TinyDecoder", hidden=8)))
    assert vae.decoder.net[0].out_features == 8                            # kwargs reached the constructor
    x = torch.rand(5, *SHAPE).bernoulli()
    out = vae(x)
    assert out.params.shape == (5, *SHAPE)
    loss = -(out.log_px_z - out.kl_per_dim.sum(-1)).mean()
    loss.backward()
    assert vae.decoder.net[0].weight.grad is not None and torch.isfinite(loss)


def test_plugin_encoder_and_prior(plugs: tuple[str, str]) -> None:
    cfg = config(encoder=plugin(plugs, "TinyEncoder"), prior=plugin(plugs, "LaplacePrior"))
    probe_model(cfg)
    out = build_vae(cfg)(torch.rand(3, *SHAPE))
    assert out.mu.shape == (3, 4) and out.kl_per_dim.shape == (3, 4)


def test_the_spec_carries_the_path_not_the_class(plugs: tuple[str, str]) -> None:
    """Ray pickles the spec to every worker; checkpoints store the config as JSON."""
    dec = plugin(plugs, "TinyDecoder", hidden=8)
    spec = TrialSpec(plugins={"TinyDecoder": dec}).with_overrides({"decoder": "TinyDecoder", "encoder": "mlp"})
    assert spec.model.decoder == dec
    blob = pickle.dumps(spec)
    assert plugs[0].encode() not in blob.replace(dec.path.encode(), b"").replace(plugs[1].encode(), b"")
    assert pickle.loads(blob) == spec

    cfg = spec.vae_config(SHAPE)
    assert VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_checkpoint_of_a_plugin_model_loads(plugs: tuple[str, str], tmp_path: Path) -> None:
    from trainables.checkpoint import TrainState, save_checkpoint

    vae = build_vae(config(plugin(plugs, "TinyDecoder")))
    directory = tmp_path / "ckpt"
    directory.mkdir()
    save_checkpoint(directory, vae, torch.optim.Adam(vae.parameters()), TrainState(1, 1), torch.Generator())
    assert json.loads((directory / CONFIG_FILE).read_text())["decoder"]["path"] == f"{plugs[0]}:TinyDecoder"
    loaded = load_model(directory)
    assert torch.equal(loaded.decoder.net[0].weight, vae.decoder.net[0].weight)


def test_shared_encoder_heads_may_be_plugins(plugs: tuple[str, str]) -> None:
    spec = SharedEncoderSpec(decoders=("mlp_small", plugin(plugs, "TinyDecoder", hidden=8)), policy="uniform")
    assert spec.decoder_names == ("mlp_small", "TinyDecoder")
    with pytest.raises(ValueError, match="distinct names"):
        SharedEncoderSpec(decoders=(plugin(plugs, "TinyDecoder"), plugin(plugs, "TinyDecoder", hidden=4)))


@pytest.mark.parametrize(("cls", "message"), [
    ("WrongShape", r"decoder plug-in 'WrongShape' \(.*:WrongShape\): returned shape \(4, 1, 7, 7\); "
                   r"expected \(4, 1, 8, 8\) = \(batch, C, H, W\)"),
    ("Float64", r"decoder plug-in 'Float64' .*returned dtype torch.float64; expected torch.float32"),
    ("NaNOutput", r"decoder plug-in 'NaNOutput' .*returned 256 non-finite value\(s\) \(NaN or inf\)"),
    ("Raises", r"decoder plug-in 'Raises' .*forward raised RuntimeError: mat1 and mat2 shapes cannot be multiplied "
               r"\(on z of shape \(4, 4\)\)"),
    ("ConstructorRaises", r"decoder plug-in 'ConstructorRaises' .*the constructor raised ValueError: blocks must be "
                          r">= 1 \(called with shape=\(1, 8, 8\), latent_dim=4, width=0.125\)"),
    ("NotAModule", r"decoder plug-in 'NotAModule' .*must build a torch.nn.Module, got a NotAModule"),
    ("Missing", r"decoder plug-in 'Missing' .*has no 'Missing'; its classes: \[.*'TinyDecoder'"),
])
def test_a_broken_plugin_is_refused_naming_it(plugs: tuple[str, str], cls: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        probe_model(config(plugin(plugs, cls)))


def test_import_errors_name_the_module(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"cannot import module 'no_such_module_xyz': ModuleNotFoundError.*"
                                          r"next to the config or on PYTHONPATH"):
        Plugin(path="no_such_module_xyz:Dec").load("decoder")
    broken = write_module(tmp_path, "raise ImportError('needs scipy')\n", stem="broken")
    try:
        with pytest.raises(PluginError, match=rf"cannot import module '{broken}': ImportError: needs scipy"):
            Plugin(path=f"{broken}:Dec", search_path=str(tmp_path)).load("decoder")
    finally:
        forget(tmp_path)


def test_nothing_is_imported_until_a_model_is_built(plugs: tuple[str, str]) -> None:
    import sys

    spec = TrialSpec(plugins={"TinyDecoder": plugin(plugs, "TinyDecoder")})
    spec.with_overrides({"decoder": "TinyDecoder"})
    assert plugs[0] not in sys.modules


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"path": "no colon"}, "must look like 'package.module:ClassName'"),
    ({"path": "m:C", "kwargs": {"latent_dim": 3}}, None),
])
def test_plugin_reference_form(kwargs: dict, message: str | None, plugs: tuple[str, str]) -> None:
    if message:
        with pytest.raises(PluginError, match=message):
            Plugin(**kwargs)
    else:  # a kwarg the protocol passes itself is refused when building
        with pytest.raises(PluginError, match=r"kwargs \['latent_dim'\] are given by vaesearch"):
            plugin(plugs, "TinyDecoder", latent_dim=3).build("decoder", shape=SHAPE, latent_dim=4, width=1.0)
