"""Orchestration: the pipeline flow and its artifacts, scheduled deployments, champion/challenger, the
retrain lock, DVC reproducibility and monitoring."""

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from filelock import FileLock

from r2n2.champion import decide_promotion
from r2n2.config import load_params

from .conftest import ROOT, write_tiny_project


@pytest.mark.parametrize("case,new,old,promoted", [
    ("stocks", 0.010, None, True),
    ("stocks", 0.010, 0.011, True),
    ("stocks", 0.010, 0.010, True),   # ties: not worse
    ("stocks", 0.012, 0.011, False),  # higher RMSE is worse
    ("sentiment", 0.71, 0.70, True),
    ("sentiment", 0.69, 0.70, False),  # lower macro-F1 is worse
])
def test_champion_rule(case, new, old, promoted):
    metric = "rmse" if case == "stocks" else "macro_f1"
    champion = None if old is None else {"model": {metric: old}}
    ok, reason = decide_promotion(case, {"model": {metric: new}}, champion)
    assert ok is promoted
    assert ("kept the champion" in reason) is (not promoted)


def test_retrain_lock_refuses_second_run(tmp_path, monkeypatch):
    from flows.retrain import RetrainBusy, retrain_flow

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with FileLock(str(tmp_path / "data" / ".retrain.lock")):
        with pytest.raises(RetrainBusy, match="another retrain is running in this workspace"):
            retrain_flow.fn(cases=["stocks"])


def test_serve_registers_both_deployments_with_schedules(prefect_server, tmp_path):
    from prefect import get_client

    from flows.serve import build_deployments

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path / "params.yaml", ["serve.retrain_cron=0 21 * * 1-5"])
    deployments = build_deployments(params)

    async def register_and_read():
        ids = [await d.apply() for d in deployments]
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    read = asyncio.run(register_and_read())
    by_name = {d.name: d for d in read}
    assert set(by_name) == {"r2n2-retrain", "r2n2-monitor"}
    crons = {name: [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] for name, d in by_name.items()}
    assert crons == {"r2n2-retrain": [("0 21 * * 1-5", "UTC")], "r2n2-monitor": [("30 21 * * 1-5", "UTC")]}
    assert by_name["r2n2-retrain"].parameters == {"cases": ["stocks", "sentiment"]}


@pytest.mark.slow
def test_pipeline_flow_end_to_end_with_artifacts(prefect_server, tmp_path, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.stages import pipeline_flow

    write_tiny_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    pipeline_flow("all")
    for case in ("stocks", "sentiment"):
        m = json.loads((tmp_path / f"data/reports/{case}/metrics.json").read_text())
        assert {"model", "finetuned", "scratch", "baselines"} <= set(m)
        assert (tmp_path / f"data/reports/{case}/report.md").is_file()
    keys = [f"{c}-{k}" for c in ("stocks", "sentiment") for k in ("validation", "metrics", "report")]

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
            return {a.key: a for a in found}

    artifacts = asyncio.run(read())
    assert set(keys) <= set(artifacts)
    table = json.loads(artifacts["stocks-metrics"].data)
    assert {row["model"] for row in table} >= {"model", "random_walk", "historical_mean", "gru_no_relational"}
    assert "forecast.png" in artifacts["stocks-report"].data


def _run(cmd, cwd, **kw):
    env = {**os.environ, "PATH": f"{Path(shutil.which('r2n2') or ROOT / '.venv/bin/r2n2').parent}:{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_dvc_repro_then_retrain_promotes_and_second_repro_is_noop(prefect_server, tmp_path, monkeypatch):
    from flows.monitor import monitor_flow
    from flows.retrain import retrain_flow

    write_tiny_project(tmp_path)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "remote", "add", "--local", "-d", "local", str(tmp_path / "remote")]):
        assert _run(cmd, tmp_path).returncode == 0
    first = _run(["dvc", "repro"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _run(["dvc", "repro"], tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout
    metrics = _run(["dvc", "metrics", "show", "--json"], tmp_path)
    assert "gru_no_relational" in metrics.stdout
    # an experiment with one changed param reruns only what depends on it
    git = ["git", "-c", "user.name=r2n2", "-c", "user.email=r2n2@localhost"]
    assert _run([*git, "add", "-A"], tmp_path).returncode == 0
    assert _run([*git, "commit", "-qm", "baseline"], tmp_path).returncode == 0
    exp = _run(["dvc", "exp", "run", "-S", "stocks.train.epochs=3"], tmp_path)
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert "Running stage 'train@stocks'" in exp.stdout and "Running stage 'train@sentiment'" not in exp.stdout
    diff = _run(["dvc", "metrics", "diff", "--json"], tmp_path)
    assert diff.returncode == 0 and "data/reports/stocks/metrics.json" in diff.stdout

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{Path(shutil.which('r2n2') or ROOT / '.venv/bin/r2n2').parent}:{os.environ['PATH']}")
    decisions = retrain_flow(cases=["stocks", "sentiment"])
    assert all(d["promoted"] for d in decisions), decisions  # no champion yet
    champion = tmp_path / "data/models/stocks/champion"
    assert (champion / "model.pt").is_file() and (tmp_path / "remote").is_dir()  # pushed
    # A champion that is better than anything retraining will produce must be kept.
    better = json.loads((champion / "metrics.json").read_text())
    better["model"]["rmse"] = 1e-9
    (champion / "metrics.json").write_text(json.dumps(better))
    decisions = {d["case"]: d for d in retrain_flow(cases=["stocks"], push=False)}
    assert decisions["stocks"]["promoted"] is False and "kept the champion" in decisions["stocks"]["reason"]
    assert json.loads((champion / "metrics.json").read_text())["model"]["rmse"] == 1e-9

    result = monitor_flow("stocks", trigger_retrain=False)
    assert set(result["feature_psi"]) == {"ret_open", "ret_high", "ret_low", "ret_close"}
    assert (tmp_path / "data/reports/stocks/monitor.json").is_file()
