"""A trading view of forecasts, net of costs: one asset's sign strategy and buy-and-hold, and a top-k minus
bottom-k long-short portfolio over a panel of entities.

Conventions (all functions):
- Asset returns come in as daily **log** returns by default (the project's ``ret_close``); pass
  ``log_returns=False`` for simple returns. Strategy returns come out as daily **simple** returns.
- ``positions[t]`` (or the weights of row t) is held over the return of row t: build it from information
  available before that return (the caller aligns forecasts with the returns they forecast).
- Turnover on day t is ``sum |w_t - w_{t-1}|`` (with ``w_{-1} = 0``, so opening the book costs too); the cost
  is ``cost_bps / 10,000`` per unit of turnover, subtracted from that day's return. Weights are reset to their
  targets every day (no drift between rebalances), the usual simplification for daily signals.

The ratios come from ``empyrical`` (empyrical-reloaded): annual return (geometric, 252 days a year), annual
volatility, Sharpe ratio (zero risk-free rate, sample standard deviation) and maximum drawdown (of the
compounded value, a negative fraction). Turnover, costs and the portfolio construction are written here:
no maintained library of this stack has them for a plain position series. So are the Sharpe ratio's standard
error (Lo 2002, the GMM / delta-method form for serially correlated returns) and the test of two Sharpe ratios
(Ledoit & Wolf 2008, their HAC test), on statsmodels' Newey-West long-run covariance: neither empyrical,
statsmodels nor arch ships them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import DataError
from .stats import comparison, default_lags, degenerate, minimum_detectable_effect

__all__ = ["net_returns", "performance", "trading_summary", "sign_strategy", "buy_and_hold",
           "long_short_weights", "long_short_portfolio", "sharpe_ratio_se", "sharpe_difference"]

PERIODS_PER_YEAR = 252


def _num(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def _simple(returns: np.ndarray, log_returns: bool) -> np.ndarray:
    return np.expm1(returns) if log_returns else returns


def net_returns(positions, returns, *, cost_bps: float = 0.0,
                log_returns: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Daily simple returns of holding ``positions[t]`` units of the asset over ``returns[t]``, minus
    ``cost_bps`` per unit turnover, and the daily turnover ``|positions[t] - positions[t-1]|``."""
    pos = np.asarray(positions, dtype=float).reshape(-1)
    ret = np.asarray(returns, dtype=float).reshape(-1)
    if len(pos) != len(ret) or len(pos) == 0:
        raise DataError(f"trading needs one position per return, got {len(pos)} positions and {len(ret)} returns.")
    if not (np.isfinite(pos).all() and np.isfinite(ret).all()):
        raise DataError("trading positions and returns must be finite; drop or fill the NaN days first.")
    if cost_bps < 0:
        raise DataError(f"cost_bps must be >= 0 (a cost in basis points per unit turnover), got {cost_bps}.")
    turnover = np.abs(np.diff(pos, prepend=0.0))  # (T,) entering on day 0 counts
    return pos * _simple(ret, log_returns) - cost_bps / 1e4 * turnover, turnover


def _moments(r: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means ``mu`` and second moments ``gamma`` of the columns of ``r`` (T, m), and the Newey-West (Bartlett,
    ``lags``) long-run covariance ``psi`` (2m, 2m) of ``(r - mu, r^2 - gamma)``: the inputs of the delta method
    for Sharpe ratios (Lo 2002; Ledoit & Wolf 2008, section 3.1)."""
    from statsmodels.stats.sandwich_covariance import S_hac_simple

    mu, gamma = r.mean(0), (r ** 2).mean(0)
    u = np.hstack([r - mu, r ** 2 - gamma])  # (T, 2m) moment conditions
    return mu, gamma, S_hac_simple(u, nlags=lags) / len(r)  # S_hac_simple sums, so divide by T


def _sharpe_gradient(mu: np.ndarray, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # SR = mu / sqrt(gamma - mu^2): dSR/dmu = gamma / v^1.5, dSR/dgamma = -mu / (2 v^1.5), v = gamma - mu^2
    v15 = (gamma - mu ** 2) ** 1.5
    return gamma / v15, -mu / (2 * v15)


def sharpe_ratio_se(returns, *, lags: int | None = None, periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """Standard error of the annualised Sharpe ratio ``sqrt(periods_per_year) * mean / sd`` (Lo 2002): the delta
    method on the mean and second moment, with their Newey-West covariance so that serial correlation and fat
    tails count (Lo's non-IID case; with 0 lags and normal returns it reduces to his IID
    ``sqrt((1 + SR^2 / 2) / T)`` per period). ``lags`` default ``ceil(T ** (1/3))``, as every HAC test here.
    Annualised by the square-root rule (Lo's correction of the annualisation factor for autocorrelated returns
    is not applied).
    None with fewer than 3 days or zero volatility."""
    r = np.asarray(returns, dtype=float).reshape(-1, 1)
    n = len(r)
    if n < 3 or np.ptp(r) == 0:
        return None
    lags = default_lags(n) if lags is None else int(lags)
    mu, gamma, psi = _moments(r, lags)
    g_mu, g_gamma = _sharpe_gradient(mu, gamma)
    grad = np.array([g_mu[0], g_gamma[0]])  # (2,) over (mu, gamma)
    return _num(math.sqrt(max(grad @ psi @ grad, 0.0) / n * periods_per_year))


def sharpe_difference(returns_a, returns_b, *, a: str = "a", b: str = "b", metric: str = "sharpe",
                      lags: int | None = None, periods_per_year: int = PERIODS_PER_YEAR,
                      level: float = 0.95) -> dict:
    """Test of equal Sharpe ratios of two strategies over the same days (Ledoit & Wolf 2008, their HAC test of
    section 3.1; not Memmel 2003, which assumes IID normal returns): the delta method on the two means and
    second moments, with their joint Newey-West (Bartlett, ``lags``) covariance, so that the correlation of the
    two strategies, serial correlation and fat tails all count. LW recommend a prewhitened QS kernel or their
    studentised block bootstrap for small samples; this uses the Bartlett kernel of every HAC test here.
    ``diff`` is the difference of the annualised Sharpe ratios (positive: a is better), with a two-sided normal
    p-value, interval and ``mde``. A comparison dict (:data:`r2n2.evaluate.stats.COMPARISON_KEYS`)."""
    from scipy import stats as st

    ra, rb = (np.asarray(x, dtype=float).reshape(-1) for x in (returns_a, returns_b))
    if len(ra) != len(rb) or len(ra) < 3:
        raise DataError(f"sharpe_difference needs two return series of one length >= 3, got {len(ra)} and "
                        f"{len(rb)} days.")
    if not (np.isfinite(ra).all() and np.isfinite(rb).all()):
        raise DataError("sharpe_difference: returns must be finite; fill the days without a position with 0.")
    test = "ledoit_wolf_hac"
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:  # a flat strategy has no Sharpe ratio
        return comparison(a, b, metric, None, None, None, None, test)
    n = len(ra)
    lags = default_lags(n) if lags is None else int(lags)
    ann = math.sqrt(periods_per_year)
    diff = ann * (ra.mean() / ra.std(ddof=1) - rb.mean() / rb.std(ddof=1))  # as performance's Sharpe ratios
    mu, gamma, psi = _moments(np.column_stack([ra, rb]), lags)
    g_mu, g_gamma = _sharpe_gradient(mu, gamma)
    grad = np.array([g_mu[0], -g_mu[1], g_gamma[0], -g_gamma[1]])  # (4,) over (mu_a, mu_b, gamma_a, gamma_b)
    se = ann * math.sqrt(max(grad @ psi @ grad, 0.0) / n)
    if se == 0:
        return degenerate(a, b, metric, diff, test)
    q = st.norm.ppf(0.5 + level / 2)
    p = 2 * st.norm.sf(abs(diff) / se)
    return comparison(a, b, metric, diff, diff - q * se, diff + q * se, p, test, mde=minimum_detectable_effect(se))


def performance(returns, *, turnover=None, active=None, periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """Annual return, annual volatility, Sharpe ratio with its standard error (:func:`sharpe_ratio_se`, Lo 2002)
    and maximum drawdown (empyrical) of daily simple strategy returns; mean daily ``turnover`` when given; hit
    rate = share of ``active`` days (default: all) with a positive return. Undefined values (fewer than 2 days,
    zero volatility) are None."""
    import empyrical

    r = np.asarray(returns, dtype=float).reshape(-1)
    if len(r) == 0:
        raise DataError("cannot measure a strategy over zero days.")
    act = np.ones(len(r), bool) if active is None else np.asarray(active, bool).reshape(-1)
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    out = {
        "annual_return": _num(empyrical.annual_return(r, annualization=periods_per_year)),
        "annual_volatility": (_num(empyrical.annual_volatility(r, annualization=periods_per_year))
                              if len(r) > 1 else None),
        # empyrical divides by a zero standard deviation (a flat strategy): undefined, so None
        "sharpe": _num(empyrical.sharpe_ratio(r, annualization=periods_per_year)) if sd > 0 else None,
        "sharpe_se": sharpe_ratio_se(r, periods_per_year=periods_per_year) if sd > 0 else None,
        "max_drawdown": _num(empyrical.max_drawdown(r)),
        "hit_rate": float(np.mean(r[act] > 0)) if act.any() else None,
        "turnover": None if turnover is None else float(np.mean(turnover)),
        "n_days": int(len(r)),
    }
    return out


def trading_summary(positions, returns, *, cost_bps: float = 0.0, log_returns: bool = True,
                    periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """:func:`performance` of a position series net of costs (hit rate over the days with a position)."""
    r, turnover = net_returns(positions, returns, cost_bps=cost_bps, log_returns=log_returns)
    active = np.asarray(positions, dtype=float).reshape(-1) != 0
    return performance(r, turnover=turnover, active=active, periods_per_year=periods_per_year)


def sign_strategy(forecasts, returns, *, cost_bps: float = 0.0, log_returns: bool = True,
                  periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """Long one unit when the forecast of ``returns[t]`` is positive, short when negative, flat at zero."""
    pos = np.sign(np.asarray(forecasts, dtype=float).reshape(-1))
    return trading_summary(pos, returns, cost_bps=cost_bps, log_returns=log_returns, periods_per_year=periods_per_year)


def buy_and_hold(returns, *, cost_bps: float = 0.0, log_returns: bool = True,
                 periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """Long one unit throughout: one unit of turnover (and its cost) on the first day only."""
    n = len(np.asarray(returns).reshape(-1))
    return trading_summary(np.ones(n), returns, cost_bps=cost_bps, log_returns=log_returns,
                           periods_per_year=periods_per_year)


def long_short_weights(scores: pd.DataFrame, *, k: int, valid: pd.DataFrame | None = None) -> pd.DataFrame:
    """Equal weights ``+1/k`` on the ``k`` highest and ``-1/k`` on the ``k`` lowest scores of each date among
    the entities with a score (and ``valid`` True, when given); a date with fewer than ``2k`` such entities
    holds nothing. Ties are broken by column order (deterministic)."""
    if k < 1:
        raise DataError(f"long-short portfolio needs k >= 1 stocks per leg, got k={k}.")
    s = scores.astype(float)
    if valid is not None:
        s = s.where(valid.reindex_like(s).fillna(False).astype(bool))
    rank = s.rank(axis=1, method="first", ascending=True)  # 1 = lowest; NaN scores stay unranked
    count = s.notna().sum(axis=1).to_numpy()[:, None]  # (T, 1) usable entities per date
    r = rank.to_numpy()
    w = np.where(r > count - k, 1.0 / k, 0.0) - np.where(r <= k, 1.0 / k, 0.0)  # NaN ranks compare False
    w[(count < 2 * k).reshape(-1)] = 0.0
    return pd.DataFrame(w, index=scores.index, columns=scores.columns)


def long_short_portfolio(scores: pd.DataFrame, next_returns: pd.DataFrame, *, k: int, cost_bps: float = 0.0,
                         log_returns: bool = True, periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """Top-``k`` minus bottom-``k`` equal-weight portfolio, rebalanced every date: the weights from row t of
    ``scores`` earn row t of ``next_returns`` (the returns realised after the scores are known). Entities
    whose score or next return is missing are skipped on that date. Returns :func:`performance` of the net
    daily returns plus ``"returns"`` (a pd.Series of net simple returns), ``"gross_returns"`` (before costs)
    and ``"weights"``."""
    s, r = scores.align(next_returns, join="inner")
    if s.empty:
        raise DataError("long_short_portfolio: scores and next returns share no dates and entities.")
    w = long_short_weights(s, k=k, valid=r.notna())
    simple = _simple(r.to_numpy(float), log_returns)
    gross = np.nansum(w.to_numpy() * np.nan_to_num(simple), axis=1)  # (T,) weights are 0 where returns are NaN
    if cost_bps < 0:
        raise DataError(f"cost_bps must be >= 0 (a cost in basis points per unit turnover), got {cost_bps}.")
    turnover = np.abs(w.diff().fillna(w)).sum(axis=1).to_numpy()  # (T,) both legs, opening day included
    net = gross - cost_bps / 1e4 * turnover
    out = performance(net, turnover=turnover, active=np.abs(w.to_numpy()).sum(axis=1) > 0,
                      periods_per_year=periods_per_year)
    out["returns"] = pd.Series(net, index=s.index, name="long_short")
    out["gross_returns"] = pd.Series(gross, index=s.index, name="long_short_gross")
    out["weights"] = w
    return out
