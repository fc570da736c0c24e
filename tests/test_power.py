"""What each test could have detected (minimum detectable effects), one-sided Clark-West, the grouped bootstrap,
Sharpe-ratio inference (Lo 2002; Ledoit-Wolf 2008), the expanding mean's history and the panel's execution
lag: against hand computations, published formulas and simulations where the answer is known."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from r2n2.errors import ConfigError, DataError
from r2n2.evaluate import metrics as M
from r2n2.evaluate import stats as S
from r2n2.evaluate import trading as T

from .test_stats import _classes

Z975, Z95, Z80 = 1.959963984540054, 1.6448536269514722, 0.8416212335729143


# ---- the MDE formula -----------------------------------------------------------------------------------------

def test_mde_hand_values_and_student_t():
    assert S.minimum_detectable_effect(1.0) == pytest.approx(Z975 + Z80)  # 2.8016
    assert S.minimum_detectable_effect(2.0, sided="one-sided") == pytest.approx(2 * (Z95 + Z80))  # 4.9730
    assert S.minimum_detectable_effect(1.0, df=4) == pytest.approx(st.t.ppf(0.975, 4) + st.t.ppf(0.8, 4))
    assert S.minimum_detectable_effect(None) is None and S.minimum_detectable_effect(0.0) is None
    y = np.array([1.0, -1.0, 2.0, 0.0])
    assert S.diebold_mariano(y, y * 0.5, y * 0.5)["mde"] is None  # identical forecasts: no power to state
    with pytest.raises(DataError, match="sided must be 'two-sided' or 'one-sided', got 'left'"):
        S.minimum_detectable_effect(1.0, sided="left")


def test_a_mean_at_its_mde_is_found_80_percent_of_the_time():
    """Simulation: a z-test of a mean with known se rejects about 5 % under the null, about 80 % when the true
    mean equals the MDE, nearly always at twice the MDE."""
    rng = np.random.default_rng(0)
    n, sims = 100, 2000
    se = 1 / math.sqrt(n)
    mde = S.minimum_detectable_effect(se)
    rate = {}
    for k in (0, 1, 2):
        x = rng.standard_normal((sims, n)) + k * mde
        rate[k] = np.mean(np.abs(x.mean(1) / se) > Z975)
    assert abs(rate[0] - 0.05) < 0.015 and abs(rate[1] - 0.80) < 0.03 and rate[2] > 0.99


def test_every_comparison_carries_its_mde_and_sidedness():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(80)
    good, noise = 0.6 * y + 0.5 * rng.standard_normal(80), 0.3 * rng.standard_normal(80)
    dm = S.diebold_mariano(y, good, noise, lags=0)
    se = (dm["ci_high"] - dm["diff"]) / st.t.ppf(0.975, 79)  # the DM interval is diff +- t * se
    assert dm["mde"] == pytest.approx(se * (st.t.ppf(0.975, 79) + st.t.ppf(0.8, 79)))
    assert dm["sided"] == "two-sided"
    ic = pd.Series(np.linspace(-0.1, 0.2, 10))
    d = S.rank_ic_difference(ic, 0.5 * ic, lags=0)
    se = (d["ci_high"] - d["diff"]) / Z975
    assert d["mde"] == pytest.approx((Z975 + Z80) * se)
    # seeds: d = (1, 2, 3), se = 1 / sqrt(3) on 2 degrees of freedom
    c = S.seed_difference([1.5, 2.5, 3.5], [0.5, 0.5, 0.5])
    assert c["mde"] == pytest.approx((st.t.ppf(0.975, 2) + st.t.ppf(0.8, 2)) / math.sqrt(3))
    s = M.rank_ic_summary(pd.Series([0.1, -0.2, 0.3, 0.2]), lags=0)  # se sqrt(0.14) / 4, as in test_stats
    assert s["sided"] == "two-sided" and s["mde"] == pytest.approx((Z975 + Z80) * math.sqrt(0.14) / 4)


def test_bootstrap_mde_is_from_the_sd_of_arch_replications():
    from arch.bootstrap import StationaryBootstrap

    rng = np.random.default_rng(2)
    y = rng.standard_normal(150)
    a, b = 0.5 * y + rng.standard_normal(150), 0.3 * rng.standard_normal(150)
    c = S.rmse_ratio_bootstrap(y, a, b, reps=200, seed=4, block_size=3)
    ea, eb = (y - a) ** 2, (y - b) ** 2
    dist = StationaryBootstrap(3, ea, eb, seed=4).apply(lambda u, v: np.sqrt(u.mean() / v.mean()) - 1, reps=200)
    assert c["mde"] == pytest.approx((Z975 + Z80) * dist[:, 0].std(ddof=1))


def test_oos_r2_mde_is_the_dm_mde_over_the_benchmark_mse_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    y = rng.standard_normal(2000)
    pred, bench = 0.1 * y + 0.1 * rng.standard_normal(2000), np.zeros(2000)
    p = S.oos_r2_mde(y, pred, bench, lags=0)
    dm = S.diebold_mariano(y, pred, bench, lags=0)
    assert p["two-sided"]["oos_r2"] == pytest.approx(dm["mde"] / np.mean(y ** 2))
    r2 = p["two-sided"]["oos_r2"]
    assert p["two-sided"]["rmse_ratio_below_1"] == pytest.approx(1 - math.sqrt(1 - r2))  # RMSE ratio = sqrt(1 - R^2)
    assert p["one-sided"]["oos_r2"] < r2 and p["n"] == 2000
    quarter = S.oos_r2_mde(y[:500], pred[:500], bench[:500], lags=0)["two-sided"]["oos_r2"]
    assert quarter / r2 == pytest.approx(2.0, rel=0.2)  # 1 / sqrt(n)


# ---- Clark-West, one-sided -------------------------------------------------------------------------------------

def test_clark_west_is_one_sided_its_verdict_better_or_tie():
    y = np.array([1.0, -1.0, 2.0, 0.0])
    c = S.clark_west(y, np.array([0.5, 0.5, 1.0, -0.5]), np.zeros(4), lags=0)
    se = math.sqrt(14) / 4  # the worked example of test_stats: f = (1, -1, 4, 0)
    assert (c["sided"], c["ci_low"]) == ("one-sided", None)
    assert c["ci_high"] == pytest.approx(-1 + Z95 * se)  # one-sided 95 % upper bound of diff
    assert c["mde"] == pytest.approx((Z95 + Z80) * se)
    assert S.verdict(c, higher_is_better=False) == "tie"  # t = 1.07: p 0.14
    rng = np.random.default_rng(4)
    y = rng.standard_normal(400)
    good = 0.6 * y + 0.5 * rng.standard_normal(400)
    assert S.verdict(S.clark_west(y, good, np.zeros(400)), higher_is_better=False) == "better"
    bad = S.clark_west(y, -good, np.zeros(400))  # a worse model: no alternative on that side
    assert bad["p_value"] > 0.99 and S.verdict(bad, higher_is_better=False) == "tie"
    # the one-sided bound excludes 0 exactly when the one-sided p is below 5 %
    for seed in range(6):
        r = np.random.default_rng(10 + seed)
        yy = r.standard_normal(150)
        c = S.clark_west(yy, 0.15 * yy + 0.3 * r.standard_normal(150), np.zeros(150))
        assert (c["p_value"] < 0.05) == (c["ci_high"] < 0)


@pytest.mark.parametrize("lo,hi,expected", [(None, -0.1, "better"), (None, 0.1, "tie"), (0.1, None, "worse"),
                                            (None, None, "tie")])
def test_verdict_reads_a_one_sided_bound(lo, hi, expected):
    c = {"diff": -0.2, "ci_low": lo, "ci_high": hi, "sided": "one-sided", "p_value": 0.01}
    assert S.verdict(c, higher_is_better=False) == expected
    assert S.verdict({**c, "sided": "two-sided"}, higher_is_better=False) == "tie"  # None: no interval


# ---- the grouped (near-duplicate) bootstrap ----------------------------------------------------------------------

def test_group_bootstrap_with_singleton_groups_is_the_text_bootstrap():
    y, p1, p2 = _classes(0, 300)
    plain = S.classifier_bootstrap(y, p1, p2, reps=200, seed=5)
    single = S.classifier_bootstrap(y, p1, p2, reps=200, seed=5, groups=np.arange(300))
    assert single["test"] == "group_bootstrap" and plain["test"] == "paired_bootstrap"
    for k in ("diff", "ci_low", "ci_high", "p_value", "mde"):
        assert single[k] == pytest.approx(plain[k]), k
    with pytest.raises(DataError, match="groups must give one label per example, got 3 for 300"):
        S.classifier_bootstrap(y, p1, p2, groups=[0, 1, 2])


def test_group_bootstrap_keeps_twins_together():
    """Every text twice (a retweet of each): resampling texts treats 2n draws as independent and halves the
    variance; resampling the pairs gives the spread of the n distinct texts."""
    y, p1, p2 = _classes(1, 400)
    once = S.classifier_bootstrap(y, p1, p2, reps=400, seed=6)
    twice = [np.repeat(v, 2) for v in (y, p1, p2)]
    texts = S.classifier_bootstrap(*twice, reps=400, seed=6)
    groups = S.classifier_bootstrap(*twice, reps=400, seed=6, groups=np.repeat(np.arange(400), 2))
    assert groups["diff"] == pytest.approx(once["diff"])
    assert groups["mde"] == pytest.approx(once["mde"], rel=0.15)
    assert texts["mde"] == pytest.approx(once["mde"] / math.sqrt(2), rel=0.15)
    acc = S.classifier_bootstrap(*twice, metric="accuracy", reps=100, groups=np.repeat(np.arange(400), 2))
    assert acc["diff"] == pytest.approx(np.mean(p1 == y) - np.mean(p2 == y))


def test_sentiment_groups_come_from_the_near_duplicate_key():
    from r2n2.cases.classify import text_groups

    rows = pd.DataFrame({"text": ["RT @a: Great phone! http://t.co/x", "great phone", "awful battery", "Great phone"]})
    assert text_groups(rows).tolist() == [0, 0, 1, 0]


# ---- Sharpe ratios -----------------------------------------------------------------------------------------------

def test_sharpe_se_hand_computed_delta_method():
    r = np.array([0.01, -0.02, 0.03, 0.005, 0.0])
    mu, gamma = r.mean(), np.mean(r ** 2)
    u = np.column_stack([r - mu, r ** 2 - gamma])
    psi = u.T @ u / 5  # 0 lags: the moments' sample covariance
    v = gamma - mu ** 2
    grad = np.array([gamma / v ** 1.5, -mu / (2 * v ** 1.5)])  # d(mu / sqrt(gamma - mu^2))
    assert T.sharpe_ratio_se(r, lags=0) == pytest.approx(math.sqrt(grad @ psi @ grad / 5 * 252))
    assert T.sharpe_ratio_se(np.zeros(5)) is None
    p = T.performance(r)
    assert p["sharpe_se"] == pytest.approx(T.sharpe_ratio_se(r))


def test_sharpe_se_matches_lo_iid_formula_and_counts_autocorrelation():
    rng = np.random.default_rng(7)
    n = 20000
    r = 0.0005 + 0.01 * rng.standard_normal(n)
    sr = r.mean() / r.std()
    lo_iid = math.sqrt((1 + sr ** 2 / 2) / n * 252)  # Lo (2002), IID normal returns
    assert T.sharpe_ratio_se(r, lags=0) == pytest.approx(lo_iid, rel=0.03)
    # AR(1) returns, rho 0.3: the spread of the estimate over samples is about sqrt(1.3 / 0.7) times the IID one;
    # the HAC standard error follows it
    sims, n = 300, 1000
    e = rng.standard_normal((sims, n + 50))
    x = np.zeros_like(e)
    for t in range(1, n + 50):
        x[:, t] = 0.3 * x[:, t - 1] + e[:, t]
    x = 0.0005 + 0.01 * x[:, 50:] / x[:, 50:].std()
    srs = np.array([T.performance(row)["sharpe"] for row in x])
    ses = np.array([T.sharpe_ratio_se(row, lags=10) for row in x])
    assert np.mean(ses) == pytest.approx(srs.std(), rel=0.15)
    assert srs.std() > 1.25 * math.sqrt(252 / n)  # the IID se would be too small (by sqrt(1.3 / 0.7) = 1.36)


def _pair(rng, n, rho=0.5, shift=0.0):
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    a = 0.0004 + 0.01 * z1
    b = 0.0004 + shift + 0.01 * (rho * z1 + math.sqrt(1 - rho ** 2) * z2)
    return a, b


def test_sharpe_difference_matches_memmel_under_iid_normality():
    rng = np.random.default_rng(8)
    n = 40000
    a, b = _pair(rng, n, rho=0.6, shift=0.0003)
    c = T.sharpe_difference(a, b, a="a", b="b", lags=0)
    sa, sb, rho = a.mean() / a.std(), b.mean() / b.std(), np.corrcoef(a, b)[0, 1]
    memmel = math.sqrt((2 - 2 * rho + 0.5 * (sa ** 2 + sb ** 2 - 2 * sa * sb * rho ** 2)) / n * 252)
    se = (c["ci_high"] - c["diff"]) / Z975
    assert se == pytest.approx(memmel, rel=0.05)
    assert c["diff"] == pytest.approx(T.performance(a)["sharpe"] - T.performance(b)["sharpe"])
    assert (c["test"], c["sided"], tuple(c)) == ("ledoit_wolf_hac", "two-sided", S.COMPARISON_KEYS)
    r = T.sharpe_difference(b, a, lags=0)
    assert r["diff"] == pytest.approx(-c["diff"]) and r["p_value"] == pytest.approx(c["p_value"])


def test_sharpe_difference_is_calibrated_and_finds_a_gap_of_twice_its_mde():
    rng = np.random.default_rng(9)
    n, sims = 500, 300
    null = [T.sharpe_difference(*_pair(rng, n))["p_value"] for _ in range(sims)]
    assert np.mean(np.array(null) < 0.05) == pytest.approx(0.05, abs=0.035)
    mde = np.mean([T.sharpe_difference(*_pair(rng, n))["mde"] for _ in range(20)])  # annualised Sharpe units
    shift = 2 * mde / math.sqrt(252) * 0.01  # a daily mean gap giving b a Sharpe 2 MDE higher
    found = [S.verdict(T.sharpe_difference(*_pair(rng, n, shift=shift)), higher_is_better=True) == "worse"
             for _ in range(100)]
    assert np.mean(found) > 0.9


def test_sharpe_difference_rejects_bad_input_and_flat_strategies():
    with pytest.raises(DataError, match="one length >= 3, got 4 and 3 days"):
        T.sharpe_difference(np.ones(4), np.ones(3))
    flat = T.sharpe_difference(np.zeros(10), np.linspace(-0.01, 0.01, 10))
    assert flat["diff"] is None and S.verdict(flat, higher_is_better=True) == "tie"


# ---- the expanding mean's history, the execution lag ----------------------------------------------------------

def test_expanding_mean_history_is_train_and_validation_up_to_each_date():
    from r2n2.cases.forecast import _benchmarks

    split = ["train"] * 4 + [""] * 2 + ["val"] * 3 + [""] * 2 + ["test"] * 3
    target = np.arange(1.0, 15.0)  # one row a day, consecutive
    table = pd.DataFrame({"entity": "x", "date": pd.bdate_range("2020-01-01", periods=14), "split": split,
                          "target": target})
    data = SimpleNamespace(table=table, meta=SimpleNamespace(target="return", horizon=2), key=lambda role: "x")
    rows = table[table["split"] == "test"].reset_index(drop=True)
    hm = _benchmarks(data, "pretrain", "test", rows["target"].to_numpy(), rows)["historical_mean"]
    # test rows are days 11, 12, 13 (0-based); at day d the targets of rows <= d - 2 are known (horizon 2)
    assert hm.tolist() == pytest.approx([target[:10].mean(), target[:11].mean(), target[:12].mean()])


def test_execution_lag_trades_a_day_after_the_signal_and_is_validated():
    from r2n2.cases.crosssection import _signal_metrics
    from r2n2.cases.panel import PanelCase, PanelConfig

    rng = np.random.default_rng(11)
    dates = pd.bdate_range("2021-01-01", periods=60)
    nxt = pd.DataFrame(rng.standard_normal((60, 6)) * 0.01, index=dates, columns=list("ABCDEF"))
    scores = nxt.copy()  # a perfect signal for the next day, useless a day later
    cfg = PanelConfig()
    cfg.evaluate.top_k = 2
    out = {}
    for lag in (0, 1):
        cfg.evaluate.execution_lag = lag
        out[lag] = _signal_metrics(scores, nxt, nxt, cfg, 1)
    assert out[0][2]["rank_ic"] == out[1][2]["rank_ic"] == pytest.approx(1.0)  # the signal itself is unlagged
    ref = T.long_short_portfolio(scores, nxt.shift(-1), k=2, cost_bps=cfg.evaluate.cost_bps)["returns"]
    assert out[1][1]["net"].to_numpy() == pytest.approx(ref.to_numpy())
    assert out[0][2]["long_short_sharpe"] > 10 > abs(out[1][2]["long_short_sharpe"])
    assert out[0][2]["long_short_sharpe_gross"] > out[0][2]["long_short_sharpe"]  # costs only lower it
    cfg.evaluate.execution_lag = 2
    with pytest.raises(ConfigError, match=r"^panel.evaluate.execution_lag must be one of 0, 1, got 2\.$"):
        PanelCase().check_config(cfg, "panel")


def test_comparison_table_shows_sidedness_one_sided_bounds_and_mde():
    from r2n2.evaluate.engine import comparison_table

    cw = {"a": "model", "b": "random_walk", "metric": "mse_adjusted", "diff": -0.5, "ci_low": None, "ci_high": 0.25,
          "p_value": 0.1, "p_adjusted": 0.3, "family": "secondary", "test": "clark_west", "sided": "one-sided",
          "mde": 0.75, "verdict": "tie"}
    text = comparison_table([cw])
    row = ("| model vs random_walk | **tie** | mse_adjusted · Clark–West, one-sided | -0.5 (−∞, 0.25] | 0.3 | 0.1 | "
           "secondary | 0.75 |")
    assert row in text
    assert text.splitlines()[0] == ("| a vs b | verdict | metric · test | diff [95 % CI] | p (Holm) | p raw | family "
                                    "| MDE (80 %) |")
    two = dict(cw, test="diebold_mariano", sided="two-sided", ci_low=-1.25)
    assert "| model vs random_walk | **tie** | mse_adjusted · DM | -0.5 [-1.25, 0.25] | 0.3 | 0.1 | secondary | 0.75 |" \
        in comparison_table([two])
    assert "could not have been seen" in text and "DM: Diebold–Mariano" in text
