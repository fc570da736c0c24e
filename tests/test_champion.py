"""The champion's versions: each promotion is a content-addressed version with its history (when it served, on
which data, with which evidence); a rollback serves an earlier version again, byte for byte."""

import json

import pytest

from flows.cli import main
from r2n2.config import with_values
from r2n2.ops.champion import history, promote_if_not_worse
from r2n2.paths import CasePaths
from r2n2.registry import get_case, run_stage


@pytest.mark.slow
def test_rollback_then_predict_gives_that_versions_forecasts_byte_for_byte(project, capsys):
    case = get_case("stocks")
    values = case.example(project)
    # generous tolerances: this test is about versions, not the gate (the gate's own tests are test_promotion.py)
    values.update({"promotion.tolerance": 10.0, "promotion.benchmark_tolerance": 10.0})
    cfg = with_values(case.config_cls(), values)
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", cfg, project)
    first = promote_if_not_worse(case, cfg, project)
    assert first["promoted"] and first["version"]
    sets = ["--set", f"stocks.data.source={values['data.source']}", "--set", "stocks.window.val_start=null",
            "--set", "stocks.window.test_start=null", "--set", "stocks.window.lookback=10",
            "--set", "stocks.model.hidden_size=8"]

    def predict(out: str) -> bytes:
        assert main(["predict", "stocks", "--input", values["data.source"], "--output", out, *sets]) == 0
        return (project / out).read_bytes()

    a = predict("a.csv")
    rolling = with_values(cfg, {"window.cuts": "rolling", "train.seed": 1})
    for stage in ("window", "train"):
        run_stage(stage, "stocks", rolling, project)
    second = promote_if_not_worse(case, rolling, project)
    assert second["promoted"] and second["version"] != first["version"]
    assert predict("b.csv") != a
    capsys.readouterr()
    assert main(["champion", "rollback", "stocks", "--to", first["version"][:6]]) == 0
    assert first["version"] in capsys.readouterr().out
    assert predict("c.csv") == a  # the rolled-back version's forecasts, byte for byte
    h = history(CasePaths("stocks", project))
    assert [e["action"] for e in h] == ["promote", "promote", f"rollback to {first['version']}"]
    assert h[0]["cut_rule"] == "fixed" and h[1]["cut_rule"] == "rolling" and h[1]["data_sha256"]
    assert h[1]["evidence"]["window"] == second["window"] and h[2]["version"] == first["version"]
    assert main(["champion", "history", "stocks"]) == 0
    listing = capsys.readouterr().out
    assert listing.count(first["version"]) == 2 and second["version"] in listing
    assert json.loads((project / "data/champion/stocks/champion.json").read_text())["version"] == first["version"]


def test_rollback_to_an_unknown_version_is_one_paragraph(project, capsys):
    assert main(["champion", "rollback", "stocks", "--to", "abc123"]) == 2
    err = capsys.readouterr().err
    assert "has no champion version 'abc123'; its versions: none" in err and "Traceback" not in err
