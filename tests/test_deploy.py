"""Deployment on a growing source: `r2n2 retrain` with rolling cut dates trains each challenger on the newest
rows and decides on days neither model trained or early-stopped on."""

import json
from pathlib import Path

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
    saved = json.loads((project / "data/ops/stocks/reports/stocks/promotion.json").read_text())
    assert saved["challenger"]["train_end"] == d["challenger"]["train_end"]
    chal_end, champ_end = d["challenger"]["train_end"], d["champion"]["train_end"]
    assert champ_end == champion_end and chal_end > champ_end  # trained on the new rows
    # the decision days: after both models' last training / early-stopping day, and up to the newest row
    assert d["window"]["start"] > chal_end and d["window"]["start"] > champ_end
    newest = str(pd.to_datetime(later["Date"]).max().date())
    assert d["window"]["end"] <= newest and d["window"]["end"] > chal_end
    assert "benchmark" in d and d["benchmark"]["id"] == "random walk"
    # what the decision could have seen: the gate's power on this very slice, from the champion's forecasts
    n = d["challenger"]["n"]
    assert saved["power"]["sentence"].startswith(f"On {n}-row slices this gate refuses a 20% worse challenger with ")
    rates = [r["refused"] for r in saved["power"]["worse"]]
    assert [r["worse"] for r in saved["power"]["worse"]] == [0.05, 0.1, 0.2] and rates[0] <= rates[2]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:  # what the UI shows: the window's days and the power sentence
        shown = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stocks-promotion"])))
    text = max(shown, key=lambda a: a.created).description
    assert (f"on {d['window']['start']} .. {d['window']['end']} (the challenger's holdout: days neither model "
            "trained or early-stopped on);") in text, text
    assert text.endswith(f"Power: {saved['power']['sentence']}"), text
    windows = json.loads((project / "data/ops/stocks/windows/stocks/meta.json").read_text())
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


def _champion_is_consistent(root) -> str:
    """What every reader of the champion relies on: each version in the history has its bytes; the version the
    history names last is served (model.pt, complete, and champion.json), after the reader's own sync."""
    import hashlib

    from r2n2.checkpoint import load_checkpoint
    from r2n2.ops.champion import history, sync_champion
    from r2n2.paths import CasePaths

    paths = CasePaths("stocks", root)
    rows = history(paths)
    assert rows, "the first retrain made a champion"
    assert all((paths.champion_dir / "versions" / f"{r['version']}.pt").is_file() for r in rows)
    version = sync_champion(paths)
    model = paths.champion_dir / "model.pt"
    assert version == rows[-1]["version"] == hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    load_checkpoint(model)  # complete
    assert json.loads((paths.champion_dir / "champion.json").read_text())["version"] == version
    return version


@pytest.mark.slow
def test_kill_9_at_random_points_of_a_real_retrain_leaves_one_consistent_champion(prefect_server, project):
    """`r2n2 retrain` as a real process, killed with SIGKILL at seeded random moments while its source grows;
    after each kill the champion, its versions and its history agree, and the next retrain completes and leaves
    the versions' DVC record up to date."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import numpy as np
    from prefect.settings import PREFECT_API_URL

    later, drops = _folder_project(project, 600, 720)
    dvc = str(Path(sys.executable).with_name("dvc"))
    for init in (["git", "init", "-q"], [dvc, "init", "-q"]):  # a DVC project: retrain `dvc add`s the versions
        subprocess.run(init, check=True, cwd=project)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's server: no start-up per run
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "flows.cli", "retrain", "stocks", "--no-push"]
    cwd = os.getcwd()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def retrain(kill_after: float | None) -> int | None:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kill_after is None:
            err = p.communicate(timeout=300)[1]
            assert p.returncode == 0, err[-2000:]
            return 0
        try:
            p.wait(timeout=kill_after)
            return p.returncode  # it finished first
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return None

    t0 = time.perf_counter()
    retrain(None)  # the first champion
    full = time.perf_counter() - t0
    rng = np.random.default_rng(20)
    killed = 0
    days = sorted(later["Date"].unique())
    for i, delay in enumerate(rng.uniform(0.2 * full, 1.1 * full, 4)):
        # 15 new trading days arrive before each run, so there is always something to train and decide on
        later[later["Date"].isin(days[i * 15:(i + 1) * 15])].to_csv(drops / f"2016-drop{i}.csv", index=False)
        killed += retrain(float(delay)) is None
        _champion_is_consistent(project)
    assert killed >= 2, "most runs were killed, not finished"
    retrain(None)  # the next retrain completes (the kills left no lock held and nothing half-written)
    _champion_is_consistent(project)
    status = subprocess.run([dvc, "status", "data/ops/stocks/champion/versions.dvc"], cwd=project, capture_output=True,
                            text=True, env=env)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
