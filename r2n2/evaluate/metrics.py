"""Metrics and significance tests, from scikit-learn and statsmodels wherever they exist there."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["regression_metrics", "classification_metrics", "forecast_tests"]


def _clean(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) or math.isinf(v) else v


def regression_metrics(y: np.ndarray, pred: np.ndarray, *, train_y: np.ndarray, directional: bool = True,
                       random_walk: np.ndarray | None = None, hist_mean: float | None = None) -> dict:
    """MAE, RMSE, MASE (scaled by the in-sample MAE of the naive previous-value forecast on train targets),
    RMSE relative to the random walk and the historical mean, and directional accuracy with its base rate."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y, pred = np.asarray(y, float).reshape(-1), np.asarray(pred, float).reshape(-1)
    rmse = math.sqrt(mean_squared_error(y, pred))
    out = {"mae": mean_absolute_error(y, pred), "rmse": rmse}
    naive_scale = np.mean(np.abs(np.diff(np.asarray(train_y, float).reshape(-1))))
    out["mase"] = out["mae"] / naive_scale if naive_scale > 0 else float("nan")
    rw = np.zeros_like(y) if random_walk is None else np.asarray(random_walk, float).reshape(-1)
    out["rel_rmse_random_walk"] = rmse / math.sqrt(mean_squared_error(y, rw))
    if hist_mean is not None:
        out["rel_rmse_historical_mean"] = rmse / math.sqrt(mean_squared_error(y, np.full_like(y, hist_mean)))
    if directional:
        out["directional_accuracy"] = float(np.mean((pred > 0) == (y > 0)))
        out["up_rate"] = float(np.mean(y > 0))  # accuracy of always predicting "up"
    out["n"] = int(len(y))
    return {k: _clean(v) if k != "n" else v for k, v in out.items()}


def forecast_tests(y: np.ndarray, pred: np.ndarray, benchmark: np.ndarray, *, horizon: int = 1,
                   directional: bool = True) -> dict:
    """Diebold-Mariano (model vs benchmark, squared error, HAC variance, Harvey correction) and
    Pesaran-Timmermann (sign predictability) from statsmodels."""
    from statsmodels.stats.diagnostic import pesaran_timmermann
    from statsmodels.tsa.stattools import diebold_mariano_test

    y, pred, benchmark = (np.asarray(a, float).reshape(-1) for a in (y, pred, benchmark))
    out = {}
    try:
        dm = diebold_mariano_test(y, pred, benchmark, criterion="mse", harvey_adj=True, horizon=horizon)
        out["diebold_mariano_stat"] = _clean(dm.statistic)
        out["diebold_mariano_pvalue"] = _clean(dm.pvalue)
    except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
        out["diebold_mariano_stat"] = out["diebold_mariano_pvalue"] = None
    if directional:
        try:
            pt = pesaran_timmermann(y, pred)
            out["pesaran_timmermann_stat"] = _clean(pt.statistic)
            out["pesaran_timmermann_pvalue"] = _clean(pt.pvalue)
        except (ValueError, ZeroDivisionError):  # e.g. the model always predicts one sign
            out["pesaran_timmermann_stat"] = out["pesaran_timmermann_pvalue"] = None
    return out


def classification_metrics(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    y, pred = np.asarray(y).reshape(-1), np.asarray(pred).reshape(-1)
    ids = list(range(len(labels)))
    return {"accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=ids, zero_division=0)),
            "macro_recall": float(recall_score(y, pred, average="macro", labels=ids, zero_division=0)),
            "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
            "n": int(len(y))}
