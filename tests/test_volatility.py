"""The volatility case: the range estimator and the losses by hand, the baselines' information sets, and the case
through every stage (and a replay) on a tiny synthetic OHLC file."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from r2n2.cases.volatility import FEATURES, HISTORY, VolatilityCase, garman_klass, volatility_features
from r2n2.evaluate.econometric import calibrate, econometric_forecasts, qlike
from r2n2.errors import ConfigError, DataError
from r2n2.evaluate.stats import diebold_mariano
from r2n2.registry import load_params

from .conftest import ROOT, make_prices


def _ohlc(n=400, seed=0) -> pd.DataFrame:
    p = make_prices(n, seed=seed)
    return pd.DataFrame({"entity": "alpha", "date": pd.to_datetime(p["Date"]), "open": p["Open"], "high": p["High"],
                         "low": p["Low"], "close": p["Price"], "volume": p["Vol"].astype(float)})


def _clustered_ohlc(n=420, seed=0) -> pd.DataFrame:
    """OHLC of a GARCH(1,1) return series (volatility clusters, so every baseline reacts to the newest day)."""
    rng = np.random.default_rng(seed)
    var, r = 1e-4, np.empty(n)
    for t in range(n):
        r[t] = math.sqrt(var) * rng.standard_normal()
        var = 1e-6 + 0.1 * r[t] ** 2 + 0.85 * var
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(0.3 * r * rng.uniform(0, 1, n))
    span = np.abs(r) * rng.uniform(0.2, 1.0, n)
    return pd.DataFrame({"entity": "alpha", "date": pd.bdate_range("2015-01-01", periods=n), "open": open_,
                         "high": np.maximum(open_, close) * np.exp(span),
                         "low": np.minimum(open_, close) * np.exp(-span),
                         "close": close})


def test_garman_klass_with_the_overnight_term_by_hand():
    # previous close 100, open 101, high 103, low 100.5, close 102
    gap, hl, co = math.log(101 / 100), math.log(103 / 100.5), math.log(102 / 101)
    hand = gap ** 2 + 0.5 * hl ** 2 - (2 * math.log(2) - 1) * co ** 2
    assert garman_klass(101, 103, 100.5, 102, 100)[()] == pytest.approx(hand, rel=1e-12)
    assert garman_klass(100, 100, 100, 100, 100)[()] == 0  # no range, no gap
    df = _ohlc(300, seed=3)  # any consistent OHLC: never negative (|ln C/O| <= ln H/L)
    v = garman_klass(df["open"], df["high"], df["low"], df["close"], df["close"].shift(1))[1:]
    assert (v >= 0).all()


def test_target_naive_and_har_aggregates_line_up_in_time():
    df = _ohlc(120, seed=1)
    for h in (1, 5):
        f = volatility_features(df, horizon=h, floor=1e-8)
        v = f["proxy"].to_numpy()
        t = 40
        assert f["target"].iloc[t] == pytest.approx(np.log(v[t + 1:t + 1 + h].mean()))  # the next h days
        assert f["naive"].iloc[t] == pytest.approx(np.log(v[t - h + 1:t + 1].mean()))   # the last h days, known at t
        assert f["logvar_22d"].iloc[t] == pytest.approx(np.log(v[t - 21:t + 1].mean()))
        assert f["target_date"].iloc[t] == f["date"].iloc[t + h]
        assert f[FEATURES].iloc[HISTORY:].notna().all().all() and f["logvar_22d"].iloc[:HISTORY].isna().all()


def test_qlike_by_hand():
    assert qlike(2.0, 1.0) == pytest.approx(2 - math.log(2) - 1)
    assert qlike(1.0, 2.0) == pytest.approx(0.5 + math.log(2) - 1)
    assert qlike(3.0, 3.0) == 0
    assert qlike(1.0, 0.5) > qlike(1.0, 2.0)  # under-predicting the variance costs more than over-predicting


def test_dm_on_any_loss_equals_the_projects_dm_for_the_squared_error():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    fa, fb = y + rng.normal(0, 1.0, 300), y + rng.normal(0, 1.1, 300)
    ours = diebold_mariano(y, fa, fb, criterion=lambda y, f: (y - f) ** 2, a="a", b="b", metric="mse", horizon=1)
    ref = diebold_mariano(y, fa, fb, a="a", b="b", horizon=1)
    for k in ("diff", "ci_low", "ci_high", "p_value"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-10), k
    assert ours["metric"] == "mse" and diebold_mariano(np.exp(y), np.exp(fa), np.exp(fb), criterion=qlike, metric="qlike")[
        "metric"] == "qlike"  # QLIKE (the volatility case's second loss) through the same test


def test_calibration_is_the_mean_log_error_and_qlikes_optimal_scale():
    rng = np.random.default_rng(1)
    g = rng.normal(-9, 0.5, 2000)
    y = g + 0.3 + rng.normal(0, 0.6, 2000)
    c = calibrate(y, g)
    assert c["a"] == pytest.approx(np.mean(y - g))
    assert c["b"] > math.exp(c["a"])  # Jensen: the mean of a log-normal lies above the exp of its mean log
    grid = np.linspace(0.5, 3, 501)
    best = grid[np.argmin([qlike(np.exp(y), s * np.exp(g)).mean() for s in grid])]
    assert best == pytest.approx(c["b"], abs=0.01)


def test_baselines_never_see_data_after_a_forecasts_date():
    df = _clustered_ohlc(420, seed=2)
    rows = volatility_features(df, horizon=1, floor=1e-8).iloc[HISTORY:-1].reset_index(drop=True)
    first, last, k = 250, 330, 290
    a = econometric_forecasts(rows, first, last, horizon=1, refit_every=21)
    assert (a["fit_through"] < a["date"]).all()  # every fit ends before the forecast's date
    assert a["fit_through"].nunique() == math.ceil((last - first + 1) / 21)  # one refit a block, expanding
    changed = rows.copy()
    after = changed.index > k
    changed.loc[after, ["ret_close", "logvar_1d"]] *= 3.0  # a different future
    b = econometric_forecasts(changed, first, last, horizon=1, refit_every=21)
    upto = (a["date"] <= rows["date"].iloc[k]).to_numpy()
    cols = ["har", "garch_t", "gjr_garch_t", "ewma"]
    np.testing.assert_allclose(a.loc[upto, cols].to_numpy(), b.loc[upto, cols].to_numpy(), rtol=1e-8)
    assert not np.allclose(a.loc[~upto, cols].to_numpy(), b.loc[~upto, cols].to_numpy())
    # and each forecast uses its own day: the information set is "up to t's close", not lagged a day
    today = rows.copy()
    today.loc[k, ["ret_close", "logvar_1d"]] *= 3.0
    c = econometric_forecasts(today, first, last, horizon=1, refit_every=21)
    at = (a["date"] == rows["date"].iloc[k]).to_numpy()
    before = (a["date"] < rows["date"].iloc[k]).to_numpy()
    assert not np.isclose(a.loc[at, cols].to_numpy(), c.loc[at, cols].to_numpy()).any()
    np.testing.assert_allclose(a.loc[before, cols].to_numpy(), c.loc[before, cols].to_numpy(), rtol=1e-8)


def test_bad_inputs_are_named():
    case = VolatilityCase()
    with pytest.raises(DataError, match="open, high"):
        case.build_windows(load_params(ROOT / "params.yaml").case("volatility"),
                           _ohlc(100).drop(columns=["open", "high"]), Path("."), print)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["volatility"]["window"]["floor"] = 0.0
    from r2n2.registry import parse_params

    with pytest.raises(ConfigError, match="volatility.window.floor"):
        parse_params(raw)


def _tiny_project(root: Path) -> None:
    a, b = _ohlc(420, seed=4), _ohlc(420, seed=5).assign(entity="beta")
    pd.concat([a, b]).assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d")).to_csv(root / "ohlc.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = {"data": {"source": str(root / "ohlc.csv")}, "validate": {"min_rows": 100},
            "window": {"lookback": 10, "pretrain_entity": "alpha", "finetune_entity": "beta", "val_start": None,
                       "test_start": None, "val_fraction": 0.25, "test_fraction": 0.25, "val_days": 60,
                       "holdout_days": 30},
            "model": {"hidden_size": 8}, "train": {"epochs": 2, "batch_size": 32}, "finetune": {"epochs": 1},
            "monitor": {"min_samples": 10}, "evaluate": {"bootstrap": 200, "seeds": 2}}
    for section, values in tiny.items():
        params["volatility"][section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _run_tiny(root: Path, monkeypatch, **overrides) -> tuple:
    """The tiny project (params sections updated by ``overrides``) through every stage, in ``root``:
    (its config, its CasePaths, the evaluation's metrics.json)."""
    from r2n2.paths import CasePaths
    from r2n2.registry import run_stage
    from r2n2.stages import STAGES

    _tiny_project(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in overrides.items():
        params["volatility"][section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(root)
    cfg = load_params("params.yaml").case("volatility")
    for st in STAGES:
        run_stage(st.name, "volatility", cfg, root)
    paths = CasePaths("volatility", root)
    return cfg, paths, json.loads((paths.reports / "metrics.json").read_text())


@pytest.mark.slow
def test_the_case_runs_every_stage_predicts_monitors_promotes_and_replays(tmp_path, monkeypatch):
    from r2n2.checkpoint import load_checkpoint
    from r2n2.ops.champion import promote_if_not_worse
    from r2n2.ops.monitoring import monitor_case
    from r2n2.ops.replay import SeriesReplay
    from r2n2.registry import get_case

    cfg, paths, m = _run_tiny(tmp_path, monkeypatch)
    assert {"naive", "har", "garch_t", "gjr_garch_t", "ewma", "no_relational"} <= set(m["baselines"])
    assert {c["metric"] for c in m["comparisons"]} == {"mse_log", "qlike"}
    assert {"diebold_mariano", "paired_t_seeds", "two_way_bootstrap_seeds_items"} <= {c["test"] for c in m["comparisons"]}
    seeded = {(c["b"], c["metric"], c["test"]): c for c in m["comparisons"] if c["a"] == "model"}
    for k in ("mse_log", "qlike"):  # seeds x test days: the paired t's estimate, with both sources of noise
        two, t = seeded[("no_relational", k, "two_way_bootstrap_seeds_items")], seeded[("no_relational", k, "paired_t_seeds")]
        assert two["n_seeds"] == 2 and abs(two["diff"] - t["diff"]) < 1e-9 and two["ci_low"] <= two["diff"] <= two["ci_high"]
    assert set(m["mcs"]) == {"mse_log", "qlike"} and m["mcs"]["qlike"]["included"]
    assert m["refits"]["look_ahead_rows"] == 0 and "finetuned" in m and m["seeds"]["model"]["mse_log"]["n"] == 2
    report = (paths.reports / "report.md").read_text()
    assert "GJR-GARCH" in report and any(v in report for v in ("tie", "better", "worse"))
    assert "Relational module across seeds (two-way bootstrap over seeds and test days)" in report

    case = get_case("volatility")
    model, ck = load_checkpoint(paths.model_dir / "model.pt")
    from r2n2.cases.base import window_meta_of

    out = case.predict(model, window_meta_of(ck), ck, str(tmp_path / "ohlc.csv"), cfg)
    dates_in = sorted(pd.read_csv(tmp_path / "ohlc.csv")["date"].unique())
    assert len(out) > 0 and out.select_dtypes("number").notna().all().all()
    assert (out["target_date"] > out["origin_date"]).all() and (out["horizon_days"] == 1).all()
    assert out["origin_date"].iloc[-1] == pd.Timestamp(dates_in[-1]) and out["target_date"].iloc[-1] == \
        pd.Timestamp(dates_in[-1]) + pd.offsets.BDay(1)
    result = monitor_case(case, cfg, tmp_path)
    assert result["window"]["n"] == 0 or str(result["window"]["start"]) >= str(result["cutoff"])
    decision = promote_if_not_worse(case, cfg, tmp_path)
    assert decision["benchmark"]["id"] == case.naive_name

    dates = sorted(pd.read_parquet(paths.validated)["date"].unique())
    rp = SeriesReplay(case, cfg, Path("."), str(pd.Timestamp(dates[360]).date()),
                      str(pd.Timestamp(dates[-3]).date()), retrain_every=20, monitor_every=5, log=lambda s: None)
    rp.run_until()
    tl = rp.timeline()
    assert (tl["model_train_end"] < tl["date"]).all() and len(rp.retrains) >= 2
    # the replay's naive line is the case's (yesterday's log proxy), not the zero of a return
    naive = rp.table.set_index("date")["naive"].reindex(tl["date"]).to_numpy()
    np.testing.assert_allclose(tl["random_walk"].to_numpy(), naive)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["quantile", "student_t"])
def test_a_distribution_head_gets_conformal_quantiles_crps_and_predict_columns(tmp_path, monkeypatch, head):
    """model.distribution on the volatility case: the head's log-variance quantiles, widened by split conformal
    on validation, scored on test beside HAR / GJR / naive plus their validation residuals' quantiles and the
    ablation's head, with Diebold–Mariano on CRPS; `predict` writes non-crossing q<level> columns."""
    from r2n2.checkpoint import load_checkpoint
    from r2n2.cases.base import window_meta_of
    from r2n2.registry import get_case

    cfg, paths, m = _run_tiny(tmp_path, monkeypatch, model={"distribution": head}, evaluate={"seeds": 1})
    d = m["model"]
    assert d["distribution"] == head and d["conformal"]["fitted_on"] == "validation" and d["crps"] > 0
    assert set(d["coverage"]) == {"0.5", "0.8", "0.9", "0.98"} and all(0 <= v <= 1 for v in d["coverage"].values())
    assert set(m["distribution_baselines"]) == {"har", "gjr_garch_t", "naive", "no_relational"}
    crps = {c["b"]: c for c in m["comparisons"] if c["metric"] == "crps"}
    assert set(crps) == set(m["distribution_baselines"]) and all(c["verdict"] and c["mde"] for c in crps.values())
    assert m["power"]["crps"] and "## Forecast distribution of the log variance" in (paths.reports / "report.md").read_text()
    model, ck = load_checkpoint(paths.model_dir / "model.pt")
    out = get_case("volatility").predict(model, window_meta_of(ck), ck, str(tmp_path / "ohlc.csv"), cfg)
    q = out[[f"q{t:g}" for t in cfg.model.quantiles]].to_numpy()
    assert len(q) > 0 and np.isfinite(q).all() and (np.diff(q, axis=1) >= -1e-6).all()  # non-crossing
