"""The linear cross-stock competitor of the panel case: per stock, a ridge regression of its next return on every
stock's lagged features (scikit-learn's ``Ridge``), the first thing a quant runs to see whether relations across
stocks carry anything a regression would not find.

Design (issue 39): one model per stock (a shared model with stock-identity interactions has the same
coefficients), on the panel's cross-sectionally z-scored features of all N stocks at the window's last date,
``ret_1d`` also at the ``lags - 1`` dates before (so a leader's move one or a few days back is a column of
every follower's regression). Columns are standardised on the training rows. The penalty is chosen on the
validation split only, by the mean daily rank IC (the panel's headline metric); the chosen model is fitted on
the training split, as the neural models are (they early-stop on validation). Test rows never enter a choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import daily_rank_ic

__all__ = ["RIDGE_ALPHAS", "cross_stock_design", "cross_stock_ridge"]

# 1 ... 1e8 on standardised columns: the top reaches the limit where the slopes are ~0 and each stock is ranked by
# its mean training target alone (on the built-in panel the validation split picks 3.2e7: no linear cross-stock signal)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(0, 8, 17))


def cross_stock_design(table: pd.DataFrame, features: tuple[str, ...], *, lags: int) -> pd.DataFrame:
    """(dates x columns): every stock's ``features`` at each date, and ``ret_1d`` at the ``lags - 1`` dates before,
    named ``<feature>@<entity>`` / ``ret_1d@<entity>-<k>``. A stock missing on a date contributes 0 (the mean of
    a cross-sectional z-score)."""
    cols = []
    for f in features:
        wide = table.pivot(index="date", columns="entity", values=f).sort_index()
        cols.append(wide.add_prefix(f"{f}@"))
        if f == "ret_1d":
            cols += [wide.shift(k).add_prefix(f"{f}-{k}@") for k in range(1, lags)]
    return pd.concat(cols, axis=1).fillna(0.0)


def cross_stock_ridge(table: pd.DataFrame, features: tuple[str, ...], *, lags: int = 5,
                      alphas: tuple[float, ...] = RIDGE_ALPHAS) -> tuple[pd.DataFrame, dict]:
    """(scores: dates x entities for every labelled window, the choice made: alpha, validation rank IC per alpha,
    columns). ``table``: the panel's window table (entity, date, features, target, fwd_return, split)."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    X = cross_stock_design(table, features, lags=lags)
    target = table.pivot(index="date", columns="entity", values="target").reindex(X.index)
    fwd = table.pivot(index="date", columns="entity", values="fwd_return").reindex(X.index)
    split = table.pivot(index="date", columns="entity", values="split").reindex(X.index).fillna("")
    entities = list(target.columns)
    train_dates = split.eq("train").any(axis=1).to_numpy()
    scaler = StandardScaler().fit(X.to_numpy()[train_dates])
    Z = scaler.transform(X.to_numpy())

    def fit_predict(alpha: float) -> pd.DataFrame:
        pred = np.full(target.shape, np.nan)
        for j, e in enumerate(entities):
            rows = (split[e].eq("train") & target[e].notna()).to_numpy()
            if rows.sum() < 2:
                continue
            model = Ridge(alpha=alpha).fit(Z[rows], target[e].to_numpy()[rows])
            labelled = split[e].ne("").to_numpy()
            pred[labelled, j] = model.predict(Z[labelled])
        return pd.DataFrame(pred, index=X.index, columns=target.columns)

    val = split.eq("val")
    scores_by_alpha, val_ic = {}, {}
    for alpha in alphas:
        scores = fit_predict(alpha)
        ic = daily_rank_ic(scores.where(val), fwd.where(val))
        scores_by_alpha[alpha], val_ic[alpha] = scores, float(ic.mean())
    best = max(alphas, key=lambda a: (np.nan_to_num(val_ic[a], nan=-np.inf), a))  # ties: the larger penalty
    return scores_by_alpha[best], {"alpha": best, "lags": lags, "columns": int(X.shape[1]),
                                   "validation_rank_ic": {f"{a:g}": val_ic[a] for a in alphas}}
