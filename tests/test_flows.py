"""Orchestration: the pipeline flow and its artifacts, scheduled deployments, champion/challenger, the
retrain lock, DVC reproducibility and monitoring."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from r2n2.errors import ConfigError
from r2n2.registry import load_params

from .conftest import ROOT, write_tiny_project


def test_retrain_lock_refuses_second_run_at_once(tmp_path, monkeypatch, capsys):
    import time

    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "ops").mkdir(parents=True)
    with FileLock(str(tmp_path / "data" / "ops" / ".retrain.lock")):
        t0 = time.perf_counter()
        assert main(["retrain", "stocks"]) == 2
        assert time.perf_counter() - t0 < 2  # the lock is checked before any server starts
    err = capsys.readouterr().err
    assert "Another retrain is running in this workspace" in err and "Traceback" not in err


def test_serve_registers_both_deployments_with_schedules(prefect_server, tmp_path, monkeypatch):
    from prefect import get_client

    from flows.serve import build_deployments

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)  # no case has data here: the deployments cover every case of serve.cases
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
    assert by_name["r2n2-retrain"].parameters["cases"] == ["stocks", "sentiment", "panel"]


def _task_messages(client, flow_run_id, expect: int = 0) -> dict[str, str]:
    """The flow run's task runs: name -> (state, message). Prefect 3 records task runs from their events,
    asynchronously, so a run whose last tasks took milliseconds is polled until ``expect`` of them are final."""
    import time

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    while True:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        out = {r.name: (r.state.type.value, r.state.message or "") for r in runs if r.state and r.state.is_final()}
        if len(out) >= expect or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.mark.slow
def test_pipeline_flow_then_dvc_and_retrain_on_one_project(prefect_server, tmp_path, monkeypatch):
    """The pipeline flow: a task per stage and case, each reproduced by DVC (dvc.lock records it, `dvc status` is
    clean after), artifacts of the stages that ran; a second run's tasks all say they were up to date. Then the
    same project through the `dvc` command (up to date; an experiment reruns only what its param touches; code
    changes stale exactly the stages that import them) and the operations flows (retrain promotes and pushes,
    a second retrain without fresh data does not, monitor). One project for both halves: building it twice cost
    the suite three minutes."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.monitor import monitor_flow
    from flows.retrain import retrain_flow
    from flows.stages import pipeline_flow
    from r2n2.stages import STAGE_NAMES

    from .conftest import init_dvc_project

    write_tiny_project(tmp_path)
    init_dvc_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    state = pipeline_flow("all", return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        first = _task_messages(client, run.id, expect=4 * len(STAGE_NAMES))  # the four cases below
    import datetime as dt

    assert run.name == f"pipeline-all-{dt.date.today().isoformat()}"  # named as README says, from the start
    cases = ("stocks", "sentiment", "panel", "volatility")
    assert set(first) == {f"{s}-{c}" for s in STAGE_NAMES for c in cases}  # a task per stage and case
    assert all(t == "COMPLETED" and "reproduced by DVC" in m for t, m in first.values()), first
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(first)  # DVC recorded every stage
    status = subprocess.run(["dvc", "status"], cwd=tmp_path, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    again = pipeline_flow("stocks", return_state=True)
    with get_client(sync_client=True) as client:
        second = _task_messages(client, again.state_details.flow_run_id, expect=len(STAGE_NAMES))
    assert set(second) == {f"{s}-stocks" for s in STAGE_NAMES}
    assert all(t == "COMPLETED" and m.endswith("up to date (DVC skipped it: its code, data and params are "
                                                "unchanged)") for t, m in second.values()), second
    for case in ("stocks", "sentiment", "panel"):
        m = json.loads((tmp_path / f"data/reports/{case}/metrics.json").read_text())
        assert {"model", "baselines", "comparisons"} <= set(m), case
        assert (tmp_path / f"data/reports/{case}/report.md").is_file()
    panel = json.loads((tmp_path / "data/reports/panel/metrics.json").read_text())
    assert set(panel["baselines"]) == {"reversal_1d", "reversal_5d", "momentum_12_1", "equal_weight", "no_cross_entity",
                                       "gru_no_relational", "ridge_cross_stock"}
    for name, row in {"model": panel["model"], **panel["baselines"]}.items():
        assert {"rank_ic", "rank_ic_tstat", "long_short_sharpe", "turnover"} <= set(row), name
    assert {"model_vs_reversal_1d", "model_vs_momentum_12_1"} <= set(panel["tests"])
    tested = {(c["b"], c["metric"]) for c in panel["comparisons"] if c["test"] == "ledoit_wolf_hac"}
    assert {("reversal_1d", "long_short_sharpe_net"), ("reversal_1d", "long_short_sharpe_gross")} <= tested
    assert {"rank_ic", "long_short_sharpe_net", "long_short_sharpe_gross"} <= set(panel["power"])
    keys = [f"{c}-{k}" for c in ("stocks", "sentiment", "panel") for k in ("validation", "metrics", "report")]

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
            return {a.key: a for a in found}

    artifacts = asyncio.run(read())
    assert set(keys) <= set(artifacts)
    table = json.loads(artifacts["stocks-metrics"].data)
    assert {row["model"] for row in table} >= {"model", "random_walk", "historical_mean", "no_relational"}
    assert all(len(repr(v)) <= 12 for row in table for v in row.values() if isinstance(v, float))  # 4 digits
    import base64

    forecast = base64.b64encode((tmp_path / "data/reports/stocks/plots/forecast.png").read_bytes()).decode()
    assert f"](data:image/png;base64,{forecast})" in artifacts["stocks-report"].data  # its own bytes, inside
    # the same project through the `dvc` command: the pipeline flow's runs left nothing for `dvc repro` to do
    assert _run(["dvc", "remote", "add", "--local", "-d", "local", str(tmp_path / "remote")], tmp_path).returncode == 0
    second = _run(["dvc", "repro"], tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout
    metrics = _run(["dvc", "metrics", "show", "--json"], tmp_path)
    assert '"versus": "random_walk"' in metrics.stdout  # each report's headline.json: the model vs its main baseline
    # an experiment with one changed param reruns only what depends on it
    git = ["git", "-c", "user.name=r2n2", "-c", "user.email=r2n2@localhost"]
    assert _run([*git, "add", "-A"], tmp_path).returncode == 0
    assert _run([*git, "commit", "-qm", "baseline"], tmp_path).returncode == 0
    exp = _run(["dvc", "exp", "run", "-S", "stocks.train.epochs=3"], tmp_path)
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert "Running stage 'train-stocks'" in exp.stdout and "Running stage 'train-sentiment'" not in exp.stdout
    diff = _run(["dvc", "metrics", "diff", "--json"], tmp_path)
    assert diff.returncode == 0 and "data/reports/stocks/headline.json" in diff.stdout  # the metrics DVC shows
    # DVC tracks code: a comment appended to the model core makes every training stage stale (and, since each
    # stage's code deps are the modules its case and the stage table import, the others: the series kind's
    # scorer imports the trainer); a module no stage imports (a driver) makes nothing stale
    with open(tmp_path / "r2n2/models/core.py", "a") as fh:
        fh.write("# a comment\n")
    status = _run(["dvc", "status"], tmp_path).stdout
    for stage in ("train-stocks", "train-sentiment", "train-panel", "baselines-stocks", "evaluate-panel"):
        assert f"{stage}:" in status, status
    _run(["git", "checkout", "r2n2/models/core.py"], tmp_path)
    with open(tmp_path / "r2n2/ops/replay.py", "a") as fh:
        fh.write("# a comment\n")
    status = _run(["dvc", "status"], tmp_path).stdout
    assert "up to date" in status, status
    _run(["git", "checkout", "r2n2/ops/replay.py"], tmp_path)

    decisions = retrain_flow(["stocks", "sentiment"], cuts="fixed")
    assert all(d["promoted"] for d in decisions), decisions  # no champion yet
    assert (tmp_path / "data/ops/stocks/champion/model.pt").is_file() and (tmp_path / "remote").is_dir()  # pushed
    promotion = json.loads((tmp_path / "data/ops/stocks/reports/stocks/promotion.json").read_text())
    assert promotion["window"]["end"] < promotion["test_split_start"]  # never scored on the test split
    # a stocks retrain reproduces stocks stages only: every sentiment output stays byte-identical
    sentiment = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file() and "sentiment" in str(p)}
    decisions = {d["case"]: d for d in retrain_flow(["stocks"], push=False, cuts="fixed")}
    assert decisions["stocks"]["promoted"] is False and "no fresh data" in decisions["stocks"]["reason"]
    assert {p: p.read_bytes() for p in sentiment} == sentiment

    result = monitor_flow("stocks", trigger_retrain=False)["stocks"]
    assert {"ret_open", "ret_high", "ret_low", "ret_close", "prediction", "error"} <= set(result["signals"])
    assert (tmp_path / "data/ops/stocks/reports/stocks/monitor.json").is_file()


def _run(cmd, cwd, **kw):
    env = {**os.environ, "PATH": f"{Path(shutil.which('r2n2') or ROOT / '.venv/bin/r2n2').parent}:{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def test_dvc_yaml_is_generated_from_the_stage_table():
    from flows.dvcgen import render

    params = load_params(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == render(params)


def test_tune_stages_are_opt_in_and_reachable_by_name(tmp_path):
    """A fresh clone holds no tune stage (so `dvc status` after `make run` is clean); `r2n2 dvc-yaml --tune`
    adds them, keeps those already asked for, and DVC finds each by name; the seeds stages likewise."""
    from flows.dvcgen import SEEDS_FILE, TUNE_FILE, add_opt_in, add_tune, tune_cases

    assert not (ROOT / TUNE_FILE).exists()
    params = load_params(ROOT / "params.yaml")
    path = tmp_path / "dvc.yaml"
    add_tune(params, ["sentiment"], path)
    assert f"run one with `dvc repro {path.as_posix()}:tune@panel`" in add_tune(params, ["panel", "sentiment"], path)
    assert tune_cases(path) == ["sentiment", "panel"]
    with pytest.raises(ConfigError, match="no case nope in params.yaml"):
        add_tune(params, ["nope"], path)
    project = tmp_path / "project"
    (project / "data/tuning").mkdir(parents=True)
    (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (project / TUNE_FILE).write_text(path.read_text())
    (project / SEEDS_FILE).parent.mkdir(parents=True)
    add_opt_in(params, "seeds", ["stocks"], project / SEEDS_FILE)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--all"], cwd=project, check=True,
                            capture_output=True, text=True).stdout
    assert "data/tuning/dvc.yaml:tune@sentiment" in listed and "data/tuning/dvc.yaml:tune@panel" in listed
    assert "data/seeds/dvc.yaml:seeds@stocks" in listed
