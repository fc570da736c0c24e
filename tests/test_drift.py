"""Calibrated drift detection on synthetic markets with volatility clustering (seeded): calm series stay calm,
planted breaks alarm within a stated number of steps, degenerate columns do not alarm."""

from __future__ import annotations

import numpy as np
import pytest

from r2n2.errors import ConfigError, DataError
from r2n2.ops.drift import family_quantile, fit_detector, fit_error_monitor, fit_monitor

REF, POST, W = 2500, 1000, 60  # calibration history, steps after the cut-off, monitor window
FEATURES = ("ret_open", "ret_high", "ret_low", "ret_close", "log_volume")


def garch_t(n: int, *, rng: np.random.Generator, df: int = 5, alpha: float = 0.08, beta: float = 0.9,
            var: float = 1e-4) -> np.ndarray:
    """GARCH(1,1) returns with unit-variance Student-t innovations: fat tails and volatility clustering."""
    z = rng.standard_t(df, n + 500) / np.sqrt(df / (df - 2))
    r, s2 = np.empty(n + 500), var
    for t in range(n + 500):
        r[t] = np.sqrt(s2) * z[t]
        s2 = var * (1 - alpha - beta) + alpha * r[t] ** 2 + beta * s2
    return r[500:]  # burn-in dropped


def market(n: int, *, seed: int, brk: str | None = None, at: int = 0) -> dict:
    """Five S&P-like inputs, the model's prediction of tomorrow's close return, and the squared errors of
    the model and of the random walk (which predicts a zero return). ``brk`` plants a change from step ``at``:
    "error" (the model's MSE doubles), "variance" (close returns' variance x3), "mean" (close returns shift by
    one unconditional standard deviation)."""
    rng = np.random.default_rng(seed)
    r = garch_t(n + 1, rng=rng)
    if brk == "variance":
        r[at + 1:] *= np.sqrt(3.0)
    if brk == "mean":
        r[at + 1:] += 0.01
    vol = np.sqrt(np.convolve(r ** 2, np.ones(20) / 20)[: n + 1])  # trailing 20-day realised volatility
    gap = 0.3 * r + 0.002 * rng.standard_t(5, n + 1)
    gap[: int(0.4 * n)] = 0.0  # like the S&P open in early years: equal to the previous close for a long run
    gap[rng.random(n + 1) < 0.3] = 0.0  # and exact zeros scattered later
    logv = np.empty(n + 1)
    logv[0] = 0.0
    eps = rng.standard_normal(n + 1)
    for t in range(1, n + 1):
        logv[t] = 0.9 * logv[t - 1] + 0.3 * eps[t]
    x = {"ret_open": gap, "ret_high": np.abs(r) * 0.6 + vol * rng.random(n + 1),
         "ret_low": -np.abs(r) * 0.6 - vol * rng.random(n + 1), "ret_close": r, "log_volume": logv}
    x = {k: v[:-1] for k, v in x.items()}  # inputs known on day t
    y, pred = r[1:], 0.1 * r[:-1]  # tomorrow's return; a weak model close to the random walk
    if brk == "error":
        pred = pred.copy()
        pred[at:] += vol[:-1][at:] * rng.standard_normal(n - at)  # extra noise ~ MSE doubles
    return {**x, "prediction": pred, "loss": (y - pred) ** 2, "benchmark": y ** 2}


def fit_market_monitor(m: dict, *, n_null: int = 120):
    refs = {k: m[k][:REF] for k in (*FEATURES, "prediction")}
    return fit_monitor(refs, window=W, loss=m["loss"][:REF], benchmark_loss=m["benchmark"][:REF],
                       family_rate=0.05, n_null=n_null, seed=7)


def _check(mon, m: dict, end: int) -> dict:
    lo = end - W
    return mon.check({k: m[k][lo:end] for k in (*FEATURES, "prediction")}, loss=m["loss"][lo:end],
                     benchmark_loss=m["benchmark"][lo:end])


@pytest.fixture(scope="module")
def monitors() -> dict:
    out = {}
    for seed in range(8):
        m = market(REF + POST, seed=seed)
        out[seed] = (m, fit_market_monitor(m))
    return out


def test_calm_market_false_alarm_rate_at_most_5_percent_of_checks(monitors):
    # 7 signals at once (5 inputs, prediction, error ratio), a check every 20 steps after the cut-off, 8 seeds
    alarms = [_check(mon, m, REF + e)["alarm"] for m, mon in monitors.values() for e in range(W, POST + 1, 20)]
    assert len(alarms) == 8 * 48
    assert np.mean(alarms) <= 0.05


@pytest.mark.parametrize(("brk", "bound"), [("error", 40), ("mean", 60)])
def test_planted_break_alarms_within_bound(monitors, brk, bound):
    # measured delays over seeds 0-7: error (MSE x2) 1-25 steps, mean shift (1 sd) 19-43 steps
    at = REF + 300
    for seed in range(4):
        mon = monitors[seed][1]
        mb = market(REF + POST, seed=seed, brk=brk, at=at)
        assert not _check(mon, mb, at)["alarm"], "calm just before the break"
        delay = next((e - at for e in range(at + 1, at + bound + 1) if _check(mon, mb, e)["alarm"]), None)
        assert delay is not None, f"seed {seed}: no alarm within {bound} steps of the {brk} break"


def test_variance_break_in_a_calm_input_is_found_fast():
    # an input without volatility clustering: KS is slow on scale changes, but variance x3 is found within a window
    rng = np.random.default_rng(3)
    ref, post = rng.standard_normal(1000), rng.standard_normal(200)
    post[100:] *= np.sqrt(3.0)
    det = fit_detector(ref, window=W, quantile=family_quantile(7), n_null=150)
    first = next(e for e in range(W, 201) if det.check(post[e - W:e])["alarm"])
    assert 100 < first <= 100 + W  # measured: 59 steps after the break


def test_window_below_min_samples_never_alarms():
    det = fit_detector(np.random.default_rng(0).standard_normal(600), window=W, min_samples=20, n_null=100)
    short = det.check(np.full(19, 50.0))  # absurdly shifted, but too few values
    assert short == {"test": "ks", "n": 19, "statistic": None, "threshold": None, "p_value": None,
                     "nominal_p_value": None, "alarm": False}
    assert det.check(np.full(20, 50.0))["alarm"]  # the same shift with enough values does alarm


def test_zero_heavy_and_constant_columns_do_not_false_alarm():
    rng = np.random.default_rng(1)
    col = 0.003 * rng.standard_t(4, 3000)
    col[:1200] = 0.0  # a long run of exact zeros (S&P open equal to the previous close)
    col[rng.random(3000) < 0.4] = 0.0  # and many scattered ties at zero
    det = fit_detector(col[:2000], window=W, quantile=family_quantile(7), n_null=150)
    alarms = [det.check(col[e - W:e])["alarm"] for e in range(2000 + W, 3001, 10)]
    assert np.mean(alarms) <= 0.05
    flat = fit_detector(np.full(500, 0.25), window=W, n_null=50)
    calm = flat.check(np.full(W, 0.25))
    assert (calm["statistic"], calm["alarm"]) == (0.0, False)
    assert calm["threshold"] == pytest.approx(flat.iid_threshold(W))  # the null is all 0: the iid floor binds
    assert flat.check(np.linspace(0, 1, W))["alarm"]  # a constant column that starts moving is real change


def test_ks_statistic_and_calibration_are_scipys_and_seeded():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(2)
    ref, win = rng.standard_normal(800), rng.standard_normal(W) + 0.3
    det = fit_detector(ref, window=W, n_null=100, seed=4)
    out = det.check(win)
    assert out["statistic"] == pytest.approx(ks_2samp(win, ref).statistic)
    assert out["threshold"] == fit_detector(ref, window=W, n_null=100, seed=4).threshold  # deterministic
    null = det.null(W) / np.sqrt(W * (len(ref) - 3 * W) / (len(ref) - 2 * W))  # interior windows: rest = 800-3W
    assert np.quantile(null, 0.5) < out["statistic"]
    z = out["statistic"] * np.sqrt(W * 800 / (W + 800))
    assert out["p_value"] == pytest.approx((1 + np.sum(det.null(W) >= z)) / (1 + len(det.null(W))))


def test_the_nulls_fast_ks_statistic_is_scipys():
    from scipy.stats import ks_2samp

    from r2n2.ops.drift import _ks_statistic

    rng = np.random.default_rng(3)
    for n, m in ((60, 800), (7, 3), (200, 200)):
        a, b = rng.standard_normal(m), rng.standard_normal(n) + 0.2
        a[: m // 3] = 0.0  # runs of exact ties, like the S&P open column
        b[: n // 4] = 0.0
        for x, y in ((a, b), (np.round(a, 1), np.round(b, 1))):
            assert _ks_statistic(x, y) == pytest.approx(ks_2samp(y, x).statistic, abs=1e-12)


def test_categorical_shares_chi_square_calm_and_break():
    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(5)
    ref = rng.choice(3, 3000, p=[0.3, 0.3, 0.4])  # seeded arrival order, independent of the label
    calm = rng.choice(3, 1000, p=[0.3, 0.3, 0.4])
    det = fit_detector(ref, window=200, kind="categorical", quantile=0.99, n_null=150)
    assert np.mean([det.check(calm[e - 200:e])["alarm"] for e in range(200, 1001, 20)]) <= 0.05
    shifted = rng.choice(3, 200, p=[0.15, 0.15, 0.7])
    out = det.check(shifted)
    table = np.vstack([np.bincount(shifted, minlength=3), np.bincount(ref, minlength=3)])
    assert out["statistic"] == pytest.approx(chi2_contingency(table, correction=False).statistic)
    assert out["alarm"]
    single = fit_detector(np.zeros(500, int), window=50, kind="categorical", n_null=50)
    assert not single.check(np.zeros(50, int))["alarm"]  # one class throughout: nothing to test


def test_error_monitor_scan_finds_the_jump_and_pairs_losses():
    rng = np.random.default_rng(6)
    y = rng.standard_normal(2000)
    loss, bench = (y - 0.1 * rng.standard_normal(2000)) ** 2, y ** 2
    mon = fit_error_monitor(loss[:1500], bench[:1500], window=W, quantile=0.99)
    post_loss = loss[1500:].copy()
    post_loss[300:] += 1.0  # the model's MSE doubles from step 300
    res = mon.scan(post_loss, bench[1500:], every=1)
    assert res["alarm"] and 300 <= res["first_alarm"] <= 320
    assert not mon.scan(loss[1500:1800], bench[1500:1800])["alarm"]
    with pytest.raises(DataError, match=r"losses \(3\) and the benchmark's \(2\) must pair"):
        mon.check(np.ones(3), np.ones(2))


def test_family_quantile_is_bonferroni_and_used_by_the_monitor(monitors):
    assert family_quantile(7, 0.05) == pytest.approx(1 - 0.05 / 7)
    mon = monitors[0][1]
    assert len(mon.detectors) == 6 and all(d.quantile == pytest.approx(1 - 0.05 / 7) for d in mon.detectors.values())
    assert mon.errors.quantile == pytest.approx(1 - 0.05 / 7)


def test_bad_inputs_give_one_clear_message():
    with pytest.raises(DataError, match=r"^The drift reference has 100 usable values; calibrating windows of 60 "
                                        r"needs at least 240 \(a window, a guard either side, and as much history "
                                        r"again\)\.$"):
        fit_detector(np.zeros(100), window=60)
    with pytest.raises(ConfigError, match="Drift kind must be 'continuous' or 'categorical', got 'ordinal'"):
        fit_detector(np.zeros(500), window=60, kind="ordinal")
    with pytest.raises(ConfigError, match="alarm quantile must lie strictly between 0 and 1"):
        fit_detector(np.zeros(500), window=60, quantile=1.0)
    with pytest.raises(DataError, match="Categorical drift needs class ids"):
        fit_detector(np.array([0.5, 1.0] * 200), window=60, kind="categorical")


def test_a_short_reference_does_not_false_alarm_thanks_to_the_iid_floor():
    """A reference of only 4 windows (the deployed text monitor's case): the null drawn from overlapping windows
    has too low upper quantiles. Independent calm windows, per-signal nominal rate 1.25 %: measured without the
    independent-draws floor 9 % (KS), 6.8 % (chi-square), 3.8 % (error rate); with it 0.75 % each."""
    q = family_quantile(4)
    rng = np.random.default_rng(0)
    alarms = {"ks": [], "chi2": [], "error": []}
    for rep in range(20):
        ks = fit_detector(rng.poisson(12, 4 * 100).astype(float), window=100, quantile=q, seed=rep)
        chi = fit_detector(rng.choice(3, 400, p=[.3, .3, .4]), window=100, quantile=q, kind="categorical",
                           n_classes=3, seed=rep)
        err = fit_error_monitor((rng.random(400) < 0.25).astype(float), window=100, quantile=q)
        for _ in range(20):
            alarms["ks"].append(ks.check(rng.poisson(12, 100))["alarm"])
            alarms["chi2"].append(chi.check(rng.choice(3, 100, p=[.3, .3, .4]))["alarm"])
            alarms["error"].append(err.check((rng.random(100) < 0.25).astype(float))["alarm"])
    assert {k: np.mean(v) <= 0.03 for k, v in alarms.items()} == {"ks": True, "chi2": True, "error": True}
    # and the floor still lets a real change through: the error rate doubles
    assert err.check((rng.random(100) < 0.5).astype(float))["alarm"]
