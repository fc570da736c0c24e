"""A fifth case is one short definition on a kind: an FX rate case, defined here on the series kind with its own
name and defaults (no built-in data: its source is a file), passes every conformance check a registered series
case passes, the replay included, and refuses the built-in source with a paragraph."""

from dataclasses import dataclass, field

import pytest

import json

import pandas as pd

from r2n2.cases.series import ForecastWindowConfig, SeriesCase, SeriesConfig, SeriesEvaluateConfig
from r2n2.conformance import checks_for, prepare, run_check
from r2n2.errors import ConfigError
from r2n2.evaluate.trading import buy_and_hold
from r2n2.ops.loop import make_replay

DEFINITION_START = "# -- the fifth case: everything it needs --"


# -- the fifth case: everything it needs --
@dataclass
class FxWindow(ForecastWindowConfig):
    pretrain_entity: str | None = "eurusd"   # the model's series
    finetune_entity: str | None = "gbpusd"   # the transfer target
    lookback: int = 20


@dataclass
class FxEvaluate(SeriesEvaluateConfig):
    periods_per_year: int = 260              # FX trades on weekdays


@dataclass
class FxConfig(SeriesConfig):
    window: FxWindow = field(default_factory=FxWindow)
    evaluate: FxEvaluate = field(default_factory=FxEvaluate)


class FxCase(SeriesCase):
    name = "fx"
    config_cls = FxConfig
# -- end of the fifth case --


def test_the_fifth_case_is_at_most_40_lines():
    text = open(__file__).read()
    body = text[text.index(DEFINITION_START, text.index(DEFINITION_START) + 1):text.index("# -- end of the fifth")]
    assert len(body.splitlines()) <= 40


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return prepare(FxCase(), tmp_path_factory.mktemp("fx"))


@pytest.mark.slow
def test_the_fifth_case_passes_every_check_and_the_replay(fx):
    case, ex = fx.case, fx
    checks = checks_for(case)
    assert {"predict", "monitor", "promotion", "rolling_retrain", "causal_features", "replay"} <= set(checks)
    assert {"stage ingest", "stage evaluate"} <= set(ex.steps)
    assert ex.cfg.window.lookback == 10 and ex.cfg.window.pretrain_entity == "eurusd"  # the example's settings
    for check in checks:
        run_check(check, ex)
    # its calendar annualises the Sharpe ratios of the evaluation: 260 periods a year, not the equities' 252
    table = pd.read_parquet(ex.paths.windows / "features.parquet")
    y = table[(table["entity"] == "eurusd") & (table["split"] == "test")]["target"].to_numpy()
    trading = json.loads((ex.paths.reports / "metrics.json").read_text())["trading"]
    assert trading["buy_and_hold"]["sharpe"] == pytest.approx(buy_and_hold(y, cost_bps=1.0, periods_per_year=260)[
        "sharpe"], rel=1e-9)
    assert trading["buy_and_hold"]["sharpe"] != pytest.approx(buy_and_hold(y, cost_bps=1.0)["sharpe"], rel=1e-4)
    meta = ex.paths.windows / "meta.json"
    assert '"case": "fx"' in meta.read_text() and '"pretrain_entity": "eurusd"' in meta.read_text()
    assert (ex.paths.operations().reports / "replay" / "summary.json").is_file()


ALARMS = (10, 50)  # the steps at which the scripted monitor alarms


def _replay(ex, policy, *, scripted: bool = True):
    dates = ex.case.load(ex.cfg, ex.paths.windows).table["date"].drop_duplicates().sort_values()
    rp = make_replay(ex.case, ex.cfg, ex.root, start=str(dates.iloc[-120].date()), end=str(dates.iloc[-1].date()),
                     retrain_every=40, monitor_every=1, retrain_policy=policy, log=lambda m: None)
    if scripted:  # a monitor that alarms at known steps, so every policy's answer to an alarm is seen
        rp._monitor = lambda i: {"alarm": i in ALARMS, "signals": {}, "verdict": "scripted"}
    for until in rp.period_ends():
        rp.run_until(until)
    return rp, [e["step"] for e in rp.events]


@pytest.mark.slow
def test_the_retrain_policy_decides_which_steps_retrain(fx):
    """Darts-style ``retrain``: the schedule alone, alarms alone, or a callable asked at every step."""
    rp, steps = _replay(fx, "schedule")
    assert steps == [39, 79, 119] and rp.counts["retrains"] == 3  # every 40th step, whatever the monitor said
    assert [i for i, row in enumerate(rp.rows) if row.get("alarm")] == list(ALARMS) and rp.counts["alarms"] == 2
    assert "a retrain every 40 days (alarms do not retrain)" in rp.retrain_rule("days")
    assert _replay(fx, "alarm")[1] == list(ALARMS)  # no scheduled retrain; one after each alarm
    assert _replay(fx, "both")[1] == [10, 39, 50, 79, 119]

    asked = []

    def twice(step, time, alarm):
        asked.append((step, alarm))
        return step in (29, 89)

    rp, steps = _replay(fx, twice)
    assert steps == [29, 89] and [s for s, _ in asked] == list(range(120))
    assert [s for s, a in asked if a] == list(ALARMS)  # it is told each step's alarm
    assert [e["trigger"] for e in rp.events] == ["policy", "policy"]
    summary = rp.write_report(fx.paths.operations().reports / "replay-twice", seconds=0.0)
    assert summary["retrain_policy"] == "twice" and summary["look_ahead_rows"] == 0
    with pytest.raises(ConfigError, match=r"^the retrain policy must be one of both, schedule, alarm or a callable "
                                          r"\(step, time, alarm\) -> bool, got 'weekly'\.$"):
        _replay(fx, "weekly")


def test_a_calendar_out_of_range_is_refused():
    cfg = FxConfig()
    cfg.evaluate.periods_per_year = 0
    with pytest.raises(ConfigError, match=r"^fx\.evaluate\.periods_per_year must be the trading periods in a year of "
                                          r"the data's calendar \(252 for US equities, about 260 for FX, 365 for "
                                          r"crypto\), got 0\.$"):
        FxCase().check_config(cfg, "fx")


def test_the_fifth_case_without_builtin_data_says_so():
    case, cfg = FxCase(), FxConfig()
    with pytest.raises(ConfigError, match=r"^the fx case ships no built-in data: set fx\.data\.source to a CSV, "
                                          r"Parquet, folder or database of prices\.$"):
        case.read_source(cfg)
