"""Econometric baselines and losses any series case can use: HAR (on a log variance proxy), GARCH(1,1)-t,
GJR-GARCH(1,1,1)-t and EWMA RiskMetrics forecasts refitted on expanding windows (``arch``); QLIKE (Patton 2011);
the log-vs-level calibration of a log variance forecast; the model confidence set (``arch.bootstrap.MCS``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["econometric_forecasts", "qlike", "calibrate", "model_confidence_set"]


def econometric_forecasts(rows: pd.DataFrame, first: int, last: int, *, horizon: int, refit_every: int,
                          lam: float = 0.94, history: int = 22) -> pd.DataFrame:
    """Raw log forecasts of HAR, GARCH(1,1)-t, GJR-GARCH(1,1,1)-t and EWMA made at the close of each row
    ``first..last`` (positions in one entity's rows, sorted by date) for the target's h days. Refits every
    ``refit_every`` rows on the expanding window of rows before the block's first row (so never on a day at or
    after a forecast's date); within a block the fitted parameters filter through each forecast's own day only
    (the model holds no row after the block's last). Returns one row per forecast with ``fit_through``, the last
    day any fit saw. ``rows`` holds ``date``, ``ret_close`` (log return) and ``logvar_1d`` (the log of a daily
    variance proxy); ``history``: the longest HAR lag (a month), also the rows that start EWMA."""
    from arch import arch_model
    from arch.univariate import HARX

    r = rows["ret_close"].to_numpy(float) * 100  # percent returns: better conditioned optimisation
    lv = rows["logvar_1d"].to_numpy(float)
    dates = rows["date"].to_numpy()
    ew = np.empty(len(r))  # RiskMetrics: sigma^2_{t+1} = lam sigma^2_t + (1 - lam) r_t^2, known at t's close
    ew_prev = float(np.mean(r[:history] ** 2))
    for t, x in enumerate(r):
        ew_prev = lam * ew_prev + (1 - lam) * x * x
        ew[t] = ew_prev
    out = {k: np.full(last - first + 1, np.nan) for k in ("har", "garch_t", "gjr_garch_t")}
    fit_through = np.empty(last - first + 1, dtype=dates.dtype)
    start = {}
    for s in range(first, last + 1, refit_every):
        e = min(s + refit_every - 1, last)
        sl = slice(s - first, e - first + 1)
        fit_through[sl] = dates[s - 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arch's convergence / scaling notes on short or calm samples
            har = HARX(lv[:e + 1], lags=[1, 5, history]).fit(last_obs=s, disp="off")
            out["har"][sl] = har.forecast(horizon=horizon, start=s, reindex=False).mean.to_numpy().mean(axis=1)
            for name, o in (("garch_t", 0), ("gjr_garch_t", 1)):
                am = arch_model(r[:e + 1], mean="Constant", vol="GARCH", p=1, o=o, q=1, dist="t")
                res = am.fit(last_obs=s, disp="off", starting_values=start.get(name))
                start[name] = res.params.to_numpy()
                var = res.forecast(horizon=horizon, start=s, reindex=False).variance.to_numpy().mean(axis=1)
                out[name][sl] = np.log(var / 1e4)
    frame = pd.DataFrame({"date": dates[first:last + 1], **out, "ewma": np.log(ew[first:last + 1] / 1e4),
                          "fit_through": fit_through})
    return frame


def qlike(var, forecast) -> np.ndarray:
    """QLIKE (Patton 2011) of variance forecasts ``forecast`` for the proxy ``var`` (both on the level):
    ``var / f - ln(var / f) - 1`` >= 0, zero when f = var."""
    ratio = np.asarray(var, dtype=float) / np.asarray(forecast, dtype=float)
    return ratio - np.log(ratio) - 1


def calibrate(y_val: np.ndarray, g_val: np.ndarray) -> dict:
    """The log-vs-level rule of every forecaster, fitted on validation (``r2n2.cases.volatility``'s docstring): ``a`` (log
    intercept) and ``b`` (level factor, QLIKE's in-sample optimum)."""
    d = np.asarray(y_val, dtype=float) - np.asarray(g_val, dtype=float)
    return {"a": float(np.mean(d)), "b": float(np.mean(np.exp(d)))}


def model_confidence_set(losses: dict[str, dict[str, np.ndarray]], metrics, *, size: float, reps: int,
                         seed: int) -> dict:
    """The model confidence set (Hansen, Lunde & Nason 2011; ``arch.bootstrap.MCS``, range statistic, stationary
    bootstrap) of every forecaster, per loss: ``losses[forecaster][metric]`` holds its daily losses."""
    from arch.bootstrap import MCS

    out = {}
    for metric in metrics:
        frame = pd.DataFrame({k: v[metric] for k, v in losses.items()})
        mcs = MCS(frame, size=size, reps=reps, method="R", seed=seed)
        mcs.compute()
        p = mcs.pvalues.iloc[:, 0]
        out[metric] = {"size": size, "included": sorted(mcs.included), "excluded": list(mcs.excluded),
                       "pvalues": {str(k): float(v) for k, v in p.items()}}
    return out
