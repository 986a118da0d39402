"""Plug-in modules written under a test's tmp_path (never into the working tree), each under a
name of its own so that no two tests share an imported module."""
from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

_COUNTER = itertools.count()

#: Decoders (and an encoder, a prior) following the protocol of docs/plugins.md, and ways to break it.
PLUGINS = '''
import time

import torch
from torch import nn

IMPORTED = True


class TinyDecoder(nn.Module):
    """``delay``: seconds each training step sleeps (a trial that lasts long enough to need a second node)."""

    def __init__(self, shape, latent_dim, width=1.0, hidden=16, delay=0.0):
        super().__init__()
        c, h, w = shape
        self.shape = tuple(shape)
        self.delay = delay
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, c * h * w))

    def forward(self, z):
        if self.delay and self.training:
            time.sleep(self.delay)
        return self.net(z).view(z.shape[0], *self.shape)


class WrongShape(TinyDecoder):
    def forward(self, z):
        return super().forward(z)[..., 1:, 1:]


class Float64(TinyDecoder):
    def forward(self, z):
        return super().forward(z).double()


class NaNOutput(TinyDecoder):
    def forward(self, z):
        return super().forward(z) * float("nan")


class Raises(TinyDecoder):
    def forward(self, z):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


class ConstructorRaises(nn.Module):
    def __init__(self, shape, latent_dim, width=1.0):
        super().__init__()
        raise ValueError("blocks must be >= 1")


class NotAModule:
    def __init__(self, shape, latent_dim, width=1.0):
        pass


class TinyEncoder(nn.Module):
    def __init__(self, shape, latent_dim, width=1.0):
        super().__init__()
        c, h, w = shape
        self.net = nn.Linear(c * h * w, 2 * latent_dim)

    def forward(self, x):
        return tuple(self.net(x.flatten(1)).chunk(2, dim=-1))


class ModulatedEncoder(nn.Module):
    """A plug-in encoder that takes part in β-conditioning: ``feature_dim`` and ``forward(x, modulate=None)``.
    ``wrong``: declares one feature more than it has (the FiLM's shapes then do not match)."""

    def __init__(self, shape, latent_dim, width=1.0, hidden=16, wrong=False):
        super().__init__()
        c, h, w = shape
        self.feature_dim = hidden + (1 if wrong else 0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x, modulate=None):
        h = self.body(x)
        if modulate is not None:
            h = modulate(h)
        return tuple(self.head(h).chunk(2, dim=-1))


class LaplacePrior(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z):
        return (-z.abs() - torch.log(torch.tensor(2.0))).sum(-1)

    def sample(self, n, device="cpu", generator=None):
        return torch.distributions.Laplace(0.0, 1.0).sample((n, self.latent_dim)).to(device)

    def kl(self, mu, logvar):
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return -0.5 * (1 + logvar) - (-z.abs() - torch.log(torch.tensor(2.0)))
'''


def write_module(directory: Path, source: str = PLUGINS, stem: str = "plugs") -> str:
    """Write ``source`` as a module of a fresh name in ``directory``; returns the module name."""
    name = f"{stem}_{next(_COUNTER)}_{id(directory) % 10_000}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def forget(directory: Path) -> None:
    """Undo what importing modules from ``directory`` left in this process."""
    for key, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(directory)):
            del sys.modules[key]
    while str(directory) in sys.path:
        sys.path.remove(str(directory))
