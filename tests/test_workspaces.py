"""Two workspaces: retrain (rolling cuts), monitor and replay read the research outputs and write only under the
case's operations workspace, data/ops/<case>/, so `dvc status` and every research byte are the same after them."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, copy_code, write_tiny_project

RESEARCH = ("raw", "validated", "windows", "models", "reports")  # the folders under data/ that DVC stages write


def _research_bytes(root: Path) -> dict[str, str]:
    """sha256 of every file of the research workspace, by its path under the project."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in RESEARCH for p in sorted((root / "data" / d).rglob("*")) if p.is_file()}


def _run(root: Path, *cmd: str) -> str:
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.slow
def test_retrain_monitor_and_replay_write_only_the_operations_workspace(prefect_server, project, monkeypatch):
    # no capsys here: Prefect's console handler would keep its closed stream for the tests that follow
    from flows.cli import main

    write_tiny_project(project)
    copy_code(project)
    (project / "data").mkdir()
    shutil.copy(ROOT / "data/.gitignore", project / "data/.gitignore")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["stocks"]["window"].update({"val_days": 100, "holdout_days": 40})  # rolling cuts that fit 400 days
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # r2n2, dvc
    dvc = str(Path(sys.executable).with_name("dvc"))
    _run(project, "git", "init", "-q")
    _run(project, dvc, "init", "-q")
    _run(project, dvc, "repro", "train-stocks")  # the research outputs operations read: ingest .. train
    before = _run(project, dvc, "status"), _research_bytes(project)
    assert "data/models/stocks/model.pt" in before[1] and "data/reports/stocks/validation.json" in before[1]

    assert main(["retrain", "stocks", "--no-push"]) == 0  # rolling cuts: a challenger on the newest rows
    assert main(["monitor", "stocks", "--no-retrain"]) == 0
    days = pd.bdate_range("2015-01-01", periods=400)  # the tiny prices' calendar
    assert main(["replay", "stocks", "--start", str(days[330].date()), "--end", str(days[-1].date()),
                 "--retrain-every", "30", "--monitor-every", "10"]) == 0

    after = _run(project, dvc, "status"), _research_bytes(project)
    assert after[0] == before[0]
    changed = sorted(k for k in before[1].keys() | after[1].keys() if before[1].get(k) != after[1].get(k))
    assert not changed, f"operations wrote research outputs: {changed}"
    ops = project / "data/ops/stocks"
    for f in ("raw/stocks.parquet", "validated/stocks.parquet", "windows/stocks/meta.json", "models/stocks/model.pt",
              "reports/stocks/promotion.json", "reports/stocks/monitor.json", "reports/stocks/replay/summary.json",
              "champion/model.pt", "champion/history.json", "champion/versions.dvc"):
        assert (ops / f).is_file(), f
    assert list((ops / "replay").rglob("model.pt")), "the replay's scratch projects are in the operations workspace"
    assert not [p for p in ("data/champion", "data/replay") if (project / p).exists()]
    # git sees only what is committed of the operations workspace: the champion's history and its DVC record
    untracked = _run(project, "git", "status", "--porcelain", "--untracked-files=all", "data/ops").split("\n")
    assert sorted(line for line in untracked if line) == [
        "?? data/ops/stocks/champion/history.json", "?? data/ops/stocks/champion/versions.dvc"]


def test_a_champion_registry_in_its_old_place_is_one_paragraph_that_moves_it(project, capsys):
    from flows.cli import main

    old = project / "data/champion/stocks"
    old.mkdir(parents=True)
    (old / "history.json").write_text("[]")
    assert main(["champion", "history", "stocks"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("the stocks champion registry moved to data/ops/stocks/champion; move yours there (versions included) "
            "with `mkdir -p data/ops/stocks && git mv data/champion/stocks data/ops/stocks/champion`") in err, err
    assert "Traceback" not in err and not (project / "data/ops").exists()
