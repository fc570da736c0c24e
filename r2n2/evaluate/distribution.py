"""Scoring forecast distributions given as quantiles: split-conformal calibration, CRPS, pinball loss, interval
coverage and width, a PIT histogram, Value-at-Risk backtests, and two risk-desk baselines of a daily return.

Every forecast is an (n, K) array of quantiles at increasing ``levels`` (a model's quantile head, or a
Student-t head's quantiles). From libraries: CRPS is ``scoringrules.crps_quantile`` (the pinball-integral
approximation 2/K sum_k pinball_k of Berrisch & Ziel 2023 on the forecast's own levels, so two forecasts are
compared on the same levels), GARCH(1,1)-t is ``arch``, the HAC standard error is statsmodels' (via
:func:`r2n2.evaluate.stats.hac_mean`). Written here because no well-kept library ships them in this form: the
CQR-style conformal adjustment (a few lines; mapie and crepes wrap their own regressors rather than adjust given
quantiles), adaptive conformal inference (Gibbs & Candès 2021: a few lines of online update; mapie's ACI needs its
own estimator, not given quantiles), the EWMA-normal (RiskMetrics) recursion, and the Kupiec / Christoffersen
backtests (neither arch nor statsmodels has them).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from .stats import comparison, degenerate, hac_mean, minimum_detectable_effect

__all__ = ["adaptive_conformal", "apply_offsets", "christoffersen", "empirical_quantiles", "ewma_normal_quantiles", "conformal_offsets", "coverage_table", "crps_comparison", "crps_quantile",
           "differential_test",
           "garch_family_quantiles", "historical_quantiles", "interval_pairs", "kupiec_pof", "pinball_per_level",
           "pinball_comparison", "pit_histogram", "score_quantiles", "student_t_quantiles", "var_backtests"]


def _key(x: float) -> str:
    return f"{round(float(x), 6):g}"


def interval_pairs(levels) -> list[tuple[int, int, float]]:
    """Central intervals the levels hold: (lower index, upper index, nominal coverage) for each tau < 0.5 with
    1 - tau also a level, widest first; e.g. 0.05 and 0.95 -> (i, j, 0.9)."""
    levels = [round(float(t), 9) for t in levels]
    out = []
    for i, t in enumerate(levels):
        if t < 0.5 and round(1 - t, 9) in levels:
            out.append((i, levels.index(round(1 - t, 9)), round(1 - 2 * t, 9)))
    return out


def conformal_offsets(q_val: np.ndarray, y_val: np.ndarray, levels) -> dict[str, float]:
    """Split-conformal (CQR, Romano, Patterson & Candès 2019) widening of each central interval, fitted on the
    calibration (validation) rows only: score s_i = max(lo_i - y_i, y_i - hi_i); the offset of a (1 - a)
    interval is the ceil((n + 1)(1 - a))-th smallest score (negative: the interval shrinks). Returns
    {nominal coverage: offset}; with exchangeable rows the adjusted interval covers >= 1 - a of new ones."""
    q_val, y_val = np.asarray(q_val, float), np.asarray(y_val, float).reshape(-1)
    if q_val.shape != (len(y_val), len(levels)):
        raise DataError(f"conformal calibration needs (n, {len(levels)}) quantiles for n = {len(y_val)} targets, "
                        f"got {q_val.shape}.")
    n = len(y_val)
    out = {}
    for lo, hi, cover in interval_pairs(levels):
        s = np.sort(np.maximum(q_val[:, lo] - y_val, y_val - q_val[:, hi]))  # (n,) conformity scores
        k = math.ceil((n + 1) * cover)
        out[_key(cover)] = float(s[k - 1]) if k <= n else float("inf")  # too few rows: an unbounded interval
    return out


def apply_offsets(q: np.ndarray, offsets: dict[str, float], levels) -> np.ndarray:
    """Move each interval's ends out by its offset, then sort each row (the rearrangement of Chernozhukov,
    Fernández-Val & Galichon 2010: never worse in pinball loss), so the adjusted quantiles cannot cross."""
    q = np.array(q, float)
    for lo, hi, cover in interval_pairs(levels):
        d = offsets.get(_key(cover))
        if d is not None:
            q[:, lo] -= d
            q[:, hi] += d
    return np.sort(q, axis=1)


def _scores(q: np.ndarray, y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.maximum(q[:, lo] - y, y - q[:, hi])  # CQR conformity: > 0 outside the interval


def adaptive_conformal(q: np.ndarray, y: np.ndarray, levels, q_cal: np.ndarray, y_cal: np.ndarray, *,
                       gamma: float = 0.005) -> tuple[np.ndarray, dict]:
    """Adaptive conformal inference (Gibbs & Candès 2021) of each central interval over a stream, in order:
    the interval of row t is widened by the (1 - alpha_t) empirical quantile of the conformity scores known
    before t (the calibration rows, then every earlier row of the stream), and alpha_{t+1} = alpha_t +
    gamma (alpha - miss_t), so after a volatility break the misses push alpha_t down until the coverage is back.
    alpha_t <= 0 takes the largest score known (the paper's whole line, kept finite so every score exists);
    alpha_t >= 1 the smallest. Returns the adjusted (n, K) quantiles (rearranged, never crossing; row t uses
    y only up to t - 1) and {nominal: {"alpha_end", "misses"}}."""
    q, y = np.asarray(q, float), np.asarray(y, float).reshape(-1)
    q_cal, y_cal = np.asarray(q_cal, float), np.asarray(y_cal, float).reshape(-1)
    if len(y_cal) == 0:
        raise DataError("adaptive conformal inference needs calibration rows (the validation period).")
    out, state = q.copy(), {}
    for lo, hi, cover in interval_pairs(levels):
        target = 1 - cover
        known = list(np.sort(_scores(q_cal, y_cal, lo, hi)))
        stream = _scores(q, y, lo, hi)
        alpha, misses = target, 0
        for t in range(len(y)):
            m = len(known)
            k = min(m, max(1, math.ceil((m + 1) * (1 - alpha))))  # the finite-sample conformal rank
            off = known[k - 1]
            out[t, lo], out[t, hi] = q[t, lo] - off, q[t, hi] + off
            miss = float(stream[t] > off)
            misses += int(miss)
            alpha += gamma * (target - miss)
            known.insert(int(np.searchsorted(known, stream[t])), stream[t])
        state[_key(cover)] = {"alpha_end": float(alpha), "misses": misses, "gamma": gamma}
    return np.sort(out, axis=1), state


def crps_quantile(y: np.ndarray, q: np.ndarray, levels) -> np.ndarray:
    """(n,) CRPS of each forecast from its quantiles: scoringrules' quantile CRPS, 2/K sum_k pinball_k."""
    import scoringrules as sr

    return np.asarray(sr.crps_quantile(np.asarray(y, float), np.asarray(q, float), np.asarray(levels, float),
                                       backend="numpy"), float)


def pinball_per_level(y: np.ndarray, q: np.ndarray, levels) -> dict[str, float]:
    """Mean pinball loss at each level: rho_tau(y - q) = max(tau u, (tau - 1) u)."""
    u = np.asarray(y, float).reshape(-1, 1) - np.asarray(q, float)  # (n, K)
    tau = np.asarray(levels, float)
    loss = np.maximum(tau * u, (tau - 1) * u).mean(axis=0)
    return {_key(t): float(v) for t, v in zip(levels, loss)}


def coverage_table(y: np.ndarray, q: np.ndarray, levels) -> tuple[dict[str, float], dict[str, float]]:
    """({nominal: observed coverage}, {nominal: mean width}) of each central interval, closed at both ends."""
    y = np.asarray(y, float).reshape(-1)
    cov, width = {}, {}
    for lo, hi, cover in sorted(interval_pairs(levels), key=lambda p: p[2]):
        cov[_key(cover)] = float(np.mean((y >= q[:, lo]) & (y <= q[:, hi])))
        width[_key(cover)] = float(np.mean(q[:, hi] - q[:, lo]))
    return cov, width


def pit_histogram(y: np.ndarray, q: np.ndarray, levels) -> list[dict]:
    """The PIT histogram on the forecast's own level grid (exact, no interpolation between quantiles): for each
    bin [tau_k, tau_k+1) (with 0 and 1 at the ends) the observed share of targets between those quantiles and
    the share a calibrated forecast puts there."""
    y = np.asarray(y, float).reshape(-1)
    edges = [0.0, *map(float, levels), 1.0]
    below = (np.asarray(q, float) <= y[:, None]).sum(axis=1)  # (n,) bin: how many quantiles lie at or below y
    counts = np.bincount(below, minlength=len(edges) - 1)
    return [{"bin_low": edges[k], "bin_high": edges[k + 1], "expected": edges[k + 1] - edges[k],
             "observed": float(counts[k] / max(len(y), 1))} for k in range(len(edges) - 1)]


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pof(hits, p: float) -> dict:
    """Kupiec (1995) proportion-of-failures test: x exceedances in n days against a nominal rate p.
    LR = -2 [log L(p) - log L(x / n)], chi-squared with 1 degree of freedom."""
    from scipy import stats as st

    h = np.asarray(hits, bool).reshape(-1)
    n, x = len(h), int(h.sum())
    if n == 0:
        raise DataError("kupiec_pof needs at least one day.")
    phat = x / n
    ll0 = _xlogy(n - x, 1 - p) + _xlogy(x, p)
    ll1 = _xlogy(n - x, 1 - phat) + _xlogy(x, phat)
    lr = max(0.0, -2 * (ll0 - ll1))
    return {"n": n, "exceedances": x, "rate": phat, "nominal": p, "lr": lr, "p_value": float(st.chi2.sf(lr, 1))}


def christoffersen(hits, p: float) -> dict:
    """Christoffersen (1998): independence (a first-order Markov chain of exceedances against independence,
    LR_ind ~ chi2(1)) and conditional coverage (LR_cc = LR_pof + LR_ind ~ chi2(2)), from the transition counts
    n_ij (day t-1 in state i, day t in state j)."""
    from scipy import stats as st

    h = np.asarray(hits, int).reshape(-1)
    prev, cur = h[:-1], h[1:]
    n00, n01 = int(np.sum((prev == 0) & (cur == 0))), int(np.sum((prev == 0) & (cur == 1)))
    n10, n11 = int(np.sum((prev == 1) & (cur == 0))), int(np.sum((prev == 1) & (cur == 1)))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    ll0 = _xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)
    ll1 = _xlogy(n00, 1 - pi01) + _xlogy(n01, pi01) + _xlogy(n10, 1 - pi11) + _xlogy(n11, pi11)
    lr_ind = max(0.0, -2 * (ll0 - ll1))
    lr_cc = kupiec_pof(h, p)["lr"] + lr_ind
    return {"transitions": {"n00": n00, "n01": n01, "n10": n10, "n11": n11}, "lr_ind": lr_ind,
            "p_value_ind": float(st.chi2.sf(lr_ind, 1)), "lr_cc": lr_cc, "p_value_cc": float(st.chi2.sf(lr_cc, 2))}


def var_backtests(y: np.ndarray, q: np.ndarray, levels, var_levels=(0.01, 0.05)) -> dict[str, dict]:
    """Kupiec and Christoffersen backtests of each lower-tail Value-at-Risk level held by ``levels``: an
    exceedance is a return below its forecast tau-quantile."""
    y = np.asarray(y, float).reshape(-1)
    lv = [round(float(t), 9) for t in levels]
    out = {}
    for p in var_levels:
        if round(p, 9) not in lv:
            continue
        hits = y < q[:, lv.index(round(p, 9))]
        out[_key(p)] = {**kupiec_pof(hits, p), **christoffersen(hits, p)}
    return out


def score_quantiles(y: np.ndarray, q: np.ndarray, levels) -> dict:
    """Every distribution score of an (n, K) quantile forecast: crps, pinball per level, coverage and mean
    width of each central interval, the VaR backtests at 1 % and 5 %."""
    cov, width = coverage_table(y, q, levels)
    return {"crps": float(np.mean(crps_quantile(y, q, levels))), "crps_method": "scoringrules.crps_quantile",
            "pinball": pinball_per_level(y, q, levels), "coverage": cov, "width": width,
            "var_backtests": var_backtests(y, q, levels)}


def crps_comparison(y, q_a, q_b, levels, *, a: str, b: str, horizon: int = 1, level: float = 0.95) -> dict:
    """Diebold–Mariano test of equal mean CRPS (``diff`` = mean CRPS of a minus b, negative favours a): HAC
    standard error, the Harvey–Leybourne–Newbold factor, Student-t p-value, as
    :func:`r2n2.evaluate.stats.diebold_mariano` does for squared errors."""
    d = crps_quantile(y, q_a, levels) - crps_quantile(y, q_b, levels)  # (n,) loss differential
    return differential_test(d, a=a, b=b, metric="crps", horizon=horizon, level=level)


def pinball_comparison(y, q_a, q_b, levels, tau: float, *, a: str, b: str, horizon: int = 1,
                       level: float = 0.95) -> dict:
    """Diebold–Mariano test of equal mean pinball loss at one level ``tau`` (a Value-at-Risk level's tick
    loss: the consistent score of a quantile forecast), metric ``pinball_<tau>``."""
    j = [round(float(t), 9) for t in levels].index(round(float(tau), 9))
    y = np.asarray(y, float)

    def tick(q):
        u = y - np.asarray(q, float)[:, j]
        return np.maximum(tau * u, (tau - 1) * u)

    return differential_test(tick(q_a) - tick(q_b), a=a, b=b, metric=f"pinball_{_key(tau)}", horizon=horizon,
                             level=level)


def differential_test(d, *, a: str, b: str, metric: str, horizon: int = 1, level: float = 0.95) -> dict:
    """Diebold–Mariano on a loss differential series ``d`` (a minus b, one value per time step, in time order):
    HAC standard error of its mean, the Harvey–Leybourne–Newbold factor, Student-t p-value (two-sided)."""
    from scipy import stats as st

    d = np.asarray(d, float)
    n = len(d)
    h = hac_mean(d, horizon=horizon)
    if h["tstat"] is None:
        return degenerate(a, b, metric, h["mean"], "diebold_mariano", mde=minimum_detectable_effect(h["se"]))
    harvey = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    se = h["se"] / harvey
    t = h["mean"] / se
    q = st.t.ppf(0.5 + level / 2, df=n - 1)
    return comparison(a, b, metric, h["mean"], h["mean"] - q * se, h["mean"] + q * se,
                      2 * st.t.sf(abs(t), df=n - 1), "diebold_mariano", mde=minimum_detectable_effect(se, df=n - 1))


def student_t_quantiles(params: np.ndarray, levels) -> np.ndarray:
    """(n, 3) Student-t (location, scale, dof) -> (n, K) quantiles at ``levels``."""
    from scipy import stats as st

    p = np.asarray(params, float)
    return st.t.ppf(np.asarray(levels, float)[None, :], df=p[:, 2:3], loc=p[:, 0:1], scale=p[:, 1:2])


def garch_family_quantiles(returns: np.ndarray, ends: np.ndarray, levels, *, o: int = 0,
                           refit_every: int = 21) -> np.ndarray:
    """GARCH(1,1) (``o=1``: GJR-GARCH(1,1,1)) with Student-t errors (arch), refitted on an expanding window every
    ``refit_every`` forecast origins: the block of origins starting at t is forecast with parameters fitted on
    returns[:t + 1] (known at t), filtered forward through the block. Row i: quantiles of returns[ends[i] + 1]."""
    from arch import arch_model

    r = np.asarray(returns, float) * 100  # percent returns: better conditioned optimisation
    ends = np.asarray(ends)
    if len(ends) and (ends.min() < 0 or (np.diff(ends) <= 0).any()):  # a block's fit must precede its rows
        raise DataError("GARCH baselines need forecast origins in time order, each a row of the series "
                        f"(got {len(ends)} origins, smallest {int(ends.min())}).")
    am = arch_model(r, mean="Constant", vol="GARCH", p=1, o=o, q=1, dist="t")
    out = np.empty((len(ends), len(levels)))
    for b in range(0, len(ends), refit_every):
        block = ends[b:b + refit_every]
        res = am.fit(last_obs=int(block[0]) + 1, disp="off")
        fc = res.forecast(horizon=1, start=int(block.min()), reindex=False)
        rows = block - int(block.min())
        mu, sd = fc.mean.to_numpy()[rows, 0], np.sqrt(fc.variance.to_numpy()[rows, 0])
        z = np.asarray(am.distribution.ppf(np.asarray(levels, float), res.params[["nu"]].to_numpy()))
        out[b:b + len(block)] = (mu[:, None] + sd[:, None] * z[None, :]) / 100
    return out


def ewma_normal_quantiles(returns: np.ndarray, ends: np.ndarray, levels, *, lam: float = 0.94) -> np.ndarray:
    """RiskMetrics: zero mean, variance s2_{t+1} = lam s2_t + (1 - lam) r_t^2 (started at the mean of the first
    30 squared returns), normal quantiles. Row i: quantiles of returns[ends[i] + 1] from returns up to ends[i]."""
    from scipy import stats as st

    r = np.nan_to_num(np.asarray(returns, float))
    s2 = np.empty(len(r) + 1)
    s2[0] = np.mean(r[:30] ** 2)
    for t in range(len(r)):
        s2[t + 1] = lam * s2[t] + (1 - lam) * r[t] ** 2
    z = st.norm.ppf(np.asarray(levels, float))
    return np.sqrt(s2[np.asarray(ends) + 1])[:, None] * z[None, :]


def empirical_quantiles(returns: np.ndarray, fit_end: int, ends: np.ndarray, levels) -> np.ndarray:
    """The same quantiles for every row: the empirical quantiles of returns[:fit_end] (the days before the test
    cut), the unconditional forecast that ignores volatility clustering."""
    r = np.asarray(returns, float)[:int(fit_end)]
    q = np.quantile(r[np.isfinite(r)], np.asarray(levels, float))
    return np.repeat(q[None, :], len(ends), axis=0)


def historical_quantiles(returns: np.ndarray, ends: np.ndarray, levels, *, window: int = 250) -> np.ndarray:
    """Historical simulation: for each row t of ``ends`` the empirical quantiles of the ``window`` returns up to
    and including t (known at t)."""
    r = np.asarray(returns, float)
    ends = np.asarray(ends)
    if int(ends.min()) + 1 < window:
        raise DataError(f"historical simulation needs {window} returns before the first forecast, got "
                        f"{int(ends.min()) + 1}.")
    return np.stack([np.quantile(r[t + 1 - window:t + 1], levels) for t in ends])
