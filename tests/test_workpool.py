"""`r2n2 deploy`: serve's retrain and monitor deployments on a Prefect process work pool, run by a real worker
(`prefect worker start`, a subprocess) against the session's temporary Prefect server."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, write_tiny_project

PARAGRAPH = ("r2n2 deploy: `r2n2 deploy` needs a running Prefect server: start one with `make ui` (or `r2n2 ui`) "
             "and export PREFECT_API_URL=http://127.0.0.1:4200/api in this shell.\n")


def test_deploy_without_a_server_is_one_paragraph(project, capsys):
    from flows.cli import main

    assert "PREFECT_API_URL" not in os.environ
    assert main(["deploy", "--pool", "nowhere"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", PARAGRAPH)


def test_deploy_to_a_server_that_is_down_is_one_paragraph(project, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import main

    down = "http://127.0.0.1:9/api"  # the discard port: nothing listens
    monkeypatch.setenv("PREFECT_API_URL", down)
    with temporary_settings(updates={PREFECT_API_URL: down}):
        assert main(["deploy"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"r2n2 deploy: no Prefect server answers at PREFECT_API_URL={down}"), err
    assert "Traceback" not in err and err.count("\n") == 1


def test_deploy_refuses_a_pool_of_another_type(prefect_server, project, monkeypatch, capsys):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from flows.cli import main

    pool = f"r2n2-k8s-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="kubernetes"))
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    assert main(["deploy", "--pool", pool]) == 2
    assert capsys.readouterr().err == (f"r2n2 deploy: work pool '{pool}' exists as a 'kubernetes' pool; `r2n2 deploy` "
                                       "registers on a 'process' pool: name another with --pool.\n")


def _monitorable_stocks(folder: Path) -> None:
    """Tiny data for every case, a trained stocks model (the only case `monitor all` then checks), no retrain on
    an alarm (the test is about the worker, not the alarm)."""
    from r2n2.registry import load_params, run_stage

    write_tiny_project(folder)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["stocks"]["monitor"]["retrain_on_alarm"] = False
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = load_params(folder / "params.yaml").case("stocks")
    for stage in ("ingest", "validate", "window", "train"):
        run_stage(stage, "stocks", cfg, folder)


def _worker(pool: str, api_url: str, log: Path) -> subprocess.Popen:
    """`prefect worker start` from this venv, as a team would start it on the machine that runs the flows."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PREFECT_API_URL": api_url, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    with open(log, "w") as fh:  # a file, not a pipe: a full pipe would block the worker
        return subprocess.Popen([str(bin_dir / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                 "--limit", "1"], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=log.parent,
                                start_new_session=True)


async def _wait_final(run_id, timeout_s: float):
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run_id)
            if run.state.is_final() or time.monotonic() > deadline:
                return run
            await asyncio.sleep(1)


@pytest.mark.slow
def test_monitor_deployment_runs_through_a_real_worker(prefect_server, project, monkeypatch, capsys):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    from flows.cli import main

    _monitorable_stocks(project)
    report = project / "data/ops/stocks/reports/stocks/monitor.json"
    assert not report.exists()
    api_url, pool = PREFECT_API_URL.value(), f"r2n2-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    assert main(["deploy", "--pool", pool]) == 0
    printed = capsys.readouterr().out
    assert f"work pool '{pool}' (process, created) now holds:" in printed
    for line in ("retrain/r2n2-retrain  0 22 * * 1-5 (UTC)", "monitor/r2n2-monitor  30 21 * * 1-5 (UTC)"):
        assert line in printed, printed  # serve's names and crons (params.yaml's serve section)
    assert printed.rstrip().endswith(f"prefect worker start --pool {pool}")
    with get_client(sync_client=True) as client:
        d = client.read_deployment_by_name("monitor/r2n2-monitor")
    assert d.work_pool_name == pool and d.entrypoint == "flows.monitor.monitor_flow"
    assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(project.resolve())}}]

    started = time.time()
    run = run_deployment("monitor/r2n2-monitor", timeout=0)  # scheduled now; nothing runs it but a worker
    assert run.work_pool_name == pool and run.parameters == {"case": "all", "params_path": "params.yaml"}
    worker = _worker(pool, api_url, project / "worker.log")
    try:
        final = asyncio.run(_wait_final(run.id, 120))
    finally:
        os.killpg(worker.pid, 15)  # the worker and any flow-run process it still has
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()
    log = (project / "worker.log").read_text()
    assert final.state.is_completed(), f"{final.state!r}\n{log[-4000:]}"
    assert final.infrastructure_pid, log[-2000:]  # a process the worker started ran it
    written = json.loads(report.read_text())
    assert written["case"] == "stocks" and report.stat().st_mtime >= started
    assert main(["deploy", "--pool", pool]) == 0  # a second deploy updates the same two deployments
    again = capsys.readouterr().out
    assert f"work pool '{pool}' (process, exists)" in again and f"(id {d.id})" in again
