"""What `r2n2 monitor` says: a verdict line that names the rows it judged and the signal against its threshold,
then how that threshold was calibrated (on which rows, from how many windows) with the false-alarm rate per check,
where monitor.json is, and what happens next (a retrain now, none because of --no-retrain, or nothing: calm).
A synthetic S&P-like frame stands in for the model's scores, so the wording is tested without training."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from r2n2.cases.base import MonitorSignals
from r2n2.cases.series import SeriesMeta
from r2n2.config import MonitorConfig
from r2n2.ops import monitoring

DATES = pd.bdate_range("2010-01-04", periods=1500)
VAL, TEST = 800, 1300  # rows: training before VAL, validation VAL..TEST, after the cut-off from TEST
PATH = "data/ops/stocks/reports/stocks/monitor.json"


def _frame(*, worse: bool, seed: int = 0) -> pd.DataFrame:
    """Returns y, a weak forecast and the squared errors of it and of the random walk; ``worse``: over the newest
    60 days the model's squared error is 1.5 times what it was (a planted break; its forecasts look the same)."""
    rng = np.random.default_rng(seed)
    y = 0.01 * rng.standard_normal(len(DATES))
    pred = 0.001 * rng.standard_normal(len(DATES))
    loss = (y - pred) ** 2
    if worse:
        loss[-60:] *= 1.5
    return pd.DataFrame({"date": DATES, "x": y + 0.001 * rng.standard_normal(len(DATES)), "pred": pred,
                         "loss": loss, "bench_loss": y ** 2})


class _Case:
    """Just enough of a series case for ``monitor_case``: its scores come from ``frame``."""

    name, naive_name = "stocks", "random walk"

    def __init__(self, frame):
        self.frame = frame

    def load(self, cfg, windows):
        return None

    def monitor_frame(self, cfg, data, model, ck):
        return self.frame, MonitorSignals(inputs=("x",), prediction_history=True)


def _monitor(tmp_path, monkeypatch, *, worse: bool, retrain: bool, retrain_on_alarm: bool = True) -> dict:
    meta = SeriesMeta(case="stocks", time="date", splits={},
                      cuts={"start": str(DATES[0].date()), "val_start": str(DATES[VAL].date()),
                            "test_start": str(DATES[TEST].date()), "end": str(DATES[-1].date())})
    monkeypatch.setattr(monitoring, "deployed_model", lambda paths: (None, {}, meta, "latest trained model"))
    cfg = SimpleNamespace(monitor=MonitorConfig(retrain_on_alarm=retrain_on_alarm))
    return monitoring.monitor_case(_Case(_frame(worse=worse)), cfg, tmp_path, retrain=retrain)


def _day(i: int) -> str:
    return str(DATES[i].date())


@pytest.mark.parametrize(("retrain", "next_step"), [
    (True, "next: retraining stocks now (--no-retrain: report only)"),
    (False, "next: no retrain: --no-retrain; `r2n2 retrain stocks` retrains it"),
])
def test_an_alarm_names_the_rows_threshold_calibration_rate_path_and_the_next_step(tmp_path, monkeypatch, retrain,
                                                                                    next_step):
    out = _monitor(tmp_path, monkeypatch, worse=True, retrain=retrain)
    err = out["signals"]["error"]
    assert out["alarm"] and err["alarm"]
    head, calibrated, where, after = out["lines"]  # a verdict line and three short ones
    assert out["verdict"] == head
    # the rows judged (the newest 60 days after the cut-off), the signal in words, its value and threshold
    assert head.startswith(f"stocks: ALARM on {_day(-60)}..{_day(-1)} (60 days): the model's squared error "
                           f"{err['statistic']:.3f} x the random walk's, threshold {err['threshold']:.3f} (p ")
    # how the threshold was calibrated: the quantile, over which rows, how many windows; the false-alarm rate
    windows = TEST - VAL - 60 + 1  # every 60-day window of the validation period
    assert calibrated == (f"  calibrated: error: 98.3% point over {windows} windows of 60 days of validation "
                          f"{_day(VAL)}..{_day(TEST - 1)}; <= 5% false alarms per check (3 signals together)")
    assert out["per_signal_quantile"] == pytest.approx(1 - 0.05 / 3)
    assert err["reference"] == {"period": "validation period", "start": _day(VAL), "end": _day(TEST - 1),
                                "n": TEST - VAL, "windows": windows, "window": 60}
    assert where == f"  full result: {PATH}" and after == f"  {next_step}"
    saved = json.loads((tmp_path / PATH).read_text())
    assert saved["lines"] == out["lines"] and saved["next"] == next_step.removeprefix("next: ")
    assert "; also cusum " in head  # the chart saw it too: named with its value and threshold, explained in the json
    assert max(map(len, out["lines"])) <= 160


def test_an_alarm_with_retrain_on_alarm_off_says_why_no_retrain_follows(tmp_path, monkeypatch):
    out = _monitor(tmp_path, monkeypatch, worse=True, retrain=True, retrain_on_alarm=False)
    assert out["lines"][-1] == "  next: no retrain: monitor.retrain_on_alarm is false; `r2n2 retrain stocks` retrains it"


def test_a_calm_result_names_the_rows_the_closest_signal_and_says_nothing_follows(tmp_path, monkeypatch):
    out = _monitor(tmp_path, monkeypatch, worse=False, retrain=True)
    assert not out["alarm"]
    head, calibrated, where, after = out["lines"]
    pvals = {k: s["p_value"] for k, s in out["signals"].items() if s.get("p_value") is not None}
    closest = min(pvals, key=pvals.get)
    assert head.startswith(f"stocks: calm on {_day(-60)}..{_day(-1)} (60 days): 4 checks under threshold; "
                           f"closest: ")
    assert f"p {pvals[closest]:.2g})" in head
    ref = out["signals"][closest]["reference"]
    assert calibrated.startswith(f"  calibrated: {closest}: 98.3% point over {ref['windows']} windows of 60 days of ")
    assert f"{ref['start']}..{ref['end']}" in calibrated and calibrated.endswith("<= 5% false alarms per check (3 signals together)")
    assert (where, after) == (f"  full result: {PATH}", "  next: calm: nothing to do")
    cusum = out["signals"]["cusum"]  # the chart's calibration is recorded beside its verdict
    assert cusum["reference"]["draws"] == 200 and cusum["run"] == {"start": _day(TEST), "end": _day(-1),
                                                                  "n": len(DATES) - TEST}


def test_the_cli_prints_every_line_of_each_case(project, monkeypatch, capsys):
    import flows.monitor
    from flows.cli import main

    result = {"alarm": False, "verdict": "stocks: calm on ...", "lines": ["stocks: calm on ...",
              "  calibrated: ...", f"  full result: {PATH}", "  next: calm: nothing to do"]}
    seen = {}

    def fake(case, params_path, overrides, *, trigger_retrain):
        seen["trigger_retrain"] = trigger_retrain
        return {"stocks": result}

    monkeypatch.setattr(flows.monitor, "run_monitor", fake)
    assert main(["monitor", "stocks", "--no-retrain"]) == 0
    assert capsys.readouterr().out.splitlines()[-4:] == result["lines"] and seen == {"trigger_retrain": False}
