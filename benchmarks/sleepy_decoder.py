"""A plug-in decoder whose training steps last a set time, for benchmarks of the live system.

``SleepyDecoder(shape, latent_dim, delay=s)`` sleeps ``s`` seconds in each training forward and is
otherwise a one-hidden-layer MLP: a trial's length is set by ``delay`` (epochs × steps × delay),
not by the machine's cores, so 8 concurrent trials on a 2-core machine behave like 8 trials on
8 GPUs whose time the driver must keep busy. Named in a config as
``{path: benchmarks.sleepy_decoder:SleepyDecoder, kwargs: {delay: 0.1}}``.
"""
from __future__ import annotations

import time

from torch import nn


class SleepyDecoder(nn.Module):
    def __init__(self, shape, latent_dim, width=1.0, hidden=32, delay=0.0):
        super().__init__()
        c, h, w = shape
        self.shape = tuple(shape)
        self.delay = float(delay)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, c * h * w))

    def forward(self, z):
        if self.delay and self.training:
            time.sleep(self.delay)
        return self.net(z).view(z.shape[0], *self.shape)
