"""Deployment on a growing source: `r2n2 retrain` with rolling cut dates trains each challenger on the newest
rows and decides on days neither model trained or early-stopped on."""

import json

import pandas as pd
import pytest
import yaml

from .conftest import make_prices, write_tiny_project


def _folder_project(folder, n_first: int, n_all: int):
    write_tiny_project(folder)
    a, b = make_prices(n_all, seed=1), make_prices(n_all, seed=2)
    a.insert(0, "Entity", "alpha")
    b.insert(0, "Entity", "beta")
    drops = folder / "drops"
    drops.mkdir()
    first = pd.concat([a.iloc[:n_first], b.iloc[:n_first]], ignore_index=True)
    first.to_csv(drops / "2015-part1.csv", index=False)
    later = pd.concat([a.iloc[n_first:], b.iloc[n_first:]], ignore_index=True)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["stocks"]["data"]["source"] = "drops"
    params["stocks"]["window"].update({"val_days": 100, "holdout_days": 40})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return later, drops


@pytest.mark.slow
def test_rolling_retrain_on_a_growing_folder_decides_on_unseen_days(prefect_server, project):
    from flows.retrain import retrain_flow

    later, drops = _folder_project(project, 600, 663)  # then three months (63 trading days) arrive
    first = retrain_flow(["stocks"], push=False)[0]
    assert first["promoted"] and first["cut_rule"] == "rolling"  # no champion yet
    champion_end = first["challenger"]["train_end"]
    later.to_csv(drops / "2016-part2.csv", index=False)
    d = retrain_flow(["stocks"], push=False)[0]
    saved = json.loads((project / "data/reports/stocks/promotion.json").read_text())
    assert saved["challenger"]["train_end"] == d["challenger"]["train_end"]
    chal_end, champ_end = d["challenger"]["train_end"], d["champion"]["train_end"]
    assert champ_end == champion_end and chal_end > champ_end  # trained on the new rows
    # the decision days: after both models' last training / early-stopping day, and up to the newest row
    assert d["window"]["start"] > chal_end and d["window"]["start"] > champ_end
    newest = str(pd.to_datetime(later["Date"]).max().date())
    assert d["window"]["end"] <= newest and d["window"]["end"] > chal_end
    assert "benchmark" in d and d["benchmark"]["id"] == "random walk"
    windows = json.loads((project / "data/windows/stocks/meta.json").read_text())
    assert windows["cut_rule"] == "rolling" and windows["cuts"]["end"] <= newest


def test_evaluate_refuses_windows_with_rolling_cuts(project, capsys):
    from flows.cli import main

    write_tiny_project(project)
    sets = ["--set", "stocks.window.cuts=rolling", "--set", "stocks.window.val_days=100",
            "--set", "stocks.window.holdout_days=40"]
    for stage in ("ingest", "validate", "window"):
        assert main([stage, "stocks", *sets]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["evaluate", "stocks", *sets]) == 2
    err = capsys.readouterr().err
    assert "has rolling cut dates (a deployment retrain wrote them)" in err and "Traceback" not in err
