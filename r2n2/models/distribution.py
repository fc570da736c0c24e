"""Distribution heads and their losses: ``model.distribution`` quantile | student_t.

The head's raw outputs (..., out, P) become a distribution here, so ``RelationalRNN`` keeps one linear head:

- quantile: P = len(quantiles) levels, non-crossing by construction — the median is free, and the levels
  either side are the median plus (minus) cumulative softplus increments, so q_1 <= q_2 <= ... <= q_K for any
  input. Loss: the pinball (quantile) loss averaged over levels (Koenker & Bassett 1978).
- student_t: P = 3, (location, softplus scale, softplus + 2 degrees of freedom: a finite variance). Loss: the
  negative log-likelihood (``torch.distributions.StudentT``).

The point forecast is the median (quantile) or the location (student_t).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["MIN_SCALE", "distribution_loss", "distribution_transform", "init_head_bias", "pinball_loss", "point_of",
           "quantile_transform", "student_t_nll", "student_t_transform"]

MIN_SCALE = 1e-4  # floor of the Student-t scale (targets are standardised): keeps the NLL finite


def _median_index(quantiles) -> int:
    return list(quantiles).index(0.5)


def quantile_transform(raw: torch.Tensor, quantiles) -> torch.Tensor:
    """(..., K) raw outputs -> (..., K) strictly increasing quantiles at ``quantiles`` (which hold 0.5)."""
    m = _median_index(quantiles)
    median = raw[..., m:m + 1]                                        # (..., 1)
    up = median + torch.cumsum(F.softplus(raw[..., m + 1:]), dim=-1)  # (..., K - m - 1), increasing
    down = median - torch.cumsum(F.softplus(raw[..., :m].flip(-1)), dim=-1).flip(-1)  # (..., m), increasing
    return torch.cat([down, median, up], dim=-1)


def student_t_transform(raw: torch.Tensor) -> torch.Tensor:
    """(..., 3) raw outputs -> (..., 3) (location, scale > 0, degrees of freedom > 2)."""
    loc = raw[..., 0]
    scale = F.softplus(raw[..., 1]) + MIN_SCALE
    df = F.softplus(raw[..., 2]) + 2.0
    return torch.stack([loc, scale, df], dim=-1)


def distribution_transform(raw: torch.Tensor, config) -> torch.Tensor:
    """The head's raw (..., out, P) -> the distribution's (..., out, P) parameters or quantiles."""
    if config.distribution == "quantile":
        return quantile_transform(raw, config.quantiles)
    if config.distribution == "student_t":
        return student_t_transform(raw)
    return raw


def point_of(dist: torch.Tensor, config) -> torch.Tensor:
    """(..., out, P) distribution -> (..., out) point forecast: the median or the Student-t location."""
    if config.distribution == "quantile":
        return dist[..., _median_index(config.quantiles)]
    return dist[..., 0]


def pinball_loss(q: torch.Tensor, y: torch.Tensor, quantiles) -> torch.Tensor:
    """Mean pinball loss: q (..., K) quantiles at ``quantiles``, y (...) targets; averaged over levels and
    examples. rho_tau(u) = max(tau u, (tau - 1) u) with u = y - q."""
    tau = torch.as_tensor(quantiles, dtype=q.dtype, device=q.device)  # (K,)
    u = y.unsqueeze(-1) - q                                           # (..., K)
    return torch.maximum(tau * u, (tau - 1) * u).mean()


def student_t_nll(params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of y (...) under Student-t params (..., 3) = (location, scale, dof)."""
    dist = torch.distributions.StudentT(params[..., 2], params[..., 0], params[..., 1])
    return -dist.log_prob(y).mean()


def distribution_loss(dist: torch.Tensor, y: torch.Tensor, config) -> torch.Tensor:
    """The training loss of a distribution head: dist (B, [E,] out, P), y (B, [E,] out) or (B, [E])."""
    y = y.reshape(dist.shape[:-1])
    if config.distribution == "quantile":
        return pinball_loss(dist, y, config.quantiles)
    return student_t_nll(dist, y)


def init_head_bias(bias: torch.Tensor, config) -> None:
    """Start the head near a standard normal (targets are standardised): quantile increments at the normal's
    gaps, Student-t scale 1 and 5 degrees of freedom. ``bias`` is the head's (out * P,) bias."""
    from statistics import NormalDist

    with torch.no_grad():
        b = bias.view(config.output_size, config.head_params)  # (out * P,) -> (out, P)
        if config.distribution == "quantile":
            z = [NormalDist().inv_cdf(q) for q in config.quantiles]
            m = _median_index(config.quantiles)
            gaps = [abs(z[k] - z[k + 1 if k < m else k - 1]) if k != m else 0.0 for k in range(len(z))]
            b.copy_(torch.tensor([0.0 if k == m else math.log(math.expm1(g)) for k, g in enumerate(gaps)]))
        elif config.distribution == "student_t":
            b.copy_(torch.tensor([0.0, math.log(math.expm1(1.0 - MIN_SCALE)), math.log(math.expm1(3.0))]))
