"""Synthetic price data with structure planted at a chosen strength: the positive controls of the library.

A real result that ties its baseline says either "there is nothing to learn here" or "the model cannot learn
this" or "the test could not have seen it". These generators tell the three apart: each plants one kind of
structure, graded by ``beta`` (0 = none), into files that the cases read like any user's data, so the planted
effect goes through the real stages (ingest, validate, window, train, evaluate).

- :func:`lead_lag_panel`: followers' next-day returns load ``beta`` on one leader's return today. Only a model
  that relates the stocks to each other (and knows which one leads) can use it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["lead_lag_panel", "lead_lag_share"]


def lead_lag_panel(*, beta: float = 0.4, n_stocks: int = 10, n_followers: int = 5, start: str = "2004-01-02",
                   end: str = "2015-12-31", vol: float = 0.012, dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """A long price panel (date, entity, close): ``n_stocks`` stocks ``s00``, ``s01``, ... with t(``dof``)
    daily log returns of standard deviation ``vol``; the first ``n_followers`` after the leader ``s00``
    (``s01``..) have next-day returns ``beta * r_s00(t) + e(t+1)``, scaled so every stock keeps ``vol``.

    The leader's return today then explains a share ``beta^2 / (1 + beta^2)`` of each follower's next-day
    variance (:func:`lead_lag_share`); the other stocks are independent and unpredictable.
    """
    if not 1 <= n_followers < n_stocks:
        raise ValueError(f"lead_lag_panel: n_followers must be in [1, n_stocks), got {n_followers} of {n_stocks}.")
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    n = len(dates)
    shocks = rng.standard_t(dof, size=(n, n_stocks)) / np.sqrt(dof / (dof - 2))  # (T, N), unit variance
    returns = shocks.copy()
    followers = slice(1, 1 + n_followers)
    returns[1:, followers] = (beta * shocks[:-1, :1] + shocks[1:, followers]) / np.sqrt(1 + beta ** 2)
    close = 50 * np.exp(np.cumsum(vol * returns, axis=0))  # (T, N)
    names = [f"s{i:02d}" for i in range(n_stocks)]
    wide = pd.DataFrame(close, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"), columns=names)
    return wide.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def lead_lag_share(beta: float) -> float:
    """The share of a follower's next-day return variance that the leader's return today explains."""
    return beta ** 2 / (1 + beta ** 2)
