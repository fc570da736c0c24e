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


@pytest.mark.slow
def test_the_fifth_case_passes_every_check_and_the_replay(tmp_path):
    case = FxCase()
    checks = checks_for(case)
    assert {"predict", "monitor", "promotion", "rolling_retrain", "causal_features", "replay"} <= set(checks)
    ex = prepare(case, tmp_path)
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
