"""The cross-section replay (``r2n2.ops.panelreplay.PanelReplay``): its CUSUM of the deployed daily rank IC alarms
soon after a planted lead-lag flips sign and not before (nor on the calm twin), every score is out of sample, its
retrains rebuild through the stage commands, and one or two workers write the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from r2n2.config import with_values
from r2n2.data.planted import lead_lag_panel
from r2n2.errors import ConfigError
from r2n2.ops.loop import make_replay
from r2n2.ops.panelreplay import PanelReplay
from r2n2.registry import get_case, load_params, run_stage

from .conftest import ROOT, rebuild_retrain

BREAK = 1000          # the planted break: the lead-lag's sign flips at this business day (2013-11-04)
START, END = 800, 1040  # the replayed days: 40 weekly checks before the break, 40 days after it
# a small model that finds the planted lead-lag in the ~600 days before the replay (first model's rank IC on its
# validation and holdout days: 0.14); rolling cuts: the newest 60 days the gate's, the 200 before early stopping
PLANTED = ["panel.validate.min_rows=100", "panel.window.val_start=null", "panel.window.test_start=null",
           "panel.window.val_days=200", "panel.window.holdout_days=60", "panel.model.hidden_size=16",
           "panel.train.epochs=10", "panel.train.lr=0.005", "panel.train.patience=10", "panel.train.threads=1",
           "panel.evaluate.top_k=2"]


def lead_lag_with_break(*, beta: float, break_at: int | None, seed: int) -> pd.DataFrame:
    """``r2n2.data.planted.lead_lag_panel`` (10 stocks, five followers of ``s00``) whose lead-lag flips sign at
    business day ``break_at``: the same shocks, the returns of the ``-beta`` panel from there on."""
    kw = dict(n_stocks=10, n_followers=5, start="2010-01-04", end="2014-06-30", seed=seed)
    wide = {b: lead_lag_panel(beta=b, **kw).pivot(index="date", columns="entity", values="close") for b in (beta, -beta)}
    r = np.log(wide[beta]).diff()  # (T, N) log returns
    if break_at is not None:
        r.iloc[break_at:] = np.log(wide[-beta]).diff().iloc[break_at:]
    close = 50 * np.exp(r.fillna(0.0).cumsum())
    return close.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def _planted_replay(folder: Path, panel: pd.DataFrame) -> tuple[PanelReplay, pd.DatetimeIndex]:
    folder.mkdir()
    panel.to_csv(folder / "panel.csv", index=False)
    cfg = load_params(ROOT / "params.yaml", [*PLANTED, f"panel.data.source={folder / 'panel.csv'}"]).case("panel")
    for stage in ("ingest", "validate"):
        run_stage(stage, "panel", cfg, folder, log=lambda m: None)
    dates = pd.DatetimeIndex(sorted(pd.to_datetime(panel["date"].unique())))
    rp = make_replay(get_case("panel"), cfg, folder, start=str(dates[START].date()), end=str(dates[END].date()),
                     retrain_every=21, monitor_every=5, log=lambda m: None)
    rp.run_until()
    return rp, dates


@pytest.mark.slow
def test_panel_replay_alarms_soon_after_a_planted_break_and_not_before(tmp_path):
    """Monthly retrains (21 days), weekly checks (5): the CUSUM of the deployed rank IC alarms within 30 trading
    days after the lead-lag flips sign, at most 5 % of the checks before the break alarm, and the calm twin (the
    same shocks, no flip) raises no alarm in those 30 days. Measured (seed 0): first alarm 9 trading days after
    the break, 0 of 40 checks before it; the twin 0 alarms in 48 checks."""
    rp, dates = _planted_replay(tmp_path / "break", lead_lag_with_break(beta=1.0, break_at=BREAK, seed=0))
    summary = rp.write_report(tmp_path / "break-report", seconds=0.0)
    tl = rp.timeline()
    assert summary["look_ahead_rows"] == 0 and (tl["model_train_end"] < tl["date"]).all()
    days = tl.groupby("date")["alarm"].any()
    pos = dates.searchsorted(days.index)
    before = days[pos < BREAK]
    checks_before = len(before) // 5
    assert checks_before == 40 and before.sum() <= 0.05 * checks_before, (int(before.sum()), checks_before)
    after = days[(pos >= BREAK) & days.to_numpy()]
    assert len(after), "no alarm after the break"
    delay = int(dates.searchsorted(after.index[0])) - BREAK
    assert delay <= 30, delay
    assert summary["mean_rank_ic"]["never retrained"] > summary["mean_rank_ic"]["1-day reversal"]  # it found the lead
    assert all(r["set"] and r["model_sha256"] for r in summary["retrains"]) and summary["n_retrains"] >= 11

    calm, _ = _planted_replay(tmp_path / "calm", lead_lag_with_break(beta=1.0, break_at=None, seed=0))
    cdays = calm.timeline().groupby("date")["alarm"].any()
    cpos = dates.searchsorted(cdays.index)
    assert not cdays[(cpos >= BREAK) & (cpos <= BREAK + 30)].any()  # what alarmed above was the break
    assert cdays.sum() <= 0.05 * (len(cdays) // 5)


def _example_project(folder: Path) -> tuple[list[str], object, pd.DatetimeIndex]:
    """The panel kind's synthetic example (8 random walks, 400 days) as a project in ``folder``, ingested and
    validated: (the example's --set arguments, its config, its dates)."""
    case = get_case("panel")
    values = case.example(folder)
    args = [x for k, v in values.items() for x in ("--set", f"panel.{k}={'null' if v is None else v}")]
    cfg = with_values(load_params(ROOT / "params.yaml").case("panel"), values)
    for stage in ("ingest", "validate"):
        run_stage(stage, "panel", cfg, folder, log=lambda m: None)
    dates = pd.DatetimeIndex(sorted(pd.read_csv(values["data.source"])["date"].unique()))
    return args, cfg, dates


@pytest.mark.slow
def test_panel_replay_writes_the_same_bytes_with_one_and_two_workers_and_its_retrains_rebuild(project, capsys,
                                                                                          tmp_path):
    """The scheduled challengers trained ahead on 2 local Dask workers: timeline and summary byte for byte the
    sequential run's (one torch thread per training); a retrain's ``set`` rebuilds its model.pt through
    `r2n2 ingest/validate/window/train`."""
    args, cfg, dates = _example_project(project)
    out = {}
    for workers in (1, 2):
        rp = PanelReplay(get_case("panel"), cfg, project, str(dates[-120].date()), str(dates[-1].date()),
                         retrain_every=40, monitor_every=5, workers=workers, threads=1, log=lambda m: None)
        for until in rp.period_ends():
            rp.run_until(until)
        rep = project / f"replay-{workers}"
        summary = rp.write_report(rep, seconds=0.0)
        out[workers] = [(rep / f).read_bytes() for f in ("timeline.parquet", "summary.json")]
        assert json.loads((rep / "timing.json").read_text())["workers"] == workers
        assert summary["look_ahead_rows"] == 0 and len(summary["retrains"]) >= 2
        assert {"timeline.parquet", "summary.json", "replay.md", "live_error.png"} <= {p.name for p in rep.iterdir()}
    assert out[1] == out[2]
    r = summary["retrains"][0]

    def stage(name, sets):
        code = main([name, "panel", *args, *sets])
        capsys.readouterr()
        return code

    csv = Path(cfg.data.source).name
    assert rebuild_retrain(r, tmp_path / "rebuild", ["params.yaml", csv], stage) == r["model_sha256"]


def test_panel_replay_refuses_a_batch_size_in_one_paragraph(project):
    with pytest.raises(ConfigError) as err:
        make_replay(get_case("panel"), load_params(ROOT / "params.yaml").case("panel"), project, start="2020-01-02",
                    end="2020-12-31", retrain_every=21, monitor_every=5, batch=500)
    msg = str(err.value)
    assert "--batch applies to texts only" in msg and "one trading date at a time" in msg and "\n" not in msg
    assert main(["replay", "panel", "--start", "2020-01-02", "--end", "2020-12-31", "--batch", "500"]) != 0
