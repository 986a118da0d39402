"""Reported metrics: negative ELBO, rate, distortion, active units, ELBO surgery, importance-sampled NLL.

Implements the evaluation protocol of Burda et al. 2015 ("Importance Weighted Autoencoders"):
log p(x) estimated with k = 5000 importance samples from q(z|x), and a latent unit i counted
as active when Cov_x(E_q[z_i]) > 0.01. ELBO surgery (Hoffman & Johnson 2016): the mean rate is
I_q(x; z) + KL(q(z) ‖ p(z)); the mutual information is estimated as in He et al. 2019
("Lagging Inference Networks", ``calc_mi``) over the N evaluation examples, see
:func:`mutual_information`.

Conventions (DESIGN.md "Metric conventions"): nats per example, summed over the dimensions of
x, averaged over examples. Averages are exact over the whole data tensor (sums accumulated in
float64 and divided once), not means of batch means.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from trainables.gaussian import diag_gaussian_log_prob, reparameterize
from trainables.model_protocol import VAEModel
from trainables.objectives import log_importance_weights

__all__ = [
    "REPORTED_PREFIXES",
    "EvalResult",
    "active_units",
    "evaluate",
    "importance_sampled_log_likelihood",
    "importance_sampled_nll",
    "mutual_information",
]

#: At most this many evaluation examples enter the mutual-information estimate (an N×N matrix of
#: log-densities, O(N²·D): 4096² · 32 ≈ 0.5 G multiply-adds, about a second on a CPU core). The
#: estimate cannot exceed log N (8.3 nats at 4096; 6.2 nats for mnist5k's 500 validation images).
MI_MAX_EXAMPLES = 4096
_MI_CHUNK = 512  # rows of the N×N matrix at a time (memory O(chunk·N·D))


#: The namespaces of every metric a trainable reports (``ray_trainables``: the ELBO terms here,
#: ``train_loop.EpochStats``, the shared-encoder loop's ``head/``, ``regret/``, ``bandit/``, the
#: β-conditioned curve's ``rd/``). What the driver logs to MLflow as metrics; Tune's own result keys
#: and the step keys are not in them.
REPORTED_PREFIXES = ("train/", "val/", "test/", "time/", "head/", "regret/", "bandit/", "rd/")


@dataclass
class EvalResult:
    """ELBO metrics of one data tensor, in nats per example."""

    nelbo: float  # distortion + rate: the negative ELBO at β = 1
    rate: float
    distortion: float
    active_units: int
    n_examples: int
    mi: float = 0.0  # I_q(x; z) estimated over the first mi_examples examples (≤ log mi_examples)
    marginal_kl: float = 0.0  # KL(q(z) ‖ p(z)) = the rate of those examples − mi
    mi_examples: int = 0

    def as_metrics(self, prefix: str = "val") -> dict[str, float]:
        return {
            f"{prefix}/nelbo": self.nelbo,
            f"{prefix}/rate": self.rate,
            f"{prefix}/distortion": self.distortion,
            f"{prefix}/active_units": float(self.active_units),
            f"{prefix}/mi": self.mi,
            f"{prefix}/marginal_kl": self.marginal_kl,
        }


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {name}={value!r}")


def _check_data(data: torch.Tensor) -> None:
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"data must be (N, ...) with N >= 1, got shape {tuple(data.shape)}")


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dims whose posterior mean varies over x: Var_x(E_q[z_i]) > threshold.

    mu: (N, D) posterior means of N examples. The population variance is used so that a
    single example gives 0 active units rather than NaN.
    """
    if mu.ndim != 2:
        raise ValueError(f"mu must be (N, D), got shape {tuple(mu.shape)}")
    variance = mu.to(torch.float64).var(dim=0, correction=0)  # (D,)
    return int((variance > threshold).sum().item())


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> float:
    """I_q(x; z) of the aggregate posterior q(z) = (1/N) Σ_j q(z|x_j) over N examples
    (He et al. 2019, ``calc_mi``): mean_i [log q(z_i|x_i) − log q(z_i)] with one z_i ~ q(z|x_i) and
    log q(z_i) ≈ logsumexp_j log q(z_i|x_j) − log N.

    mu, logvar, z: (N, D). Unlike ``calc_mi``, E[log q(z|x)] uses the same z_i (not the analytic
    negative entropy), so the j = i term bounds every summand: the estimate is ≤ log N exactly, and
    exactly 0 when q(z|x) does not depend on x. It is biased low when the true I(x; z) approaches
    log N (the aggregate posterior is then known only through its N components): use large N.
    """
    if mu.ndim != 2 or mu.shape != logvar.shape or mu.shape != z.shape or mu.shape[0] < 1:
        raise ValueError(f"mu, logvar, z must be equal (N, D) with N >= 1, got {tuple(mu.shape)=}, "
                         f"{tuple(logvar.shape)=}, {tuple(z.shape)=}")
    mu, logvar, z = (t.to(torch.float64) for t in (mu, logvar, z))
    n = mu.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=mu.device)
    for start in range(0, n, _MI_CHUNK):
        zi = z[start : start + _MI_CHUNK]  # (c, D)
        log_q_all = diag_gaussian_log_prob(zi.unsqueeze(1), mu, logvar)  # (c, N): log q(z_i | x_j)
        own = log_q_all.diagonal(offset=start)  # (c,) log q(z_i | x_i)
        total += (own - torch.logsumexp(log_q_all, dim=1)).sum()
    return total.item() / n + math.log(n)


@contextmanager
def _global_rng_seeded_from(generator: torch.Generator | None) -> Iterator[None]:
    """Within the block the global RNGs are seeded from ``generator``; restored on exit.

    ``model(x)`` samples z from the global RNG (the protocol has no generator argument), so this
    is how a caller's generator makes evaluation reproducible without consuming its RNG stream.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    # Fork every accelerator device: torch.manual_seed reseeds all of them.
    n_devices = torch.accelerator.device_count() if torch.accelerator.is_available() else 0
    with torch.random.fork_rng(devices=range(n_devices)):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def evaluate(
    model: VAEModel,
    data: torch.Tensor,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> EvalResult:
    """Single-sample ELBO pieces over all of ``data`` (N, ...) in batches of ``batch_size``.

    ``model(x)`` draws its own z from the global RNG; when ``generator`` is given, the global
    RNG is forked and seeded from it so the result is reproducible and the global RNG stream
    (e.g. the training shuffle) is left untouched. Put the model in eval mode first (dropout,
    batch norm): this function does not change the model's state.
    """
    _check_positive(batch_size=batch_size)
    _check_data(data)
    n_examples = data.shape[0]
    distortion_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    rates: list[torch.Tensor] = []  # (b,) per example
    means: list[torch.Tensor] = []
    logvars: list[torch.Tensor] = []
    samples: list[torch.Tensor] = []  # one z ~ q(z|x) per example, for the mutual information

    with _global_rng_seeded_from(generator):
        for start in range(0, n_examples, batch_size):
            x = data[start : start + batch_size]
            pieces = model(x)
            # Sums, not batch means: a short last batch must not be over-weighted.
            distortion_sum -= pieces.log_px_z.to(torch.float64).sum()
            rates.append(pieces.kl_per_dim.to(torch.float64).sum(1))
            posterior = model.encode(x)
            means.append(posterior.mu)  # (b, D)
            if start < MI_MAX_EXAMPLES:
                logvars.append(posterior.logvar)
                samples.append(reparameterize(posterior.mu, posterior.logvar))

    distortion = distortion_sum.item() / n_examples
    per_example_rate = torch.cat(rates)  # (N,)
    rate = per_example_rate.sum().item() / n_examples
    mu = torch.cat(means)
    m = min(n_examples, MI_MAX_EXAMPLES)
    mi = mutual_information(mu[:m], torch.cat(logvars)[:m], torch.cat(samples)[:m])
    return EvalResult(
        nelbo=distortion + rate,
        rate=rate,
        distortion=distortion,
        active_units=active_units(mu),
        n_examples=n_examples,
        mi=mi,
        # The rate of the same examples the MI saw; not clamped: its noise is the estimators'.
        marginal_kl=per_example_rate[:m].mean().item() - mi,
        mi_examples=m,
    )


@torch.no_grad()
def importance_sampled_log_likelihood(
    model: VAEModel,
    x: torch.Tensor,
    k: int = 5000,
    chunk_size: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log p(x) ≈ log (1/k) Σ_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2015).

    The k samples are drawn ``chunk_size`` at a time and folded into a running log-sum-exp, so
    memory is O(chunk_size·B) whatever k is. x: (B, ...) -> (B,) float64.
    """
    _check_positive(k=k, chunk_size=chunk_size)
    _check_data(x)
    posterior = model.encode(x)  # once: q(z|x) does not change between chunks
    running = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)  # (B,)
    for start in range(0, k, chunk_size):
        n = min(chunk_size, k - start)
        log_w = log_importance_weights(model, x, n, posterior=posterior, generator=generator)
        # float64: the sum runs over thousands of weights whose logs are hundreds of nats.
        running = torch.logaddexp(running, torch.logsumexp(log_w.to(torch.float64), dim=0))
    return running - math.log(k)


@torch.no_grad()
def importance_sampled_nll(
    model: VAEModel,
    data: torch.Tensor,
    k: int = 5000,
    batch_size: int = 100,
    chunk_size: int = 500,
    generator: torch.Generator | None = None,
) -> float:
    """Mean over the examples of ``data`` (N, ...) of −log p(x), estimated with k samples each."""
    _check_positive(k=k, batch_size=batch_size, chunk_size=chunk_size)
    _check_data(data)
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        log_px = importance_sampled_log_likelihood(
            model, data[start : start + batch_size], k=k, chunk_size=chunk_size, generator=generator
        )
        total -= log_px.sum().item()
    return total / data.shape[0]
