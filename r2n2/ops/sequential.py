"""A sequential detector of the deployed process: a one-sided CUSUM on the loss differential against the naive
benchmark, with its threshold calibrated to an average run length (ARL) under no change.

The monitored stream is d_t = loss_model_t - loss_benchmark_t (price cases: the model's squared error minus the
random walk's; texts: the model's 0/1 error minus a baseline's). It is standardised by the reference
(validation-period) mean and standard deviation, z_t = (d_t - mean) / scale, and fed to Page's (1954) upper CUSUM

    S_0 = 0,   S_t = max(0, S_{t-1} + z_t - k),   alarm at the first t with S_t > h.

``k`` (the allowance, in reference standard deviations) is the classic half of the shift the chart is tuned for:
k = 0.5 targets a one-standard-deviation rise of the differential, i.e. the model getting worse against the
benchmark. Only that side is watched: a model that gets better than the random walk is no alarm.

The threshold ``h`` is the smallest value whose ARL under no change is at least ``arl0`` steps (default 1,000
trading days: about 0.25 false alarms a year, since after an alarm and a restart the alarms of a renewal process
come at rate 1 / ARL). Squared-error differentials are fat-tailed and cluster with volatility, so no normal-theory
ARL table applies; the ARL is estimated by simulation from the reference itself:

1. The in-control stream is a stationary block bootstrap of the reference differential (Politis & Romano 1994),
   with the expected block length of Politis & White (2004, corrected by Patton, Politis & White 2009): both are
   ``arch.bootstrap.StationaryBootstrap`` and ``arch.bootstrap.optimal_block_length``. A stream longer than the
   reference is a concatenation of independent bootstrap replicates (a join is one more block break).
2. Estimation error is part of the null: each simulated chart standardises its stream with the mean and scale of
   its own bootstrap replicate of the reference, not the reference's, because the deployed chart's mean and scale
   are estimates from one short validation period, and a mean that came out low makes every later step look like
   a rise. This is the unconditional in-control ARL of an estimated-parameter chart; calibrating it by
   resampling the reference follows Gandy & Kvaløy (2013, Scand. J. Statist. 40, 647-668) and Chatterjee & Qiu
   (2009, Ann. Appl. Statist. 3, 349-369), here with a block bootstrap for dependent data.
3. Each simulated chart runs ``horizon`` steps (default 3 x arl0) and restarts at 0 after each alarm, as the
   deployed chart is restarted after an investigated alarm; ARL(h) = (simulated steps) / (alarms), the inverse
   of the false-alarm rate per step that "0.25 false alarms a year" states. Pooling alarms (not first passages)
   matters: a chart whose estimated mean came out low alarms again and again, and its share of the rate is what a
   user sees. ARL(h) grows with h; h is found on three nested grids of 24 thresholds, all run in one vectorised
   pass over time each. Cost: n_boot x horizon cells (bounded by ``_MAX_CELLS``); seeded, so the same reference
   and seed give the same h.
4. Standardised steps are winsorised at +-``clip`` (default 3) before they are accumulated, a robust CUSUM in
   the sense of Lucas & Crosier (1982, Commun. Statist. Theory Meth. 11, 2669-2687): a bootstrap of a short
   reference cannot draw a value beyond the reference's largest, while a live Student-t stream does, and one such
   step would alarm at once. Measured on calm GARCH-t markets (500-day reference), clipping at 3 raised the
   realised ARL from ~270 to ~460 steps; a sustained rise still accumulates (docs/operations_power.md).

What is still off, measured: the calibration assumes the reference shows the process's range. With a 1,000-day
reference the realised calm ARL was 650-1,400 steps over 10 seeds (30 seeds: ~830), with 500 days 420-580, below
the 1,000 target; a longer reference (3,000 days) met it. ``scaled_differential`` (the differential over the
benchmark's trailing loss) helps on short references.

Written here, and why: the CUSUM recursion, the pooled ARL estimate and the threshold search are a few lines of numpy.
No maintained Python library ships an ARL-calibrated CUSUM: river's and CapyMOA's ``PageHinkley`` take a fixed
threshold (``threshold``/``lambda_``, 50 by default) with no run-length calibration, and R's ``spcadjust``
(Gandy & Kvaløy) calibrates with an iid or parametric bootstrap, which ignores volatility clustering.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["Cusum", "CusumResult", "bernoulli_cusum", "bernoulli_path", "cusum_path", "fit_cusum",
           "scaled_differential"]

MIN_REFERENCE = 60  # fewer validation steps hold too few blocks to bootstrap a dependent series
_MAX_CELLS = 20_000_000  # n_boot x horizon simulated steps (8 bytes each, a few arrays): ~0.5 GB at worst


def cusum_path(z: np.ndarray, k: float) -> np.ndarray:
    """Page's upper CUSUM S_t = max(0, S_{t-1} + z_t - k), S_0 = 0, along the last axis, without a Python loop:
    with W_t = sum_{s<=t} (z_s - k), S_t = W_t - min(0, min_{s<=t} W_s). ``z`` (..., T) -> S (..., T)."""
    w = np.cumsum(z - k, axis=-1)
    return w - np.minimum(np.minimum.accumulate(w, axis=-1), 0.0)


def _as_diff(values, *, what: str) -> np.ndarray:
    try:
        d = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"The {what} must be numbers (loss of the model minus loss of the benchmark).") from None
    if d.ndim != 1:
        raise DataError(f"The {what} must be one-dimensional, one value per step; got shape {d.shape}.")
    bad = np.flatnonzero(~np.isfinite(d))
    if bad.size:
        raise DataError(f"The {what} holds {bad.size} missing or infinite values (first at step {bad[0]}); "
                        "drop the steps whose loss is not known yet.")
    return d


def scaled_differential(loss, benchmark_loss, *, lam: float = 0.94) -> np.ndarray:
    """Price cases: d_t = (loss_t - benchmark_loss_t) / v_{t-1}, where v_{t-1} is the RiskMetrics EWMA
    (``lam`` = 0.94) of the benchmark's loss up to the day before (for the random walk, y^2: the market's
    variance). Squared-error differentials scale with the market's variance, so a raw chart alarms on a volatile
    year it never saw in its reference; measured on calm GARCH-t markets (docs/operations_power.md) this scaling
    cut calm false alarms by about a third. Pass the whole stream (reference and live together) so v is continuous;
    v starts at the mean of the first 20 benchmark losses. Not for 0/1 losses (texts), whose spread is bounded."""
    loss = _as_diff(loss, what="model loss")
    bench = _as_diff(benchmark_loss, what="benchmark loss")
    if loss.shape != bench.shape:
        raise DataError(f"The model's losses ({len(loss)}) and the benchmark's ({len(bench)}) must pair step by step.")
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"lam must lie strictly between 0 and 1, got {lam!r}.")
    from scipy.signal import lfilter

    v0 = float(bench[:20].mean()) if bench.size else 0.0
    # v_t = lam v_{t-1} + (1 - lam) b_t, v_{-1} = v0; the divisor of step t is v_{t-1}
    v, _ = lfilter([1.0 - lam], [1.0, -lam], bench, zi=[lam * v0])
    prev = np.concatenate([[v0], v[:-1]])
    if np.any(prev <= 0):
        raise DataError("The benchmark's trailing loss is 0 at some step (a flat price series?), so the "
                        "differential cannot be scaled by it; pass the raw differential instead.")
    return (loss - bench) / prev


@dataclass(frozen=True)
class CusumResult:
    """One pass of the chart over a stream (see ``Cusum.run``)."""

    statistic: np.ndarray = field(repr=False)  # (T,) S_t after each step
    alarm: int | None       # 0-based index of the first step with S_t > h, or None
    last: float             # S_T, the statistic after the last step (0.0 for an empty stream)
    h: float                # the threshold it was compared with
    n: int                  # steps in the stream

    @property
    def alarmed(self) -> bool:
        return self.alarm is not None

    def to_dict(self) -> dict:
        """JSON-ready summary (the path itself is left out; it is ``n`` floats)."""
        return {"alarm": self.alarm, "last": self.last, "h": self.h, "n": self.n,
                "max": float(self.statistic.max()) if self.n else 0.0}


@dataclass(frozen=True)
class Cusum:
    """A fitted one-sided CUSUM on a loss differential (build it with ``fit_cusum``)."""

    mean: float          # reference mean of the differential (the in-control level)
    scale: float         # reference standard deviation of the differential (ddof=1)
    k: float             # allowance, in reference standard deviations (0.5: tuned for a 1-sd rise)
    clip: float          # standardised steps are winsorised at +-clip (inf: not at all), so one outlier cannot alarm
    h: float             # alarm threshold on S_t, in reference standard deviations
    arl0: float          # target in-control average run length (steps) that h was calibrated for
    arl: float           # the bootstrap estimate of the in-control ARL at h (>= arl0)
    block: float         # expected block length of the stationary bootstrap (Politis-White, on d and |d - mean|)
    n_ref: int           # steps in the reference differential
    n_boot: int          # simulated charts
    horizon: int         # steps each simulated chart ran (restarted after each alarm)
    seed: int            # seed of the bootstrap

    def standardise(self, diff) -> np.ndarray:
        """(d - mean) / scale, winsorised at +-clip: the increments the chart accumulates."""
        z = (_as_diff(diff, what="loss differential") - self.mean) / self.scale
        return np.clip(z, -self.clip, self.clip)

    def run(self, diff) -> CusumResult:
        """Feed a whole stream (e.g. the deployed process's live differential since the chart was fitted, across
        promotions) from S_0 = 0; returns the path, the first alarm and the statistic at the end. O(T), so a
        monitor can rerun it from the start at every check."""
        s = cusum_path(self.standardise(diff), self.k)
        over = np.flatnonzero(s > self.h)
        return CusumResult(statistic=s, alarm=int(over[0]) if over.size else None,
                           last=float(s[-1]) if s.size else 0.0, h=self.h, n=int(s.size))

    def count_alarms(self, diff) -> int:
        """Alarms over a stream when the chart restarts at 0 after each (the rate the ARL is calibrated for)."""
        d = np.asarray(diff, dtype=float)
        pos, count = 0, 0
        while pos < len(d):
            r = self.run(d[pos:])
            if r.alarm is None:
                break
            count, pos = count + 1, pos + r.alarm + 1
        return count

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Cusum":
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(d) - names), sorted(names - set(d))
        if unknown or missing:
            raise ConfigError(f"A CUSUM record must have exactly the keys {sorted(names)}; "
                              f"unknown {unknown}, missing {missing}.")
        ints = {"n_ref", "n_boot", "horizon", "seed"}
        return cls(**{k: (int(v) if k in ints else float(v)) for k, v in d.items()})


def _block_length(x: np.ndarray) -> float:
    from arch.bootstrap import optimal_block_length

    dev = x - x.mean()
    b = float(optimal_block_length(np.column_stack([dev, np.abs(dev)]))["stationary"].max())
    # the larger of the lengths for d and for |d - mean|: the chart's run length depends on volatility clustering
    # (dependence in the spread), which the lengths for d alone miss (measured: 1.6 vs 5.4 days on GARCH-t).
    # A near-iid series gives b < 1, a trending one a block near its length: keep it between 1 and n/4
    return float(min(max(b, 1.0), len(x) / 4)) if math.isfinite(b) else 1.0


def _simulate_streams(d: np.ndarray, *, block: float, n_boot: int, horizon: int, seed: int,
                      estimation_error: bool, clip: float) -> np.ndarray:
    """(n_boot, horizon) standardised bootstrap in-control streams, each standardised by its own bootstrap
    reference's mean and scale (or by the reference's when ``estimation_error`` is False)."""
    from arch.bootstrap import StationaryBootstrap

    n = len(d)
    pieces = -(-horizon // n)  # replicates of length n per stream
    draws = n_boot * (pieces + (1 if estimation_error else 0))
    bs = StationaryBootstrap(block, d, seed=np.random.default_rng(seed))
    reps = np.empty((draws, n))
    for i, (data, _) in enumerate(bs.bootstrap(draws)):
        reps[i] = data[0]
    if estimation_error:
        refs, streams = reps[:n_boot], reps[n_boot:]
        mean, scale = refs.mean(1, keepdims=True), refs.std(1, ddof=1, keepdims=True)
        scale = np.where(scale > 0, scale, d.std(ddof=1))  # a constant replicate of a non-constant reference
    else:
        streams, mean, scale = reps, d.mean(), d.std(ddof=1)
    z = streams.reshape(n_boot, pieces * n)[:, :horizon]  # (n_boot * pieces, n) -> (n_boot, horizon)
    return np.clip((z - mean) / scale, -clip, clip)


def _alarm_counts(z: np.ndarray, k: float, hs: np.ndarray) -> np.ndarray:
    """Alarms of the chart restarted at 0 after each alarm, for each threshold in ``hs`` at once:
    z (n_boot, T), hs (G,) -> counts (G, n_boot). One pass over time, vectorised over thresholds and charts."""
    s = np.zeros((len(hs), z.shape[0]))
    count = np.zeros_like(s)
    h = hs[:, None]
    for t in range(z.shape[1]):
        s = np.maximum(s + (z[:, t] - k), 0.0)  # (G, n_boot)
        hit = s > h
        count += hit
        s[hit] = 0.0
    return count


def _threshold(z: np.ndarray, k: float, arl0: float) -> tuple[float, float]:
    """(h, its simulated ARL): the smallest threshold on three nested grids whose pooled ARL over the simulated
    in-control streams ``z`` (n, T), restarted after each alarm, is at least ``arl0``."""
    steps = z.size
    lo, hi = 0.0, float(cusum_path(z, k).max())  # at hi no simulated chart alarms
    for _ in range(3):  # three grids of 24 thresholds, each inside the bracket the last one found
        hs = np.linspace(lo, hi, 26)[1:-1]
        arls = steps / np.maximum(_alarm_counts(z, k, hs).sum(1), 1e-300)  # ARL(h) grows with h
        ok = np.flatnonzero(arls >= arl0)
        if ok.size:
            hi = float(hs[ok[0]])
        lo = float(hs[ok[0] - 1]) if ok.size and ok[0] > 0 else (lo if ok.size else float(hs[-1]))
    alarms = float(_alarm_counts(z, k, np.array([hi])).sum())
    return hi, (steps / alarms if alarms else float(steps))  # no alarm in the simulation: at least this long


@lru_cache(maxsize=16)
def bernoulli_cusum(p0: float, p1: float, *, arl0: float = 1000.0, n_boot: int = 2000, seed: int = 0) -> dict:
    """A Bernoulli CUSUM (Reynolds & Stoumbos 1999) for a rate of events rising from ``p0`` to ``p1``, e.g.
    Value-at-Risk exceedances at a 5 % level doubling: the log-likelihood ratio increments log(p1 / p0) on an
    event and log((1 - p1) / (1 - p0)) otherwise, S_t = max(0, S_{t-1} + increment), alarm when S_t > h. ``h``
    is calibrated like ``fit_cusum``'s, on ``n_boot`` simulated in-control streams of 3 x arl0 iid Bernoulli(p0)
    events (exact here: the in-control law is known). Returns {"p0", "p1", "h", "arl", "up", "down", "arl0", "n_boot"}."""
    if not (0 < p0 < p1 < 1):
        raise ConfigError(f"a Bernoulli CUSUM needs 0 < p0 < p1 < 1, got p0={p0!r}, p1={p1!r}.")
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    rng = np.random.default_rng(seed)
    z = np.where(rng.random((n_boot, int(3 * arl0))) < p0, up, down)
    h, arl = _threshold(z, 0.0, arl0)
    return {"p0": p0, "p1": p1, "h": h, "arl": arl, "up": up, "down": down, "arl0": float(arl0), "n_boot": n_boot}


def bernoulli_path(events, chart: dict) -> np.ndarray:
    """The Bernoulli CUSUM statistic after each event of a 0/1 stream (no restart)."""
    e = np.asarray(events, bool).reshape(-1)
    return cusum_path(np.where(e, chart["up"], chart["down"])[None, :], 0.0)[0] if len(e) else np.zeros(0)


def fit_cusum(reference_diff, *, arl0: float = 1000.0, k: float = 0.5, clip: float = 3.0, n_boot: int = 400,
              horizon: int | None = None, seed: int = 0, estimation_error: bool = True) -> Cusum:
    """Fit the chart on the reference (validation-period) loss differential and calibrate h for ``arl0``.

    ``n_boot`` simulated charts of ``horizon`` steps (default 3 x arl0) from a stationary block bootstrap of the
    reference, restarted after each alarm; ``estimation_error`` (default on) gives each simulated chart its own
    bootstrap estimate of mean and scale; ``clip`` winsorises standardised steps (see the module docstring)."""
    if not (isinstance(arl0, (int, float)) and math.isfinite(arl0) and arl0 >= 10):
        raise ConfigError(f"arl0 must be a finite number of steps >= 10, got {arl0!r}.")
    if not (isinstance(k, (int, float)) and math.isfinite(k) and k >= 0):
        raise ConfigError(f"The CUSUM allowance k must be a finite number >= 0, got {k!r}.")
    if not (isinstance(clip, (int, float)) and clip > k):  # inf allowed: no winsorising
        raise ConfigError(f"clip must be a number of standard deviations above k ({k:g}), got {clip!r}.")
    if not (isinstance(n_boot, int) and n_boot >= 50):
        raise ConfigError(f"n_boot must be an integer >= 50 simulated charts, got {n_boot!r}.")
    horizon = int(3 * arl0) if horizon is None else horizon
    if not (isinstance(horizon, int) and horizon >= arl0):
        raise ConfigError(f"horizon must be an integer number of steps >= arl0 ({arl0:g}), got {horizon!r}.")
    if n_boot * horizon > _MAX_CELLS:
        raise ConfigError(f"n_boot x horizon = {n_boot * horizon:,} simulated steps exceeds the bound of "
                          f"{_MAX_CELLS:,}; lower n_boot or horizon.")
    d = _as_diff(reference_diff, what="reference loss differential")
    if len(d) < MIN_REFERENCE:
        raise DataError(f"The reference loss differential has {len(d)} steps; calibrating the CUSUM needs at "
                        f"least {MIN_REFERENCE} (a validation period of about three months).")
    scale = float(d.std(ddof=1))
    if not scale > 0:
        raise DataError(f"The reference loss differential is constant ({d[0]:g} at every step), so it has no "
                        "spread to standardise by; is the model's loss identical to the benchmark's?")
    block = _block_length(d)
    z = _simulate_streams(d, block=block, n_boot=n_boot, horizon=horizon, seed=seed,
                          estimation_error=estimation_error, clip=float(clip))
    hi, arl = _threshold(z, k, arl0)
    return Cusum(mean=float(d.mean()), scale=scale, k=float(k), clip=float(clip), h=float(hi), arl0=float(arl0), arl=arl,
                 block=block, n_ref=int(len(d)), n_boot=n_boot, horizon=horizon, seed=seed)
