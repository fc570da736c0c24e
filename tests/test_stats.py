"""Paired tests, forecast / classifier / panel metrics and the trading view, against hand-computed values
(tiny series worked out in the comments) and reference implementations (statsmodels, scipy, arch, sklearn)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from r2n2.errors import DataError
from r2n2.evaluate import metrics as M
from r2n2.evaluate import stats as S
from r2n2.evaluate import trading as T

Z975 = 1.959963984540054

# A worked example: y, a model forecast, and the zero forecast it nests.
Y = np.array([1.0, -1.0, 2.0, 0.0])
MODEL = np.array([0.5, 0.5, 1.0, -0.5])
ZERO = np.zeros(4)


def _noisy(seed=0, n=400):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n)
    good = 0.6 * y + 0.5 * rng.standard_normal(n)  # explains part of y
    noise1, noise2 = 0.3 * rng.standard_normal(n), 0.3 * rng.standard_normal(n)  # equally useless
    return y, good, noise1, noise2


# ---- HAC mean ------------------------------------------------------------------------------------------------

def test_hac_mean_matches_hand_computed_newey_west():
    x = np.array([1.0, 2.0, 3.0, 6.0])  # mean 3, deviations (-2, -1, 0, 3): sum sq 14, lag-1 sum 2
    # Newey-West without a degrees-of-freedom correction (statsmodels' default, as in its DM test):
    # lags=0: var = 14 / n^2
    assert S.hac_mean(x, lags=0)["se"] == pytest.approx(math.sqrt(14) / 4)
    # lags=1, Bartlett weight 1/2: long-run sum 14 + 2 * 0.5 * 2 = 16; var = 16 / n^2 = 1
    h = S.hac_mean(x, lags=1)
    assert (h["mean"], h["n"], h["lags"]) == (3.0, 4, 1)
    assert h["se"] == pytest.approx(1.0)
    assert h["tstat"] == pytest.approx(3.0)
    assert S.hac_mean(np.arange(27.0))["lags"] == 3  # default bandwidth ceil(27 ** (1/3))
    assert S.hac_mean(np.ones(5), lags=1)["tstat"] is None  # constant: no division by zero


# ---- Diebold-Mariano ------------------------------------------------------------------------------------------

def test_diebold_mariano_hand_computed():
    c = S.diebold_mariano(Y, MODEL, ZERO, a="model", b="zero", lags=0)
    # d = (y-a)^2 - (y-b)^2 = (-0.75, 1.25, -3, 0.25): mean -0.5625, sum of squared deviations 9.921875
    se = math.sqrt(9.921875) / 4 / math.sqrt(3 / 4)  # HAC(0) se divided by the Harvey factor sqrt((n-1)/n)
    q = st.t.ppf(0.975, 3)
    assert set(c) == set(S.COMPARISON_KEYS)
    assert (c["a"], c["b"], c["metric"], c["test"]) == ("model", "zero", "mse_loss_differential", "diebold_mariano")
    assert c["diff"] == pytest.approx(-0.5625)
    assert c["ci_low"] == pytest.approx(-0.5625 - q * se) and c["ci_high"] == pytest.approx(-0.5625 + q * se)
    assert c["p_value"] == pytest.approx(2 * st.t.cdf(-0.5625 / se, 3))


def test_diebold_mariano_interval_agrees_with_its_p_value_and_is_antisymmetric():
    for seed in range(4):
        y, good, n1, _ = _noisy(seed, n=120)
        shrunk = 0.3 * good  # a weak forecast: p-values straddle 0.05 across seeds
        c = S.diebold_mariano(y, shrunk, n1)
        assert (c["p_value"] < 0.05) == (not c["ci_low"] <= 0 <= c["ci_high"])
        r = S.diebold_mariano(y, n1, shrunk)
        assert r["diff"] == pytest.approx(-c["diff"]) and r["p_value"] == pytest.approx(c["p_value"])
        assert r["ci_low"] == pytest.approx(-c["ci_high"])


def test_diebold_mariano_finds_a_planted_gain_and_calls_equals_a_tie():
    y, good, n1, n2 = _noisy(1)
    assert S.verdict(S.diebold_mariano(y, good, n1), higher_is_better=False) == "better"
    assert S.verdict(S.diebold_mariano(y, n1, good), higher_is_better=False) == "worse"
    assert S.verdict(S.diebold_mariano(y, n1, n2), higher_is_better=False) == "tie"
    same = S.diebold_mariano(y, good, good)
    assert (same["diff"], same["p_value"], S.verdict(same, higher_is_better=False)) == (0.0, 1.0, "tie")


def test_comparisons_reject_bad_input_with_a_clear_message():
    with pytest.raises(DataError, match=r"equal-length inputs, got y=4, m=3, z=4"):
        S.diebold_mariano(Y, MODEL[:3], ZERO, a="m", b="z")
    with pytest.raises(DataError, match=r"criterion must be 'mse', 'mae' or a loss\(y, f\), got 'mape'"):
        S.diebold_mariano(Y, MODEL, ZERO, criterion="mape")
    with pytest.raises(DataError, match="contain NaN or inf"):
        S.clark_west(Y, np.array([0.5, np.nan, 1, 0]), ZERO)


# ---- Clark-West -----------------------------------------------------------------------------------------------

def test_clark_west_on_a_known_example():
    c = S.clark_west(Y, MODEL, ZERO, a="model", b="zero", lags=0)
    # f = (y-b)^2 - [(y-a)^2 - (b-a)^2] = (1-0, 1-2, 4-0, 0-0) = (1, -1, 4, 0): mean 1, sum sq dev 14
    se = math.sqrt(14) / 4  # HAC(0): sqrt(sum sq dev) / n
    t = 1 / se  # 1.06904
    assert t == pytest.approx(1.0690450, abs=1e-6)
    assert (c["metric"], c["test"]) == ("mse_adjusted", "clark_west")
    assert c["diff"] == pytest.approx(-1.0)  # the model's adjusted MSPE is 1 below the zero forecast's
    assert c["p_value"] == pytest.approx(0.5 * math.erfc(t / math.sqrt(2)))  # one-sided normal tail
    assert c["p_value"] == pytest.approx(0.142525, abs=1e-6)
    # one-sided, as the test: no lower bound, the upper bound at z_0.95 (tests/test_power.py has the rest)
    assert c["sided"] == "one-sided" and c["ci_low"] is None and c["ci_high"] == pytest.approx(-1 + 1.644854 * se)


def test_clark_west_rejects_for_a_planted_signal_only():
    y, good, n1, _ = _noisy(2)
    assert S.clark_west(y, good, np.zeros_like(y))["p_value"] < 1e-6
    # a forecast unrelated to y: the adjustment (b-a)^2 cancels the noise penalty on average, no rejection
    assert S.clark_west(y, n1, np.zeros_like(y))["p_value"] > 0.05


# ---- block bootstrap of the RMSE ratio -------------------------------------------------------------------------

def test_rmse_ratio_bootstrap_matches_arch_and_hand_ratio():
    from arch.bootstrap import StationaryBootstrap

    y, good, n1, _ = _noisy(3, n=200)
    c = S.rmse_ratio_bootstrap(y, good, n1, a="m", b="rw", reps=300, seed=7, block_size=5)
    rmse = lambda p: math.sqrt(np.mean((y - p) ** 2))  # noqa: E731
    assert c["diff"] == pytest.approx(rmse(good) / rmse(n1) - 1)
    assert (c["metric"], c["test"]) == ("rmse_ratio_minus_1", "stationary_bootstrap")
    # reference: arch's replications from the same seed and statistic; the interval is their r-th smallest and
    # r-th largest, r = floor(301 * 0.025) = 7 (the convention of r2n2.evaluate.stats), within two order
    # statistics of arch's interpolated percentile interval (its 2.5 % point sits at position 7.475 of 300)
    ea, eb = (y - good) ** 2, (y - n1) ** 2
    fn = lambda a, b: np.sqrt(a.mean() / b.mean()) - 1  # noqa: E731
    reps = np.sort(StationaryBootstrap(5, ea, eb, seed=7).apply(fn, reps=300)[:, 0])
    assert (c["ci_low"], c["ci_high"]) == (reps[6], reps[-7])
    ref = StationaryBootstrap(5, ea, eb, seed=7).conf_int(fn, reps=300, method="percentile")
    assert reps[6] <= ref[0, 0] <= reps[8] and reps[-9] <= ref[1, 0] <= reps[-7]
    assert c == S.rmse_ratio_bootstrap(y, good, n1, a="m", b="rw", reps=300, seed=7, block_size=5)  # deterministic
    assert c["ci_high"] < 0 and c["p_value"] == pytest.approx(2 / 301)  # every replication below 1
    assert S.verdict(c, higher_is_better=False) == "better"


def test_rmse_ratio_bootstrap_ties_on_equal_forecasts_and_supports_circular_blocks():
    y, _, n1, n2 = _noisy(4, n=200)
    same = S.rmse_ratio_bootstrap(y, n1, n1, reps=50)
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    c = S.rmse_ratio_bootstrap(y, n1, n2, reps=200, method="circular")  # default: arch's optimal block length
    assert c["test"] == "circular_bootstrap" and S.verdict(c, higher_is_better=False) == "tie"
    assert c["p_value"] > 0.05


# ---- classifiers ---------------------------------------------------------------------------------------------

def _classes(seed=0, n=600):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    strong = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    weak = np.where(rng.random(n) < 0.4, y, rng.integers(0, 3, n))
    return y, strong, weak


def test_fast_macro_f1_equals_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        y, p = rng.integers(0, k, 50), rng.integers(0, k - 1, 50)  # class k-1 is never predicted
        assert S.macro_f1(y, p, k) == pytest.approx(f1_score(y, p, average="macro", labels=range(k), zero_division=0))


def test_classifier_bootstrap_matches_arch_and_finds_a_planted_gap():
    from arch.bootstrap import IIDBootstrap
    from sklearn.metrics import f1_score

    y, strong, weak = _classes()
    c = S.classifier_bootstrap(y, strong, weak, a="strong", b="weak", reps=200, seed=3)
    f1 = lambda p: f1_score(y, p, average="macro")  # noqa: E731
    assert c["diff"] == pytest.approx(f1(strong) - f1(weak))
    reps = np.sort(IIDBootstrap(y, strong, weak, seed=3).apply(
        lambda t, p1, p2: S.macro_f1(t, p1, 3) - S.macro_f1(t, p2, 3), reps=200)[:, 0])
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((reps[4], reps[-5]))  # r = floor(201 * 0.025) = 5
    assert S.verdict(c, higher_is_better=True) == "better"
    acc = S.classifier_bootstrap(y, weak, strong, metric="accuracy", reps=200)
    assert acc["diff"] == pytest.approx(np.mean(weak == y) - np.mean(strong == y))
    assert S.verdict(acc, higher_is_better=True) == "worse"
    with pytest.raises(DataError, match="metric must be 'macro_f1' or 'accuracy', got 'auc'"):
        S.classifier_bootstrap(y, weak, strong, metric="auc")


def test_classifier_bootstrap_calls_two_equal_classifiers_a_tie():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 400)
    p1 = np.where(rng.random(400) < 0.6, y, rng.integers(0, 3, 400))
    p2 = np.where(rng.random(400) < 0.6, y, rng.integers(0, 3, 400))
    assert S.verdict(S.classifier_bootstrap(y, p1, p2, reps=300), higher_is_better=True) == "tie"


def test_mcnemar_exact_hand_computed():
    # 20 examples: 10 both right, 6 only a right, 2 only b right, 2 both wrong
    y = np.zeros(20, int)
    a = np.array([0] * 10 + [0] * 6 + [1] * 2 + [1] * 2)
    b = np.array([0] * 10 + [1] * 6 + [0] * 2 + [1] * 2)
    c = S.mcnemar_test(y, a, b, a="a", b="b")
    assert c["test"] == "mcnemar_exact"
    assert c["p_value"] == pytest.approx(2 * (1 + 8 + 28) / 256)  # two-sided binomial(8, 1/2), k <= 2
    assert c["diff"] == pytest.approx(0.2)
    # the exact test inverted: Clopper-Pearson of 6 / 8 only-a-right pairs, mapped by 8 / 20 * (2 pi - 1)
    lo, hi = st.beta.ppf(0.025, 6, 3), st.beta.ppf(0.975, 7, 2)
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((0.4 * (2 * lo - 1), 0.4 * (2 * hi - 1)))
    assert c["ci_low"] < 0 < c["ci_high"] and c["p_value"] > 0.05  # p 0.29: the interval agrees
    se = math.sqrt(8 - 4 ** 2 / 20) / 20  # the MDE from the Wald se of a paired difference in proportions
    assert c["mde"] == pytest.approx((Z975 + st.norm.ppf(0.8)) * se)


def test_mcnemar_stays_exact_with_many_discordant_pairs():
    y = np.zeros(60, int)
    a = np.array([0] * 30 + [1] * 10 + [0] * 20)  # 30 only-a right, 10 only-b right, 20 both right
    b = np.array([1] * 30 + [0] * 10 + [0] * 20)
    c = S.mcnemar_test(y, a, b)
    assert c["test"] == "mcnemar_exact"  # no chi-square beside an interval from another formula
    assert c["p_value"] == pytest.approx(2 * st.binom.cdf(10, 40, 0.5))
    assert c["ci_low"] > 0 and c["p_value"] <= 0.05 and S.verdict(c, higher_is_better=True) == "better"
    same = S.mcnemar_test(y, a, a)
    assert (same["p_value"], same["ci_low"], same["ci_high"]) == (1.0, 0.0, 0.0)


# ---- rank IC --------------------------------------------------------------------------------------------------

def _panel(seed=0, t=60, n=8, signal=0.0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=t)
    cols = [f"S{i}" for i in range(n)]
    ret = pd.DataFrame(rng.standard_normal((t, n)) * 0.01, index=dates, columns=cols)
    score = pd.DataFrame(signal * ret.to_numpy() + rng.standard_normal((t, n)) * 0.01, index=dates, columns=cols)
    return score, ret


def test_daily_rank_ic_equals_scipy_spearman_with_missing_entities():
    score, ret = _panel(0, t=12, n=6)
    score.iloc[2, 1] = np.nan
    ret.iloc[3, [0, 4]] = np.nan
    score.iloc[5, :4] = np.nan  # only 2 entities left: below min_entities
    score.iloc[6] = 1.0  # constant scores: undefined
    ret.iloc[7, :3] = ret.iloc[7, 3]  # ties in the returns: average ranks
    ic = M.daily_rank_ic(score, ret)
    for i, d in enumerate(score.index):
        ok = score.loc[d].notna() & ret.loc[d].notna()
        if i in (5, 6):
            assert np.isnan(ic[d])
        else:
            assert ic[d] == pytest.approx(st.spearmanr(score.loc[d][ok], ret.loc[d][ok]).statistic)


def test_rank_ic_summary_hand_computed_and_planted_signal():
    ic = pd.Series([0.1, -0.2, 0.3, np.nan, 0.2])
    s = M.rank_ic_summary(ic, lags=0)
    # defined: (0.1, -0.2, 0.3, 0.2): mean 0.1, deviations (0, -0.3, 0.2, 0.1), sum sq 0.14
    assert s["mean"] == pytest.approx(0.1) and s["n"] == 4 and s["hit_rate"] == 0.75
    assert s["tstat"] == pytest.approx(0.1 / (math.sqrt(0.14) / 4))
    assert s["p_value"] == pytest.approx(2 * st.norm.sf(s["tstat"]))
    good = M.rank_ic_summary(M.daily_rank_ic(*_panel(1, t=250, signal=0.5)))
    none = M.rank_ic_summary(M.daily_rank_ic(*_panel(2, t=250, signal=0.0)))
    assert good["tstat"] > 3 and abs(none["tstat"]) < 2
    assert M.rank_ic_summary(pd.Series([np.nan]))["n"] == 0


def test_rank_ic_difference_hand_computed_and_aligned():
    d = pd.bdate_range("2021-01-01", periods=5)
    a = pd.Series([0.3, 0.1, 0.4, 0.2, 0.9], index=d)
    b = pd.Series([0.1, 0.2, 0.1, 0.0, np.nan], index=d)  # the last date has no b: dropped
    c = S.rank_ic_difference(a, b.iloc[:5], a="model", b="reversal", lags=0)
    # differences (0.2, -0.1, 0.3, 0.2): mean 0.15, deviations (0.05, -0.25, 0.15, 0.05), sum sq 0.09
    se = math.sqrt(0.09) / 4
    assert (c["metric"], c["test"]) == ("rank_ic", "newey_west")
    assert c["diff"] == pytest.approx(0.15)
    assert c["p_value"] == pytest.approx(2 * st.norm.sf(0.15 / se))
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((0.15 - Z975 * se, 0.15 + Z975 * se))
    with pytest.raises(DataError, match="at least 3 common dates"):
        S.rank_ic_difference(a.iloc[:2], b, lags=0)


def test_rank_ic_difference_finds_a_planted_better_signal():
    score, ret = _panel(3, t=300, signal=0.5)
    weak = score + np.random.default_rng(9).standard_normal(score.shape) * 0.05
    c = S.rank_ic_difference(M.daily_rank_ic(score, ret), M.daily_rank_ic(weak, ret))
    assert S.verdict(c, higher_is_better=True) == "better"


# ---- verdict and seeds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo,hi,hib,expected", [
    (0.01, 0.05, True, "better"), (0.01, 0.05, False, "worse"), (-0.05, -0.01, False, "better"),
    (-0.05, -0.01, True, "worse"), (-0.01, 0.05, True, "tie"), (0.0, 0.05, True, "tie"),
    (None, None, True, "tie"), (float("nan"), 0.1, True, "tie")])
def test_verdict(lo, hi, hib, expected):
    c = {"diff": 0.03, "ci_low": lo, "ci_high": hi, "p_value": 0.01}
    assert S.verdict(c, higher_is_better=hib) == expected


def test_seed_summary():
    s = S.seed_summary([0.75, 0.76, 0.74])
    assert s["mean"] == pytest.approx(0.75) and s["sd"] == pytest.approx(0.01) and s["n"] == 3
    assert S.seed_summary([0.5, None]) == {"mean": 0.5, "sd": None, "n": 1}
    assert S.seed_summary([]) == {"mean": None, "sd": None, "n": 0}


def test_seed_difference_is_a_paired_t_over_seeds_hand_computed():
    # d = [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3), t = 3.4641 on 2 df; t_{0.975, 2} = 4.3027
    c = S.seed_difference([1.5, 2.5, 3.5], [0.5, 0.5, 0.5], a="m", b="x", metric="macro_f1")
    assert (c["a"], c["b"], c["metric"], c["test"]) == ("m", "x", "macro_f1", "paired_t_seeds")
    assert c["diff"] == pytest.approx(2.0)
    assert c["ci_low"] == pytest.approx(2 - 4.302653 / 3 ** 0.5, abs=1e-5)
    assert c["ci_high"] == pytest.approx(2 + 4.302653 / 3 ** 0.5, abs=1e-5)
    assert c["p_value"] == pytest.approx(0.07418, abs=1e-4)
    assert S.verdict(c, higher_is_better=True) == "tie"  # the interval covers 0 with 3 seeds
    # fewer than two complete pairs: no test; a missing metric drops its pair
    assert S.seed_difference([0.7], [0.6]) is None
    assert S.seed_difference([0.7, None], [0.6, 0.5]) is None
    # identical differences on every seed: no interval, so never a verdict
    c = S.seed_difference([0.7, 0.8], [0.6, 0.7])
    assert c["ci_low"] is None and S.verdict(c, higher_is_better=True) == "tie"


# ---- forecast metrics -----------------------------------------------------------------------------------------

def test_mase_is_scaled_by_the_zero_forecast_on_training_returns():
    train = np.array([0.01, -0.02, 0.03, -0.04])  # mean |r| = 0.025
    m = M.regression_metrics(np.array([0.01, 0.02]), np.array([0.0, 0.01]), train_y=train)
    assert m["mae"] == pytest.approx(0.01) and m["mase"] == pytest.approx(0.4)
    assert M.mase_scale(train) == pytest.approx(0.025)
    # the zero forecast on the training returns themselves scores exactly 1
    assert M.regression_metrics(train, np.zeros(4), train_y=train)["mase"] == pytest.approx(1.0)
    # but on a calmer test period the zero forecast scores mean|test| / mean|train| (0.015 / 0.025), not 1: the
    # built-in S&P 500's random walk scores about 0.566
    assert M.regression_metrics(np.array([0.01, 0.02]), np.zeros(2), train_y=train)["mase"] == pytest.approx(0.6)


def test_oos_r2_and_expanding_mean_hand_computed():
    assert M.oos_r2([1, 2, 3], [1, 2, 2], [2, 2, 2]) == pytest.approx(0.5)  # 1 - 1/2
    assert M.oos_r2([2, 2], [1, 1], [2, 2]) is None  # the benchmark is perfect: undefined
    assert M.expanding_mean_forecast([1, 2, 3], [4, 5]).tolist() == [2.0, 2.5]
    # 2-day targets: at test row i only rows up to n_train + i - 2 are realised
    assert M.expanding_mean_forecast([1, 2, 3], [4, 5], horizon=2).tolist() == [1.5, 2.0]
    rng = np.random.default_rng(0)
    tr, te = rng.standard_normal(30), rng.standard_normal(10)
    ref = [np.mean(np.concatenate([tr, te[:i]])[: 30 + i - 3 + 1]) for i in range(10)]
    assert M.expanding_mean_forecast(tr, te, horizon=3) == pytest.approx(ref)
    with pytest.raises(DataError, match="at least horizon=5 training targets, got 3"):
        M.expanding_mean_forecast([1, 2, 3], [4], horizon=5)


def test_regression_metrics_keys_and_degenerate_targets():
    y, p = np.array([0.01, -0.01, 0.02]), np.array([0.0, 0.0, 0.01])
    m = M.regression_metrics(y, p, train_y=y, hist_mean=0.0, benchmark=np.full(3, 0.005))
    assert set(m) == {"mae", "rmse", "mase", "rel_rmse_random_walk", "rel_rmse_historical_mean", "oos_r2",
                      "directional_accuracy", "up_rate", "n"}
    assert m["oos_r2"] == pytest.approx(1 - 3e-4 / 4.75e-4)  # SSE 3 x 1e-4 vs 2.5e-5 + 2 x 2.25e-4
    assert "oos_r2" not in M.regression_metrics(y, p, train_y=y)
    z = np.zeros(3)  # zero-variance target, zero training returns: every ratio is undefined, no exception
    d = M.regression_metrics(z, z, train_y=z, hist_mean=0.0, benchmark=z, directional=False)
    assert (d["mase"], d["rel_rmse_random_walk"], d["rel_rmse_historical_mean"], d["oos_r2"]) == (None,) * 4
    assert d["rmse"] == 0.0
    with pytest.raises(DataError, match="cannot score an empty target"):
        M.regression_metrics([], [], train_y=y)


def test_classification_metrics_keys():
    m = M.classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["negative", "neutral", "positive"])
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    one = M.classification_metrics([1, 1], [1, 1], ["negative", "neutral", "positive"])  # one class only
    assert one["macro_f1"] == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="equal, non-zero lengths, got y=0"):
        M.classification_metrics([], [], ["a"])


# ---- trading --------------------------------------------------------------------------------------------------

SIMPLE = np.array([0.01, -0.02, 0.03, 0.05])
POS = np.array([1.0, 1.0, -1.0, 0.0])


def test_net_returns_hand_computed_with_costs():
    r, turn = T.net_returns(POS, np.log1p(SIMPLE), cost_bps=10)
    assert turn.tolist() == [1.0, 0.0, 2.0, 1.0]  # open, hold, flip, close
    assert r == pytest.approx([0.01 - 0.001, -0.02, -0.03 - 0.002, 0.0 - 0.001])
    r2, _ = T.net_returns(POS, SIMPLE, cost_bps=10, log_returns=False)
    assert r2 == pytest.approx(r)
    with pytest.raises(DataError, match="one position per return, got 3 positions and 4 returns"):
        T.net_returns(POS[:3], SIMPLE)
    with pytest.raises(DataError, match="cost_bps must be >= 0"):
        T.net_returns(POS, SIMPLE, cost_bps=-1)


def test_trading_summary_hand_computed():
    s = T.trading_summary(POS, SIMPLE, cost_bps=10, log_returns=False)
    net = [0.009, -0.02, -0.032, -0.001]  # mean -0.011, deviations (0.02, -0.009, -0.021, 0.01): sum sq 1.022e-3
    sd = math.sqrt(1.022e-3 / 3)
    assert s["sharpe"] == pytest.approx(-0.011 / sd * math.sqrt(252))
    assert s["annual_volatility"] == pytest.approx(sd * math.sqrt(252))
    value = 1.009 * 0.98 * 0.968 * 0.999  # peak after day 0 (1.009), then only down
    assert s["max_drawdown"] == pytest.approx(value / 1.009 - 1)
    assert s["annual_return"] == pytest.approx(value ** (252 / 4) - 1)
    assert s["hit_rate"] == pytest.approx(1 / 3)  # days with a position: 0.009 > 0, -0.02, -0.032
    assert s["turnover"] == 1.0 and s["n_days"] == 4
    assert np.sum(net) == pytest.approx(-0.044)


def test_sign_strategy_and_buy_and_hold():
    pred = np.array([0.3, 0.1, -2.0, 0.0])
    assert T.sign_strategy(pred, SIMPLE, cost_bps=10, log_returns=False) == \
        T.trading_summary(POS, SIMPLE, cost_bps=10, log_returns=False)
    bh = T.buy_and_hold(SIMPLE, cost_bps=10, log_returns=False)
    assert bh["turnover"] == 0.25  # the opening trade only
    assert bh["max_drawdown"] == pytest.approx(-0.02)  # 1.009 -> 1.009 * 0.98
    free = T.buy_and_hold(SIMPLE, log_returns=False)
    assert free["annual_return"] > bh["annual_return"]  # costs only lower returns
    flat = T.trading_summary(np.zeros(4), SIMPLE)
    assert (flat["sharpe"], flat["hit_rate"], flat["max_drawdown"]) == (None, None, 0.0)


def test_long_short_portfolio_hand_computed():
    d = pd.bdate_range("2022-01-03", periods=3)
    scores = pd.DataFrame({"A": [4, 1, 5], "B": [1, 4, np.nan], "C": [3, 3, np.nan], "D": [2, 2, np.nan]},
                          index=d, dtype=float)
    nxt = pd.DataFrame({"A": [0.02, 0.01, 0.0], "B": [-0.01, 0.03, 0.0], "C": [0.0, 0.0, 0.0],
                        "D": [0.0, 0.0, 0.0]}, index=d)
    out = T.long_short_portfolio(scores, nxt, k=1, cost_bps=10, log_returns=False)
    w = out["weights"]
    assert w.loc[d[0]].tolist() == [1, -1, 0, 0] and w.loc[d[1]].tolist() == [-1, 1, 0, 0]
    assert w.loc[d[2]].tolist() == [0, 0, 0, 0]  # one scored entity < 2k: no position
    # day 0: 0.02 + 0.01, opening turnover 2; day 1: 0.03 - 0.01, both legs flip (4); day 2: close both (2)
    assert out["returns"].tolist() == pytest.approx([0.03 - 0.002, 0.02 - 0.004, -0.002])
    assert out["turnover"] == pytest.approx(8 / 3)
    assert out["hit_rate"] == 1.0  # the two days with a position both gained
    k2 = T.long_short_weights(scores.iloc[:2], k=2)
    assert k2.loc[d[0]].tolist() == [0.5, -0.5, 0.5, -0.5]
    assert np.allclose(k2.sum(axis=1), 0) and np.allclose(k2.abs().sum(axis=1), 2)
    with pytest.raises(DataError, match="k >= 1"):
        T.long_short_weights(scores, k=0)


def test_long_short_skips_entities_without_a_return():
    d = pd.bdate_range("2022-01-03", periods=1)
    scores = pd.DataFrame({"A": [4.0], "B": [1.0], "C": [3.0]}, index=d)
    nxt = pd.DataFrame({"A": [np.nan], "B": [-0.01], "C": [0.02]}, index=d)
    out = T.long_short_portfolio(scores, nxt, k=1, log_returns=False)
    assert out["weights"].iloc[0].tolist() == [0.0, -1.0, 1.0]  # A has no return: C is the top
    assert out["returns"].iloc[0] == pytest.approx(0.03)


def test_every_comparison_has_the_same_json_ready_keys():
    import json

    y, good, n1, _ = _noisy(6, n=60)
    yc, strong, weak = _classes(6, n=60)
    ic = pd.Series(np.linspace(-0.1, 0.2, 10))
    comps = [S.diebold_mariano(y, good, n1), S.clark_west(y, good, n1), S.rmse_ratio_bootstrap(y, good, n1, reps=20),
             S.classifier_bootstrap(yc, strong, weak, reps=20), S.mcnemar_test(yc, strong, weak),
             S.classifier_bootstrap(yc, strong, weak, reps=20, groups=np.arange(60) // 2),
             S.rank_ic_difference(ic, ic * 0.5), S.seed_difference([0.5, 0.6, 0.4], [0.4, 0.4, 0.5]),
             T.sharpe_difference(y / 100, good / 100)]
    for c in comps:
        assert tuple(c) == S.COMPARISON_KEYS
        assert c["sided"] in ("two-sided", "one-sided") and c["mde"] > 0, c["test"]
        json.dumps(c, allow_nan=False)  # plain floats, no NaN


def test_forecast_tests_still_report_dm_and_pesaran_timmermann():
    y, good, _, _ = _noisy(7)
    from statsmodels.stats.diagnostic import pesaran_timmermann

    t = M.forecast_tests(y, good, np.zeros_like(y))
    assert t["diebold_mariano_pvalue"] < 1e-6 and t["pesaran_timmermann_pvalue"] < 1e-6
    assert (t["diebold_mariano_sided"], t["pesaran_timmermann_sided"]) == ("two-sided", "one-sided")
    pt = pesaran_timmermann(y, good)  # one-sided: half the two-sided p of a positive statistic
    assert t["pesaran_timmermann_pvalue"] == pytest.approx(st.norm.sf(pt.statistic))
    assert pt.pvalue == pytest.approx(2 * st.norm.sf(pt.statistic))
    flat = M.forecast_tests(y, np.ones_like(y), np.zeros_like(y))  # always "up": no sign test possible
    assert flat["pesaran_timmermann_stat"] is None


def test_newey_west_ic_tests_are_calibrated_on_signals_without_information():
    tstats, diffs = [], []
    for seed in range(60):
        score, ret = _panel(100 + seed, t=200, n=10, signal=0.0)
        other = _panel(500 + seed, t=200, n=10)[0]
        ic, ic2 = M.daily_rank_ic(score, ret), M.daily_rank_ic(other, ret)
        tstats.append(M.rank_ic_summary(ic)["tstat"])
        diffs.append(S.rank_ic_difference(ic, ic2)["p_value"])
    t = np.array(tstats)
    assert abs(t.mean()) < 0.35 and 0.7 < t.std() < 1.3
    assert np.mean(np.abs(t) > 1.96) <= 0.12 and np.mean(np.array(diffs) < 0.05) <= 0.12


# -- two-way bootstrap over seeds and test items ------------------------------------------------------------
def test_two_way_bootstrap_counts_the_test_sets_noise_that_a_paired_t_over_seeds_ignores():
    """Five seeds whose models beat b by 0.01 on average (seed spread 0.002), each scored on one test set of 300
    items whose item-level noise (sd 0.2, shared by the seeds) dominates. Over 40 such test sets the paired t over
    seeds, which conditions on the one test set, covers the true 0.01 far less often than its 95 %; the two-way
    bootstrap, resampling seeds and items, covers it about 95 % of the time. Identical models give exactly 0;
    the same seed gives the same answer; one seed gives none."""
    from r2n2.evaluate.stats import seed_difference, two_way_bootstrap

    n, seeds, true = 300, 5, 0.01
    covered = {"paired": 0, "two_way": 0}
    for k in range(40):
        rng = np.random.default_rng(k)
        item = rng.normal(0, 0.2, n)  # the test set's draw: common to every seed
        a = true + rng.normal(0, 0.002, (seeds, 1)) + item + rng.normal(0, 0.01, (seeds, n))

        def score(si, ii, a=a):
            return float(a[si][:, ii].mean())  # b scores 0 everywhere

        paired = seed_difference(a.mean(1), np.zeros(seeds), a="a", b="b", metric="m")
        two = two_way_bootstrap(score, seeds, n, a="a", b="b", metric="m", reps=199, seed=k)
        covered["paired"] += paired["ci_low"] <= true <= paired["ci_high"]
        covered["two_way"] += two["ci_low"] <= true <= two["ci_high"]
    assert covered["paired"] <= 20 and covered["two_way"] >= 33, covered  # measured: 7 and 35 of 40
    assert two["test"] == "two_way_bootstrap_seeds_items" and two["n_seeds"] == 5 and two["n_items"] == 300
    assert two == two_way_bootstrap(score, seeds, n, a="a", b="b", metric="m", reps=199, seed=39)
    same = two_way_bootstrap(lambda si, ii: 0.0, seeds, n, metric="m", reps=99)
    assert same["diff"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["verdict"] == "tie"
    assert two_way_bootstrap(score, 1, n) is None  # one seed: no spread over seeds
    blocks = two_way_bootstrap(score, seeds, n, metric="m", reps=199, block=10.0)
    groups = two_way_bootstrap(score, seeds, n, metric="m", reps=199, groups=np.arange(n) // 3)
    assert blocks["ci_low"] < blocks["diff"] < blocks["ci_high"] and groups["ci_low"] < groups["diff"] < groups["ci_high"]
