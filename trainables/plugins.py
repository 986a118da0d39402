"""The plug-in protocol, checked: build a model's plug-ins on the CPU and run one forward pass.

A plug-in (``trainables.registry.Plugin``: ``package.module:ClassName`` plus kwargs) implements
the protocol the built-ins use (``docs/plugins.md``):

- encoder: ``Class(shape=(C, H, W), latent_dim=D, width=w, **kwargs)``, an ``nn.Module`` whose
  forward maps x (B, C, H, W) to a ``Posterior`` or a pair (mu, logvar), each (B, D); for
  ``model.beta_conditioned`` also ``feature_dim`` (F) and ``forward(x, modulate=None)``, applying
  ``modulate`` to its (B, F) features before the (mu, logvar) head;
- decoder: the same constructor; forward maps z (B, D) to unconstrained pixel parameters
  (B, C, H, W) (logits for a Bernoulli, pre-sigmoid means for a Gaussian), float32;
- prior: ``Class(latent_dim=D, **kwargs)`` with ``log_prob(z)`` (..., D) -> (...),
  ``sample(n, device=, generator=)`` -> (n, D), and optionally ``kl(mu, logvar)`` (B, D) -> (B, D).

:func:`probe_model` is what ``vaesearch validate`` (``search/runnable.py``) runs for every model
with a plug-in, before Ray starts: a wrong shape, a wrong dtype, a non-finite value or an exception
in forward is a :class:`~trainables.registry.PluginError` naming the plug-in, the expected and the
actual value. The built-ins are not probed (their tests cover every shape).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainables.registry import Plugin, PluginError
from trainables.vae import VAE, VAEConfig, build_vae

PROBE_BATCH = 4  # > 1: a plug-in with BatchNorm trains in batch mode


def _run(what: str, call: Callable[[], Any], inputs: str) -> Any:
    try:
        return call()
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: any exception is its error
        raise PluginError(f"{what}: forward raised {type(exc).__name__}: {exc} (on {inputs})") from None


def check_tensor(what: str, value: Any, expected: tuple[int, ...], meaning: str) -> torch.Tensor:
    """``value`` is a finite float32 tensor of shape ``expected``; else a PluginError saying so."""
    if not isinstance(value, torch.Tensor):
        raise PluginError(f"{what}: returned a {type(value).__name__}; expected a tensor of shape {expected} {meaning}")
    if tuple(value.shape) != expected:
        raise PluginError(f"{what}: returned shape {tuple(value.shape)}; expected {expected} {meaning}")
    if value.dtype != torch.float32:
        raise PluginError(f"{what}: returned dtype {value.dtype}; expected torch.float32 (the data's dtype)")
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise PluginError(f"{what}: returned {bad} non-finite value(s) (NaN or inf) of {value.numel()} "
                          f"at initialisation; expected finite values")
    return value


def probe_model(config: VAEConfig, batch: int = PROBE_BATCH) -> None:
    """Build ``config``'s VAE on the CPU and run each plug-in once on a batch of the data's shape."""
    plugins = {id(p) for p in (config.encoder, config.decoder, config.prior) if isinstance(p, Plugin)}
    if not plugins:
        return
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = build_vae(config)  # constructor errors: PluginError from Plugin.build
    model.train()
    with torch.no_grad():
        _probe(model, config, batch)


def _probe(model: VAE, config: VAEConfig, batch: int) -> None:
    (c, h, w), d = config.shape, config.latent_dim
    x = torch.rand(batch, c, h, w)                                    # (B, C, H, W) in [0, 1]
    if isinstance(config.encoder, Plugin):
        what = config.encoder.describe("encoder")
        posterior = _run(what, lambda: model.encoder(x), f"x of shape {tuple(x.shape)}")
        check_tensor(f"{what} (mu)", posterior.mu, (batch, d), "= (batch, latent_dim)")
        check_tensor(f"{what} (logvar)", posterior.logvar, (batch, d), "= (batch, latent_dim)")
        if config.beta_conditioned is not None:   # through the model's FiLM: modulate reaches the plug-in
            posterior = _run(what, lambda: model.encode(x), f"x of shape {tuple(x.shape)} with modulate (β-conditioned)")
            check_tensor(f"{what} (mu, β-conditioned)", posterior.mu, (batch, d), "= (batch, latent_dim)")
    z = torch.randn(batch, d)                                          # (B, D)
    if isinstance(config.decoder, Plugin):
        what = config.decoder.describe("decoder")
        params = _run(what, lambda: model.decoder(z), f"z of shape {tuple(z.shape)}")
        check_tensor(what, params, (batch, c, h, w), "= (batch, C, H, W) for the data's images")
    if isinstance(config.prior, Plugin):
        what = config.prior.describe("prior")
        inner = getattr(model.prior, "inner", model.prior)   # PluginPrior wraps the user's module
        if callable(getattr(inner, "kl", None)):   # optional: the analytic KL per dimension
            mu, logvar = torch.zeros(batch, d), torch.zeros(batch, d)
            check_tensor(f"{what} kl", _run(what, lambda: inner.kl(mu, logvar), f"mu, logvar of shape {(batch, d)}"),
                         (batch, d), "= (batch, latent_dim)")
        check_tensor(f"{what} log_prob", _run(what, lambda: model.prior.log_prob(z), f"z of shape {(batch, d)}"),
                     (batch,), "= (batch,)")
        check_tensor(f"{what} sample", _run(what, lambda: model.prior.sample(batch), f"n={batch}"),
                     (batch, d), "= (n, latent_dim)")
