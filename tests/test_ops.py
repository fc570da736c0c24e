"""Operations in time: increments that are refused leave the snapshot untouched, promotion never looks at the
test split, and the replay's monitor alarms on a planted break but not on a calm series, with no look-ahead."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from r2n2.cases.series import SeriesMeta
from r2n2.registry import get_case, load_params
from r2n2.ops.champion import fresh_window
from r2n2.ops.replay import SeriesReplay

from .conftest import make_prices, rebuild_retrain

TINY = ["--set", "stocks.validate.min_rows=50", "--set", "stocks.window.lookback=10",
        "--set", "stocks.window.val_start=null", "--set", "stocks.window.test_start=null",
        "--set", "stocks.model.hidden_size=8", "--set", "stocks.train.epochs=2"]


def _meta(val_start, test_start, time="date"):
    return SeriesMeta(case="stocks", time=time, cuts={"start": "2000-01-03", "val_start": val_start,
                                                      "test_start": test_start, "end": "2020-01-01"}, splits={})


@pytest.mark.parametrize("challenger,champion,expected", [
    (("2015-01-02", "2017-01-03"), None, {"start": "2015-01-02", "end": "2017-01-02"}),
    (("2015-01-02", "2017-01-03"), ("2013-01-02", "2016-01-04"), {"start": "2016-01-04", "end": "2017-01-02"}),
    (("2015-01-02", "2017-01-03"), ("2015-01-02", "2017-01-03"), None),  # nothing after the champion's cut-off
])
def test_promotion_window_is_fresh_and_before_the_test_split(challenger, champion, expected):
    chal = _meta(*challenger)
    window = fresh_window(chal, None if champion is None else _meta(*champion))
    assert window == expected
    if window is not None:
        assert window["end"] < chal.cuts["test_start"]  # never the test split
        assert champion is None or window["start"] >= champion[1]  # never what the champion trained on


def test_forecast_reference_spans_the_whole_pre_cutoff_history_and_never_the_checked_rows():
    from r2n2.config import MonitorConfig
    from r2n2.ops.monitoring import fit_frame_monitor

    dates = pd.bdate_range("2000-01-03", periods=3000)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": dates, "x": rng.normal(size=3000), "pred": np.arange(3000.0),
                          "loss": rng.random(3000), "bench_loss": rng.random(3000)})
    meta = _meta(str(dates[2000].date()), str(dates[2500].date()))
    kw = dict(inputs=["x"], n_null=50)
    history, _ = fit_frame_monitor(frame, meta, MonitorConfig(), prediction_history=True, **kw)
    validation, _ = fit_frame_monitor(frame, meta, MonitorConfig(), **kw)
    # the forecast's reference: every row before the cut-off, or only the validation rows; never a checked row
    assert history.detectors["prediction"].reference.tolist() == list(range(2500))
    assert validation.detectors["prediction"].reference.tolist() == list(range(2000, 2500))
    assert len(history.detectors["x"].reference) == len(validation.detectors["x"].reference) == 2000


def _stage(capsys, stage, *args):
    code = main([stage, "stocks", *TINY, *args])
    return code, capsys.readouterr().err


def _bad_rows(df: pd.DataFrame) -> pd.DataFrame:
    bad = df.copy()
    bad.loc[bad.index[3], "Price"] = -5.0  # a negative close inside the increment
    return bad


@pytest.mark.parametrize("kind", ["folder", "sqlite"])
def test_bad_increment_leaves_the_snapshot_byte_identical(project, capsys, kind):
    prices = make_prices(300)
    first, good_inc, bad_inc = prices.iloc[:200], prices.iloc[200:250], prices.iloc[250:]
    if kind == "folder":
        drops = project / "drops"
        drops.mkdir()
        first.to_csv(drops / "2015-01.csv", index=False)
        source = ["--set", "stocks.data.source=drops", "--set", "stocks.data.entity=spx"]

        def add(df, name):
            df.to_csv(drops / f"{name}.csv", index=False)
    else:
        db = project / "prices.db"
        with sqlite3.connect(db) as con:
            first.to_sql("prices", con, index=False)
        source = ["--set", f"stocks.data.source=sqlite:///{db}", "--set", "stocks.data.query=SELECT * FROM prices",
                  "--set", "stocks.data.entity=spx"]

        def add(df, name):
            with sqlite3.connect(db) as con:
                df.to_sql("prices", con, index=False, if_exists="append")
    source += ["--set", "stocks.data.columns.close=Price"]
    for stage in ("ingest", "validate"):
        assert _stage(capsys, stage, *source)[0] == 0
    add(good_inc, "2015-02")
    code, err = _stage(capsys, "ingest", *source)
    assert code == 0
    assert _stage(capsys, "validate", *source)[0] == 0
    snapshot = (project / "data/validated/stocks.parquet").read_bytes()
    assert len(pd.read_parquet(project / "data/validated/stocks.parquet")) == 250  # the increment was appended
    add(_bad_rows(bad_inc), "2015-03")
    assert _stage(capsys, "ingest", *source)[0] == 0
    code, err = _stage(capsys, "validate", *source)
    assert code == 3 and "close -5.0 at" in err and "Traceback" not in err
    assert (project / "data/validated/stocks.parquet").read_bytes() == snapshot


def _series_with_break(n=1300, break_at=None, seed=3, t_df=None):
    """Daily prices of a calm random walk (normal steps, or Student-t with ``t_df`` degrees of freedom scaled to
    the same volatility); from ``break_at`` on the volatility is four times higher."""
    rng = np.random.default_rng(seed)
    vol = np.full(n, 0.008)
    if break_at is not None:
        vol[break_at:] *= 4
    steps = rng.normal(0, 1, n) if t_df is None else rng.standard_t(t_df, n) / np.sqrt(t_df / (t_df - 2))
    close = 100 * np.exp(np.cumsum(steps * vol))
    dates = pd.bdate_range("2010-01-01", periods=n)
    return pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Price": close}), dates


@pytest.fixture(scope="module")
def dask_address():
    """One 2-process local Dask cluster for the module's long replays: their scheduled challengers train two at a
    time (the bytes a sequential run trains: test_replay_on_two_dask_workers_writes_the_sequential_bytes)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _replay(project, capsys, prices, dates, start, every=120, dask_address=None, extra=()):
    prices.to_csv("prices.csv", index=False)
    args = ["--set", "stocks.data.source=prices.csv", "--set", "stocks.data.columns.close=Price", *extra]
    for stage in ("ingest", "validate"):
        assert _stage(capsys, stage, *args)[0] == 0, capsys.readouterr().err
    cfg = load_params("params.yaml", [a for a in [*TINY, *args] if a != "--set"]).case("stocks")
    rp = SeriesReplay(get_case("stocks"), cfg, Path("."), str(dates[start].date()), str(dates[-1].date()),
                      retrain_every=every, monitor_every=5, dask_address=dask_address, log=lambda m: None)
    rp.run_until()
    return rp.timeline()


@pytest.mark.slow
@pytest.mark.parametrize("every", [120, 21])
def test_replay_alarms_on_a_planted_break_and_not_on_a_calm_series(project, capsys, every, dask_address):
    """Retraining every 120 days, or monthly (21): after each promotion the drift tests wait for ``min_samples``
    new days, but the input tests and the CUSUM charts can alarm at every check."""
    alarms = checks = 0
    # one calm series has ~80 checks: pooled over 3 normal series (237 checks), with monthly retraining also 2
    # Student-t(5) series (395 checks), the rate is estimated (measured on 6 calm t(5) seeds, 474 checks: 1.1 % monthly, 3.6 % every 120 days)
    calm_series = ((3, None), (4, None), (5, None), (6, 5), (7, 5)) if every == 21 else ((3, None), (4, None), (5, None))
    for seed, t_df in calm_series:
        calm, dates = _series_with_break(seed=seed, t_df=t_df)
        tl = _replay(project, capsys, calm, dates, 900, every, dask_address)
        assert (tl["model_train_end"] < tl["date"]).all()  # every prediction from a model trained before its date
        checks += len(tl) // 5
        alarms += int(tl["alarm"].sum())
    assert alarms <= 0.05 * checks, (alarms, checks)

    for seed, t_df in ((3, None), (4, 5), (5, 5)) if every == 21 else ((3, None),):  # normal and Student-t(5) steps
        broken, dates = _series_with_break(break_at=1000, seed=seed, t_df=t_df)
        tl = _replay(project, capsys, broken, dates, 900, every, dask_address)
        after = tl[(tl["date"] >= dates[1000]) & tl["alarm"]]
        before = tl[tl["date"] < dates[1000]]
        if t_df is None:  # the normal series: within the false-alarm budget on its own
            assert before["alarm"].sum() <= max(1, 0.05 * len(before) // 5)
        assert len(after) and np.searchsorted(dates, after["date"].iloc[0]) - 1000 <= 30  # found within 30 days
        assert (tl["model_train_end"] < tl["date"]).all()
    assert json.dumps(tl.astype(str).to_dict("records"))  # a plain table


@pytest.mark.slow
def test_replay_coverage_chart_finds_a_volatility_break_with_a_distribution_head(project, capsys):
    """A quantile head deployed through the replay: its 90 % intervals, adapted online across promotions, and the
    Bernoulli CUSUM of the 5 % VaR exceedances. Volatility x 4 from day 1,000: the coverage chart alarms within 30
    trading days, not before the break; adaptive conformal keeps the live coverage near 90 % where the raw
    intervals fall far short."""
    from r2n2.ops.reports import _live_coverage

    broken, dates = _series_with_break(break_at=1000, seed=3)
    prices = broken
    prices.to_csv("prices.csv", index=False)
    args = ["--set", "stocks.data.source=prices.csv", "--set", "stocks.data.columns.close=Price",
            "--set", "stocks.model.distribution=quantile"]
    for stage in ("ingest", "validate"):
        assert _stage(capsys, stage, *args)[0] == 0, capsys.readouterr().err
    cfg = load_params("params.yaml", [a for a in [*TINY, *args] if a != "--set"]).case("stocks")
    rp = SeriesReplay(get_case("stocks"), cfg, Path("."), str(dates[900].date()), str(dates[-1].date()),
                      retrain_every=120, monitor_every=5, log=lambda m: None)
    rp.run_until()
    tl = rp.timeline()
    assert tl["q_lo"].notna().all() and (tl["q_lo"] < tl["q_hi"]).all()
    cov = tl[tl["coverage_alarm"]]
    assert not (cov["date"] < dates[1000]).any(), cov["date"].tolist()
    assert len(cov) and np.searchsorted(dates, cov["date"].iloc[0]) - 1000 <= 30, cov["date"].tolist()
    live = _live_coverage(rp, tl)
    assert live["adaptive"] > 0.8 and live["raw"] < live["adaptive"] - 0.1, live


def test_rolling_promotion_window_is_the_holdout_after_both_cut_offs():
    def rolling(val_start, test_start, end):
        m = _meta(val_start, test_start)
        m.cut_rule, m.cuts["end"] = "rolling", end
        return m

    chal = rolling("2016-01-04", "2016-10-03", "2016-12-30")
    assert fresh_window(chal, None) == {"start": "2016-10-03", "end": "2016-12-30"}
    # the champion early-stopped until 2016-11-01: the window starts at its cut-off, after both
    assert fresh_window(chal, rolling("2016-02-01", "2016-11-01", "2016-11-30")) == \
        {"start": "2016-11-01", "end": "2016-12-30"}
    assert fresh_window(chal, rolling("2016-03-01", "2017-01-03", "2017-01-31")) is None


def _short_replay_project(capsys):
    """760 days of two tiny series, ingested and validated, with short rolling cuts: (cfg, dates, --set args)."""
    make_prices(760, seed=7).to_csv("prices.csv", index=False)
    args = ["--set", "stocks.data.source=prices.csv", "--set", "stocks.data.columns.close=Price",
            "--set", "stocks.window.val_days=60", "--set", "stocks.window.holdout_days=30"]
    for stage in ("ingest", "validate"):
        assert _stage(capsys, stage, *args)[0] == 0, capsys.readouterr().err
    cfg = load_params("params.yaml", [a for a in [*TINY, *args] if a != "--set"]).case("stocks")
    return cfg, pd.bdate_range("2015-01-01", periods=760), args


@pytest.mark.slow
def test_replay_retrains_reproduce_byte_for_byte_through_the_stage_commands(project, capsys, tmp_path):
    """Each from-scratch retrain of the replay is the train stage on rolling windows of the data known that day:
    its ``set`` overrides, given to `r2n2 ingest/validate/window/train`, rebuild the same model.pt bytes."""
    cfg, dates, args = _short_replay_project(capsys)
    rp = SeriesReplay(get_case("stocks"), cfg, Path("."), str(dates[600].date()), str(dates[-1].date()),
                      retrain_every=40, monitor_every=5, log=lambda m: None)
    rp.run_until()
    summary = rp.write_report(Path("data/reports/stocks/replay"), seconds=0.0)
    retrains = summary["retrains"]
    assert len(retrains) >= 3 and all(r["model_sha256"] and r["set"] for r in retrains)
    assert len({r["model_sha256"] for r in retrains}) == len(retrains)  # each saw other data
    for r, held in zip(retrains[:2], (False, True)):  # the second in a project already holding later rows
        got = rebuild_retrain(r, tmp_path / r["date"], ["params.yaml", "prices.csv"],
                              lambda stage, sets: _stage(capsys, stage, *args, *sets)[0], holding_later_rows=held)
        assert got == r["model_sha256"], r["date"]
    assert summary["look_ahead_rows"] == 0 and summary["first_model"]["model_sha256"]


@pytest.mark.slow
def test_replay_on_two_dask_workers_writes_the_sequential_bytes(project, capsys):
    """The scheduled from-scratch challengers trained ahead as tasks on a 2-worker LocalCluster: the timeline and
    summary are byte for byte the sequential run's (same torch threads per training)."""
    cfg, dates, _ = _short_replay_project(capsys)
    out = {}
    for workers in (1, 2):
        logs = []
        rp = SeriesReplay(get_case("stocks"), cfg, Path("."), str(dates[600].date()), str(dates[-1].date()),
                          retrain_every=40, monitor_every=5, workers=workers, threads=1, log=logs.append)
        for until in rp.period_ends():
            rp.run_until(until)
        rep = Path(f"data/reports/stocks/replay-{workers}")
        summary = rp.write_report(rep, seconds=0.0)
        out[workers] = [(rep / f).read_bytes() for f in ("timeline.parquet", "summary.json")]
        assert json.loads((rep / "timing.json").read_text())["workers"] == workers
        assert len(summary["retrains"]) >= 3 and summary["look_ahead_rows"] == 0  # 3 scheduled, and after alarms
        assert rp._dask == (None, None) and not rp.prefitted  # every challenger collected, the cluster closed
    assert ("training the first model and 3 scheduled challengers on 2 local Dask workers x 1 torch thread(s) each, "
            "in calendar order, while the walk runs") in logs
    assert out[1] == out[2]


def test_known_breaks_come_from_the_cases_params_not_a_constant():
    """A replay report measures alarm delays against ``<case>.monitor.events`` (an FX or crypto case declares its
    own; the built-in equity cases list four US breaks in params.yaml), and a bad date is refused there."""
    from r2n2.errors import ConfigError
    from r2n2.ops.reports import _break_delays

    from .conftest import ROOT

    dates = pd.bdate_range("2020-01-01", periods=300)
    tl = pd.DataFrame({"date": dates, "alarm": False})
    tl.loc[[90, 105, 107], "alarm"] = True
    events = {"planted": str(dates[100].date()), "after the period": "2031-01-02"}
    assert _break_delays(tl, events) == {"planted": {"first_alarm": str(dates[105].date()), "trading_days": 5}}
    assert _break_delays(tl, {}) == {}
    params = load_params(ROOT / "params.yaml")
    assert params.case("stocks").monitor.events["Lehman, Sep 2008"] == "2008-09-15"
    assert params.case("panel").monitor.events == {}
    with pytest.raises(ConfigError, match=r"^stocks\.monitor\.events: 'Lehman' must map to an ISO date such as "
                                          r"2008-09-15, got '2008-09-31'\.$"):
        load_params(ROOT / "params.yaml", ['stocks.monitor.events={"Lehman": "2008-09-31"}'])


def test_serve_covers_every_case_params_define_unless_it_lists_them():
    import yaml

    from r2n2.registry import INSTANCES, parse_params

    from .conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert parse_params(raw).serve.cases == ["stocks", "sentiment", "panel"]  # as params.yaml lists them
    del raw["serve"]
    raw["brent"] = {"case": "stocks"}
    try:
        assert parse_params(raw).serve.cases == ["stocks", "sentiment", "panel", "volatility", "brent"]
    finally:
        INSTANCES.pop("brent", None)  # the instance is registered in this process: not for the next test


def test_a_replay_comparison_table_drops_the_columns_no_row_fills():
    """The replay's lines are compared one by one: without a Holm p or a family in any row, those columns go, and
    the deployed line is named once in the header (the table then fits the artifact page); the note does not speak
    of the Holm p; a row that has one keeps it."""
    from r2n2.evaluate.engine import comparison_table

    row = {"a": "deployed champion", "b": "never retrained", "metric": "rank_ic", "test": "newey_west", "diff": 0.0258,
           "ci_low": -0.0135, "ci_high": 0.0652, "p_value": 0.198, "mde": 0.0562, "verdict": "tie"}
    lines = comparison_table([row, {**row, "b": "1-day reversal", "mde": None}], compact=True).split("\n")
    assert lines[0] == "| deployed champion vs | verdict | metric · test | diff [95 % CI] | p raw | MDE (80 %) |"
    assert lines[1] == "|---|---|---|---|---|---|" and lines[2].startswith("| never retrained | **tie** |")
    assert lines[3].endswith("| 0.198 | n/a |") and "Holm" not in lines[-1] and lines[-1].startswith("A verdict is")
    kept = comparison_table([{**row, "p_adjusted": 0.4, "family": "replay"}], compact=True).split("\n")
    assert "p (Holm)" in kept[0] and "family" in kept[0] and "adjusted within its family (Holm)" in kept[-1]
