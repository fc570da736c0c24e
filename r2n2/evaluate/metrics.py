"""Metrics: forecasts (MAE, RMSE, MASE, out-of-sample R^2), classifiers, and panel signals (daily rank IC).

scikit-learn, scipy and statsmodels compute wherever they can; degenerate inputs (a constant target, a zero
benchmark error) give None for the ratio that is undefined, never a ZeroDivisionError.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from ..errors import DataError
from .stats import hac_mean, minimum_detectable_effect

__all__ = ["regression_metrics", "classification_metrics", "forecast_tests", "oos_r2", "expanding_mean_forecast",
           "mase_scale", "daily_rank_ic", "rank_ic_summary"]


def _clean(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def _ratio(num: float, den: float) -> float | None:
    """num / den, or None when the denominator is 0 (the ratio is undefined, e.g. a constant target)."""
    return None if den == 0 or not math.isfinite(den) else num / den


def _vector(x, what: str) -> np.ndarray:
    v = np.asarray(x, dtype=float).reshape(-1)
    if len(v) == 0:
        raise DataError(f"cannot score an empty {what}: the split has no rows.")
    return v


def mase_scale(train_y: np.ndarray) -> float:
    """The MASE denominator: the in-sample MAE of the zero-return forecast (the random walk of the price) on the
    training targets, ``mean(|train_y|)``. ``train_y`` must be returns (not price levels); for a volatility
    target it is the mean training volatility."""
    return float(np.mean(np.abs(_vector(train_y, "training target"))))


def oos_r2(y: np.ndarray, pred: np.ndarray, bench: np.ndarray) -> float | None:
    """Out-of-sample R^2 (Campbell & Thompson 2008): ``1 - SSE(pred) / SSE(bench)``, where ``bench`` is
    usually :func:`expanding_mean_forecast`. Positive: the model beats the benchmark; None when the
    benchmark's error is exactly 0."""
    y, pred, bench = _vector(y, "target"), _vector(pred, "forecast"), _vector(bench, "benchmark")
    if not len(y) == len(pred) == len(bench):
        raise DataError(f"oos_r2 needs equal lengths, got y={len(y)}, pred={len(pred)}, bench={len(bench)}.")
    r = _ratio(float(np.sum((y - pred) ** 2)), float(np.sum((y - bench) ** 2)))
    return None if r is None else 1.0 - r


def expanding_mean_forecast(train_y: np.ndarray, test_y: np.ndarray, *, horizon: int = 1) -> np.ndarray:
    """The historical-mean forecast for each test target: the mean of every earlier target already realised
    when the forecast is made. ``train_y`` is the whole history before the test rows (training **and**
    validation targets: pass both, in time order); targets are consecutive rows (history then test) of
    ``horizon``-step-ahead values, so at test row i only rows up to ``len(train_y) + i - horizon`` are known
    (no look-ahead for overlapping multi-day targets)."""
    train_y, test_y = _vector(train_y, "training target"), np.asarray(test_y, dtype=float).reshape(-1)
    n_train = len(train_y)
    if n_train < horizon:
        raise DataError(f"expanding mean needs at least horizon={horizon} training targets, got {n_train}.")
    allv = np.concatenate([train_y, test_y])
    csum = np.concatenate([[0.0], np.cumsum(allv)])  # csum[m] = sum of the first m targets
    known = n_train + np.arange(len(test_y)) - horizon + 1  # (n_test,) count of realised targets at each row
    return csum[known] / known


def regression_metrics(y: np.ndarray, pred: np.ndarray, *, train_y: np.ndarray, directional: bool = True,
                       random_walk: np.ndarray | None = None, hist_mean: float | None = None,
                       benchmark: np.ndarray | None = None) -> dict:
    """MAE, RMSE, MASE, RMSE relative to the random walk (default: the zero-return forecast) and to the
    historical mean, out-of-sample R^2 against ``benchmark`` (when given; usually the expanding historical
    mean), and directional accuracy with its base rate.

    MASE = MAE / mean(|train_y|) (Hyndman & Koehler 2006): the test MAE in units of the training period's mean
    absolute return, which is the in-sample MAE of the zero-return forecast (the random walk of the price).
    It measures accuracy against the size of a typical training-period move, **not** against the random walk
    on the test days: the random walk's own MASE is ``mean(|test y|) / mean(|train y|)``, 1 only when the test
    period moves as much as the training period. On the built-in S&P 500 it is about 0.566 (a calmer test
    period than a training period with 2008 in it). So compare a model's MASE with the random walk's MASE on
    the same rows (or read ``rel_rmse_random_walk``), never with 1. ``train_y`` must be on the return scale
    (convert log-price targets first). Undefined ratios are None."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y, pred = _vector(y, "target"), _vector(pred, "forecast")
    if len(y) != len(pred):
        raise DataError(f"regression_metrics needs equal lengths, got y={len(y)}, pred={len(pred)}.")
    rmse = math.sqrt(mean_squared_error(y, pred))
    out = {"mae": mean_absolute_error(y, pred), "rmse": rmse}
    out["mase"] = _ratio(out["mae"], mase_scale(train_y))
    rw = np.zeros_like(y) if random_walk is None else _vector(random_walk, "random-walk forecast")
    out["rel_rmse_random_walk"] = _ratio(rmse, math.sqrt(mean_squared_error(y, rw)))
    if hist_mean is not None:
        out["rel_rmse_historical_mean"] = _ratio(rmse, math.sqrt(mean_squared_error(y, np.full_like(y, hist_mean))))
    if benchmark is not None:
        out["oos_r2"] = oos_r2(y, pred, benchmark)
    if directional:
        out["directional_accuracy"] = float(np.mean((pred > 0) == (y > 0)))
        out["up_rate"] = float(np.mean(y > 0))  # accuracy of always predicting "up"
    out["n"] = int(len(y))
    return {k: _clean(v) if k != "n" else v for k, v in out.items()}


def forecast_tests(y: np.ndarray, pred: np.ndarray, benchmark: np.ndarray, *, horizon: int = 1,
                   directional: bool = True) -> dict:
    """Diebold-Mariano (model vs benchmark, squared error, HAC variance, Harvey correction; two-sided) and
    Pesaran-Timmermann (sign predictability: H1 the signs of forecast and target agree more often than under
    independence, one-sided, ``alternative="larger"``), both from statsmodels (0.15:
    ``statsmodels.stats.diagnostic.pesaran_timmermann``). Each p-value has its ``*_sided`` label."""
    from statsmodels.stats.diagnostic import pesaran_timmermann
    from statsmodels.tsa.stattools import diebold_mariano_test

    y, pred, benchmark = (np.asarray(a, float).reshape(-1) for a in (y, pred, benchmark))
    out = {}
    try:
        dm = diebold_mariano_test(y, pred, benchmark, criterion="mse", harvey_adj=True, horizon=horizon)
        out["diebold_mariano_stat"] = _clean(dm.statistic)
        out["diebold_mariano_pvalue"] = _clean(dm.pvalue)
        out["diebold_mariano_sided"] = "two-sided"
    except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
        out["diebold_mariano_stat"] = out["diebold_mariano_pvalue"] = None
    if directional:
        try:
            pt = pesaran_timmermann(y, pred, alternative="larger")
            out["pesaran_timmermann_stat"] = _clean(pt.statistic)
            out["pesaran_timmermann_pvalue"] = _clean(pt.pvalue)
            out["pesaran_timmermann_sided"] = "one-sided"
        except (ValueError, ZeroDivisionError):  # e.g. the model always predicts one sign
            out["pesaran_timmermann_stat"] = out["pesaran_timmermann_pvalue"] = None
    return out


def classification_metrics(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, macro recall (scikit-learn, over all ``labels`` even when absent: zero_division=0)
    and the confusion matrix (rows: true, columns: predicted) for integer class ids."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    y, pred = np.asarray(y).reshape(-1), np.asarray(pred).reshape(-1)
    if len(y) == 0 or len(y) != len(pred):
        raise DataError(f"classification_metrics needs equal, non-zero lengths, got y={len(y)}, pred={len(pred)}.")
    ids = list(range(len(labels)))
    return {"accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=ids, zero_division=0)),
            "macro_recall": float(recall_score(y, pred, average="macro", labels=ids, zero_division=0)),
            "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
            "n": int(len(y))}


def daily_rank_ic(scores: pd.DataFrame, returns: pd.DataFrame, *, min_entities: int = 3) -> pd.Series:
    """Spearman rank correlation, date by date, between a (dates x entities) score matrix and the realised
    returns it forecasts (same labels; each row's returns are the ones realised after that row's scores).
    Entities missing (NaN) in either matrix on a date are left out of that date; a date with fewer than
    ``min_entities`` usable entities, or with constant scores or returns, gets NaN. Ranks from scipy (average
    ties), so each value equals ``scipy.stats.spearmanr`` on that date."""
    from scipy.stats import rankdata

    s, r = scores.align(returns, join="inner")
    if s.empty:
        raise DataError("daily_rank_ic: the score and return matrices share no dates and entities; scores have "
                        f"columns {list(scores.columns)[:5]!s:.80}, returns {list(returns.columns)[:5]!s:.80}.")
    sv, rv = s.to_numpy(float), r.to_numpy(float)
    bad = ~(np.isfinite(sv) & np.isfinite(rv))
    sv, rv = np.where(bad, np.nan, sv), np.where(bad, np.nan, rv)  # a date's pairs must be complete
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN date: that date's IC is NaN
        rs = rankdata(sv, axis=1, nan_policy="omit")  # (T, N) ranks among that date's usable entities
        rr = rankdata(rv, axis=1, nan_policy="omit")
        rs = rs - np.nanmean(rs, axis=1, keepdims=True)
        rr = rr - np.nanmean(rr, axis=1, keepdims=True)
        cov = np.nansum(rs * rr, axis=1)
        den = np.sqrt(np.nansum(rs ** 2, axis=1) * np.nansum(rr ** 2, axis=1))
        ic = np.where(den > 0, cov / np.where(den > 0, den, 1.0), np.nan)
    ic[(~bad).sum(axis=1) < min_entities] = np.nan
    return pd.Series(ic, index=s.index, name="rank_ic")


def rank_ic_summary(ic: pd.Series, *, horizon: int = 1, lags: int | None = None) -> dict:
    """Mean daily rank IC with its Newey-West t-statistic (statsmodels HAC; at least ``horizon - 1`` lags for
    overlapping returns), two-sided normal p-value (``sided``), hit rate (share of dates with IC > 0), the
    number of dates with a defined IC and ``mde``: the smallest mean IC the t-test detects with 80 % power at
    alpha 0.05 (:func:`r2n2.evaluate.stats.minimum_detectable_effect` of the HAC se)."""
    from scipy.stats import norm

    x = pd.Series(ic, dtype=float).dropna().to_numpy()
    if len(x) == 0:
        return {"mean": None, "tstat": None, "p_value": None, "sided": "two-sided", "hit_rate": None, "n": 0,
                "mde": None}
    h = hac_mean(x, horizon=horizon, lags=lags)
    t = h["tstat"]
    p = None if t is None else _clean(2 * norm.sf(abs(t)))
    return {"mean": _clean(h["mean"]), "tstat": _clean(t), "p_value": p, "sided": "two-sided",
            "hit_rate": float(np.mean(x > 0)), "n": int(len(x)), "mde": minimum_detectable_effect(h["se"])}
