"""Champion / challenger promotion on fresh data: both models scored on one window neither trained on, and
the challenger kept out only if a paired test finds it worse than the champion beyond a stated tolerance.

Forecasts: one-sided Diebold-Mariano on squared errors (statsmodels ``diebold_mariano_test``, HAC variance,
Harvey correction). ``tolerance`` is relative: the challenger's MSE may exceed (1 + tolerance) x the champion's
before it counts as worse; it enters the loss differential d_t = e_chal^2 - (1 + tolerance) e_champ^2.
Classifiers: paired bootstrap (``scipy.stats.bootstrap``, resampling texts with both models' predictions
together) of the macro-F1 difference; ``tolerance`` is in macro-F1 points. Bootstrap rather than McNemar
because the project selects sentiment models on macro-F1, which McNemar (accuracy only) does not test, and
because a tolerance margin fits a bootstrap directly.

The null hypothesis is "the challenger is not worse"; it is refused only when that is rejected at ``alpha``,
so an equal challenger is promoted (a fresh model on fresher data is preferred when the data cannot tell).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["decide_promotion"]

_KINDS = ("forecast", "classifier")


def _bound(v: object) -> str | int:
    """A window bound as JSON: ISO date for anything date-like, int for an arrival index, else the string."""
    if isinstance(v, (bool, np.bool_)):
        raise DataError(f"A promotion window bound must be a date or an arrival index, got {v!r}.")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (_dt.date, np.datetime64)) or hasattr(v, "to_pydatetime"):
        import pandas as pd

        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, str):
        return v
    raise DataError(f"A promotion window bound must be a date or an arrival index, got {str(v)[:80]!r}.")


def _window(window: Mapping) -> dict:
    if not isinstance(window, Mapping) or not {"start", "end"} <= set(window):
        raise DataError(f"The promotion window must be a mapping with 'start' and 'end', got {str(window)[:80]!r}.")
    start, end = _bound(window["start"]), _bound(window["end"])
    if type(start) is type(end) and start > end:
        raise DataError(f"The promotion window starts after it ends ({start} > {end}).")
    return {"start": start, "end": end}


def _f(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _forecast_scores(y: np.ndarray, pred: np.ndarray) -> dict:
    e = y - pred
    return {"rmse": _f(np.sqrt(np.mean(e ** 2))), "mae": _f(np.mean(np.abs(e))), "n": int(len(y))}


def _macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int, axis: int = -1) -> np.ndarray:
    """Macro-F1 over classes 0..n_classes-1 along ``axis`` (vectorised for the bootstrap); a class absent from
    both y and pred scores 0, as scikit-learn's f1_score(labels=..., zero_division=0) does."""
    f1 = 0.0
    for k in range(n_classes):
        tp = np.sum((y == k) & (pred == k), axis=axis)
        wrong = np.sum((y == k) != (pred == k), axis=axis)  # false positives + false negatives
        den = 2 * tp + wrong
        f1 = f1 + np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
    return f1 / n_classes


def _classifier_scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(n_classes)), zero_division=0)),
            "accuracy": float(accuracy_score(y, pred)), "n": int(len(y))}


def _dm_one_sided(y: np.ndarray, champ: np.ndarray, chal: np.ndarray, tolerance: float, horizon: int) -> tuple:
    """One-sided DM p-value for H1 'challenger's MSE > (1 + tolerance) x champion's'."""
    from scipy.stats import t as student_t
    from statsmodels.tsa.stattools import diebold_mariano_test

    a, b = y - chal, math.sqrt(1.0 + tolerance) * (y - champ)
    d = a ** 2 - b ** 2
    if not np.any(d):
        return None, 1.0  # identical losses: nothing says the challenger is worse
    dm = diebold_mariano_test(np.zeros_like(y), a, b, criterion="mse", harvey_adj=True, horizon=horizon)
    stat = float(dm.statistic)
    if not math.isfinite(stat):  # zero variance of a non-zero differential: worse (or better) at every step
        return None, 0.0 if d.mean() > 0 else 1.0
    return stat, float(student_t.sf(stat, df=len(y) - 1))  # Harvey's correction reads t with T - 1 df


def _bootstrap_one_sided(y, champ, chal, tolerance: float, n_classes: int, n_resamples: int, seed: int) -> tuple:
    """Paired bootstrap of macro-F1(challenger) - macro-F1(champion) + tolerance; p = share of resamples in which
    the challenger is not worse (percentile test: p < alpha iff the one-sided upper bound is below 0)."""
    from scipy.stats import bootstrap

    def diff(y, a, b, axis=-1):
        return _macro_f1(y, b, n_classes, axis) - _macro_f1(y, a, n_classes, axis) + tolerance

    observed = float(diff(y, champ, chal))
    res = bootstrap((y, champ, chal), diff, paired=True, vectorized=True, n_resamples=n_resamples, batch=250,
                    method="percentile", rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    return observed, float((1 + np.count_nonzero(dist >= 0)) / (1 + len(dist)))


def decide_promotion(*, actual, champion_pred, challenger_pred, kind: str, window: Mapping, alpha: float = 0.05,
                     tolerance: float = 0.0, champion_id: str | None = None, challenger_id: str | None = None,
                     horizon: int = 1, n_classes: int | None = None, n_resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Decide whether the challenger replaces the champion, from both models' predictions on one window that
    neither trained on (the caller guarantees that). ``champion_pred=None`` means there is no champion yet.

    Returns a JSON-ready dict: ``window`` (ISO dates or arrival indices), ``champion`` and ``challenger``
    (id and scores; the champion is None without one), ``test`` (name, p_value, statistic), ``alpha``,
    ``tolerance``, ``promoted`` and a one-sentence ``reason`` with the numbers."""
    if kind not in _KINDS:
        raise ConfigError(f"Promotion kind must be 'forecast' or 'classifier', got {str(kind)[:80]!r}.")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}.")
    if not (tolerance >= 0.0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}.")
    win = _window(window)
    y = np.asarray(actual).ravel()
    if len(y) == 0:
        raise DataError(f"The promotion window {win['start']} .. {win['end']} holds no scored rows, so champion and "
                        "challenger cannot be compared; score them on a window after both training cut-offs.")
    preds = {"challenger": challenger_pred, "champion": champion_pred}
    arrays = {}
    for who, p in preds.items():
        if p is None:
            continue
        p = np.asarray(p).ravel()
        if p.shape != y.shape:
            raise DataError(f"The {who}'s predictions ({len(p)}) and the actual values ({len(y)}) must pair row by "
                            f"row on the promotion window.")
        arrays[who] = p
    if "challenger" not in arrays:
        raise DataError("There are no challenger predictions to decide on.")
    if kind == "forecast":
        y = y.astype(float)
        for who in arrays:
            arrays[who] = arrays[who].astype(float)
        if not all(np.all(np.isfinite(a)) for a in (y, *arrays.values())):
            raise DataError("The promotion window holds missing or infinite actual values or predictions; "
                            "drop those rows before comparing the models.")
        score, metric, fmt = (lambda p: _forecast_scores(y, p)), "rmse", "{:.4g}"
    else:
        for a in (y, *arrays.values()):
            if not np.issubdtype(a.dtype, np.integer) and not np.all(np.asarray(a, float) == np.round(a)):
                raise DataError(f"Classifier promotion needs class ids; got {str(a[:6].tolist())[:80]}.")
        y = y.astype(np.int64)
        arrays = {k: v.astype(np.int64) for k, v in arrays.items()}
        n_classes = int(n_classes or max(int(a.max()) for a in (y, *arrays.values())) + 1)
        score, metric, fmt = (lambda p: _classifier_scores(y, p, n_classes)), "macro_f1", "{:.4f}"
    chal = {"id": challenger_id, **score(arrays["challenger"])}
    span = f"{win['start']} .. {win['end']}, n={len(y)}"
    out = {"window": win, "kind": kind, "metric": metric, "alpha": alpha, "tolerance": tolerance,
           "challenger": chal}
    name_c = f"challenger {challenger_id!r}" if challenger_id else "the challenger"
    if "champion" not in arrays:
        out.update(champion=None, test={"name": None, "p_value": None, "statistic": None}, promoted=True,
                   reason=f"Promoted {name_c} ({metric} {fmt.format(chal[metric])} on {span}) because there is "
                          f"no champion to compare it with.")
        return out
    champ = {"id": champion_id, **score(arrays["champion"])}
    if kind == "forecast":
        stat, p = _dm_one_sided(y, arrays["champion"], arrays["challenger"], tolerance, horizon)
        test = "Diebold-Mariano, one-sided (challenger MSE > (1 + tolerance) x champion MSE), HAC, Harvey-corrected"
        tol = f"a {tolerance:.0%} tolerance on MSE"
    else:
        stat, p = _bootstrap_one_sided(y, arrays["champion"], arrays["challenger"], tolerance, n_classes,
                                       n_resamples, seed)
        test = "paired bootstrap of the macro-F1 difference, one-sided (challenger worse by more than tolerance)"
        tol = f"a tolerance of {tolerance:g} macro-F1"
    promoted = p >= alpha
    name_k = f"champion {champion_id!r}" if champion_id else "the champion"
    nums = f"{metric} {fmt.format(chal[metric])} vs {fmt.format(champ[metric])} on {span}"
    reason = (f"Promoted {name_c} over {name_k} ({nums}): the test finds it not worse beyond {tol} "
              f"(p = {p:.3g} >= {alpha:g})." if promoted else
              f"Kept {name_k} over {name_c} ({nums}): the test finds the challenger worse beyond {tol} "
              f"(p = {p:.3g} < {alpha:g}).")
    out.update(champion=champ, test={"name": test, "p_value": p, "statistic": None if stat is None else _f(stat)},
               promoted=bool(promoted), reason=reason)
    return out
