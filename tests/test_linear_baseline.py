"""The panel's linear competitor (per-stock ridge on every stock's lagged features): it finds a small planted
lead-lag, finds nothing on a calm panel, and no test-split value reaches its choice or its fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from r2n2.cases.crosssection import PANEL_FEATURES, panel_table
from r2n2.data.planted import lead_lag_panel, lead_lag_share
from r2n2.evaluate.linear import RIDGE_ALPHAS, cross_stock_design, cross_stock_ridge
from r2n2.evaluate.metrics import daily_rank_ic, rank_ic_summary

CUTS = {"val_start": "2011-01-01", "test_start": "2013-01-01"}


def _table(beta: float, seed: int = 0) -> pd.DataFrame:
    df = lead_lag_panel(beta=beta, seed=seed)
    df["date"] = pd.to_datetime(df["date"])
    return panel_table(df, lookback=30, horizon=1, cuts=CUTS)


def _test_ic(table: pd.DataFrame, scores: pd.DataFrame) -> dict:
    fwd = table.pivot(index="date", columns="entity", values="fwd_return")
    test = table.pivot(index="date", columns="entity", values="split").eq("test")
    return rank_ic_summary(daily_rank_ic(scores.where(test), fwd.where(test)).dropna(), horizon=1, lags=5)


def test_design_has_every_stock_and_the_lags():
    table = _table(0.2)
    X = cross_stock_design(table, PANEL_FEATURES, lags=5)
    assert X.shape[1] == 10 * (len(PANEL_FEATURES) + 4)  # 10 stocks x (4 features + 4 earlier ret_1d)
    wide = table.pivot(index="date", columns="entity", values="ret_1d")
    assert np.allclose(X["ret_1d-2@s00"].iloc[5:], wide["s00"].shift(2).iloc[5:].fillna(0.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ridge_finds_a_lead_lag_at_four_percent_of_variance_and_nothing_on_a_calm_panel(seed):
    assert lead_lag_share(0.2) == pytest.approx(0.0385, abs=1e-4)
    planted, choice = cross_stock_ridge(table := _table(0.2, seed), PANEL_FEATURES)
    found = _test_ic(table, planted)
    assert found["tstat"] > 2 and found["mean"] > 0.03, (found, choice)
    assert choice["alpha"] in RIDGE_ALPHAS and len(choice["validation_rank_ic"]) == len(RIDGE_ALPHAS)
    calm, _ = cross_stock_ridge(table := _table(0.0, seed), PANEL_FEATURES)
    assert abs(_test_ic(table, calm)["tstat"]) < 2


def test_test_split_values_never_reach_the_choice_or_the_fit():
    table = _table(0.2)
    scores, choice = cross_stock_ridge(table, PANEL_FEATURES)
    shuffled = table.copy()
    test = shuffled["split"].eq("test")
    rng = np.random.default_rng(0)
    for col in ("target", "fwd_return"):  # every test label replaced by noise
        shuffled.loc[test, col] = rng.standard_normal(int(test.sum()))
    again, choice_again = cross_stock_ridge(shuffled, PANEL_FEATURES)
    assert choice_again == choice
    pd.testing.assert_frame_equal(again, scores)
