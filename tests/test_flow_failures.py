"""Expected failures end Prefect runs Failed with their paragraph and no traceback (terminal and UI logs), bugs
keep theirs; the retrain lock refuses a second retrain at once, before Prefect is imported."""

from __future__ import annotations  # string annotations, as in flows/: Prefect must still resolve them

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NONE

from flows.failures import RetrainBusy, expected_failures, hide_expected_tracebacks, hold_retrain_lock, run_flow_cli
from r2n2.errors import ConfigError, DataError, R2N2Error, ValidationFailed

ROOT = Path(__file__).resolve().parents[1]
PARAGRAPH = ("The label column 'sentiment' holds a single class ('POS' in all 900 rows): a classifier needs at "
             "least 2 classes. Check the source file or data.columns.label in params.yaml.")


@task(cache_policy=NONE)
@expected_failures
def check_labels(n_classes: int) -> int:
    if n_classes < 2:
        raise DataError(PARAGRAPH)
    return n_classes


@task(cache_policy=NONE)
@expected_failures
def divide(x: int) -> float:
    return 1 / x  # x=0 is a bug, not a user error


@flow(name="demo-labels", persist_result=False)
@expected_failures
def labels_flow(n_classes: int = 1) -> int:
    return check_labels(n_classes) + 1


@flow(name="demo-bug", persist_result=False)
@expected_failures
def bug_flow(x: int = 0) -> float:
    return divide(x)


@flow(name="demo-validation", persist_result=False)
@expected_failures
def validation_flow() -> None:
    raise ValidationFailed(PARAGRAPH, {"failed": 1, "expectations": 9})


@flow(name="demo-child", persist_result=False)
@expected_failures
def child_flow() -> None:
    raise ConfigError("stocks.train.lr: 'fast' is not a number.")


@flow(name="demo-parent", persist_result=False)
@expected_failures
def parent_flow() -> str:
    child_flow()
    return "unreachable"


@flow(name="demo-async", persist_result=False)
@expected_failures
async def async_flow() -> None:
    raise DataError(PARAGRAPH)


@dataclasses.dataclass
class Settings:  # a parameter type only this module's globals know
    classes: int = 1


@flow(name="demo-settings", persist_result=False)
@expected_failures
def settings_flow(settings: Settings) -> int:
    return check_labels(settings.classes)


def run_logs(flow_run_id) -> str:
    """Every log line the server stored for a flow run and its task runs (what the UI shows), tracebacks included."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs go to the server in batches
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def test_expected_failure_in_a_task_fails_the_flow_with_the_paragraph_and_no_traceback(prefect_server):
    state = labels_flow(1, return_state=True)
    assert state.is_failed()
    assert state.message == PARAGRAPH
    logs = run_logs(state.state_details.flow_run_id)
    assert "Task run failed with exception: DataError" in logs  # the task's failure is still logged ...
    assert PARAGRAPH in logs
    assert "Traceback" not in logs  # ... without its traceback, in the UI


def test_run_flow_cli_raises_the_error_itself(prefect_server):
    with pytest.raises(DataError) as info:
        run_flow_cli(labels_flow, 1)
    assert str(info.value) == PARAGRAPH
    assert run_flow_cli(labels_flow, 3) == 4  # a success returns the flow's value


def test_parameters_with_string_annotations_from_the_flows_module(prefect_server):
    assert run_flow_cli(settings_flow, Settings(3)) == 3
    with pytest.raises(DataError):
        run_flow_cli(settings_flow, Settings(1))


def test_validation_failed_keeps_its_result(prefect_server):
    with pytest.raises(ValidationFailed) as info:
        run_flow_cli(validation_flow)
    assert str(info.value) == PARAGRAPH
    assert info.value.result == {"failed": 1, "expectations": 9}  # the CLI's exit 3 and the artifact need it


def test_a_failed_subflow_fails_its_parent_with_the_same_paragraph(prefect_server):
    state = parent_flow(return_state=True)
    assert state.is_failed()
    assert state.message == "stocks.train.lr: 'fast' is not a number."
    assert "Traceback" not in run_logs(state.state_details.flow_run_id)
    with pytest.raises(ConfigError, match="'fast' is not a number"):
        run_flow_cli(parent_flow)


def test_async_flow(prefect_server):
    state = asyncio.run(async_flow(return_state=True))
    assert state.is_failed() and state.message == PARAGRAPH


def test_a_bug_keeps_its_traceback(prefect_server):
    with pytest.raises(ZeroDivisionError):
        run_flow_cli(bug_flow, 0)
    state = bug_flow(0, return_state=True)
    assert state.is_failed()
    assert "ZeroDivisionError" in state.message
    assert "Traceback" in run_logs(state.state_details.flow_run_id)


# What the CLI will do: run the flow, print an R2N2Error's paragraph, exit 2 (3 for ValidationFailed). Then a bug
# in the same process (one start-up less), after a marker line.
CLI = textwrap.dedent("""
    import sys
    from flows.failures import run_flow_cli
    from r2n2.errors import R2N2Error
    from tests.test_flow_failures import bug_flow, labels_flow
    try:
        run_flow_cli(labels_flow, 1)
    except R2N2Error as exc:
        print(f"r2n2 pipeline: {exc}", file=sys.stderr, flush=True)
    print("=== bug ===", file=sys.stderr, flush=True)
    run_flow_cli(bug_flow, 0)
""")


def test_terminal_shows_the_paragraph_without_traceback_and_a_bug_with_one(prefect_server):
    """A fresh process against the session's server: its stdout + stderr are what a terminal shows."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, "-c", CLI], env=env, capture_output=True, text=True, timeout=120)
    expected, bug = proc.stderr.split("=== bug ===\n")
    assert "Traceback" not in expected + proc.stdout and "NoneType: None" not in expected
    assert expected.splitlines()[-1] == f"r2n2 pipeline: {PARAGRAPH}"
    # Prefect's run lines (begin, view at, task failed, task finished, flow finished) and the paragraph.
    assert len(expected.splitlines()) == 6, expected
    assert proc.returncode == 1
    assert "Traceback" in bug and bug.rstrip().endswith("ZeroDivisionError: division by zero")


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())


def test_filter_drops_only_expected_tracebacks():
    hide_expected_tracebacks()
    hide_expected_tracebacks()  # idempotent
    logger = logging.getLogger("prefect.task_runs")
    assert sum(type(f).__name__ == "_DropExpectedTraceback" for f in logger.filters) == 1
    expected, bug = _record(DataError("bad")), _record(KeyError("x"))
    assert logger.filter(expected) and logger.filter(bug)  # records are kept, never dropped
    assert expected.exc_info is None
    assert bug.exc_info is not None and bug.exc_info[0] is KeyError


# -- the retrain lock ---------------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from filelock import FileLock  # the same OS lock hold_retrain_lock takes, without r2n2's import time
    with FileLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")
# What `r2n2 retrain` does first: the lock, before importing Prefect or starting a server.
SECOND = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    from flows.failures import hold_retrain_lock
    from r2n2.errors import R2N2Error
    t1 = time.perf_counter()
    try:
        with hold_retrain_lock(sys.argv[1]):
            import prefect  # never reached while another retrain holds the lock
            sys.exit(0)
    except R2N2Error as exc:
        print(f"r2n2 retrain: {exc}", file=sys.stderr)
        print(f"{t1 - t0:.3f} {time.perf_counter() - t1:.3f} {'prefect' in sys.modules}")
        sys.exit(2)
""")


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_second_retrain_exits_at_once_with_one_paragraph(tmp_path):
    lock = tmp_path / "data" / ".retrain.lock"
    holder = _python(HOLDER, str(lock))
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        second = _python(SECOND, str(lock))
        out, err = second.communicate(timeout=30)
        wall = time.perf_counter() - t0
        assert second.returncode == 2
        imports, refusal, prefect_imported = out.split()
        assert prefect_imported == "False"  # refused before Prefect was even imported
        # The refusal itself is instant; the process's wall time is Python's start-up plus `import r2n2` (torch).
        assert float(refusal) < 0.5, f"refusal {refusal} s, imports {imports} s, process {wall:.1f} s"
        print(f"second retrain: imports {imports} s, refusal {refusal} s, process wall {wall:.2f} s")
        assert err == (f"r2n2 retrain: Another retrain is running in this workspace (lock {lock} is held), so this "
                       "one did nothing. Wait for it to finish, or if no retrain is running, check for a stuck "
                       "`r2n2 retrain` process.\n")
    finally:
        holder.kill()
        holder.wait()
    # The OS releases the lock with its holder, even a killed one: the next retrain proceeds.
    with hold_retrain_lock(lock) as held:
        assert held == lock


PROBE = textwrap.dedent("""
    import sys
    from filelock import FileLock, Timeout
    try:
        FileLock(sys.argv[1]).acquire(timeout=0)
    except Timeout:
        sys.exit(1)
""")


def _free_for_others(lock: Path) -> bool:
    """Whether another process could take the lock now."""
    return subprocess.run([sys.executable, "-c", PROBE, str(lock)], timeout=30).returncode == 0


def test_lock_nests_in_one_process_and_is_held_until_the_outer_block_ends(tmp_path, monkeypatch):
    lock = tmp_path / "data" / ".retrain.lock"
    monkeypatch.chdir(tmp_path)
    with hold_retrain_lock(lock):  # the CLI
        with hold_retrain_lock("data/.retrain.lock"):  # the retrain flow in the same process, by a relative path
            assert not _free_for_others(lock)
        assert not _free_for_others(lock)  # the inner exit does not release the CLI's hold
    assert _free_for_others(lock)
    assert issubclass(RetrainBusy, R2N2Error)  # the CLI's `except R2N2Error` -> exit 2


@pytest.mark.slow
def test_a_prefect_server_killed_mid_pipeline_ends_in_one_paragraph_and_a_rerun_completes(prefect_server, tmp_path):
    """`r2n2 pipeline` against a real `prefect server start`, killed once ingest has written its output: the run
    ends by itself (exit 2) with one paragraph naming the API, no traceback and Prefect's lost events said once;
    the same command against a live server then completes."""
    import socket

    from prefect.settings import PREFECT_API_URL

    from .conftest import init_dvc_project, write_tiny_project

    project = tmp_path / "project"
    project.mkdir()
    write_tiny_project(project)
    init_dvc_project(project)  # the pipeline has DVC run each stage
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": url,
           "PATH": f"{Path(__file__).resolve().parents[1] / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the Prefect server did not answer within 120 s")
        err_path = tmp_path / "run.err"
        with open(err_path, "w") as err:
            run = subprocess.Popen([sys.executable, "-m", "flows.cli", "pipeline", "stocks"], cwd=project, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            raw = project / "data/raw/stocks.parquet"
            while not raw.exists() and run.poll() is None and time.monotonic() < deadline + 120:
                time.sleep(0.1)
            os.killpg(server.pid, 9)  # the server and its workers, mid-run
            server.wait(timeout=30)
            code = run.wait(timeout=240)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
    stderr = err_path.read_text()
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.count("the Prefect API is not answering") <= 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"r2n2 pipeline: the Prefect API at {url} stopped answering during the run ("), last
    assert last.endswith("start the server again (`r2n2 ui` in another terminal, or unset PREFECT_API_URL for a "
                         "temporary one) and rerun the same command.")
    again = subprocess.run([sys.executable, "-m", "flows.cli", "pipeline", "stocks"], cwd=project,
                           env={**env, "PREFECT_API_URL": PREFECT_API_URL.value()}, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pipeline stocks finished" in again.stdout and (project / "data/reports/stocks/report.md").is_file()


def test_after_a_lost_api_the_paragraph_is_the_last_line_even_with_chatty_background_threads(tmp_path):
    """`r2n2` (the console entry) ending on a lost API: a background thread that keeps printing to stderr (as
    Prefect's log and event workers do while retrying a dead server) cannot write after the closing paragraph."""
    script = textwrap.dedent("""
        import sys, threading, time
        import flows.cli as cli
        from flows.failures import ApiLost

        def chatter():
            while True:
                print("All connection attempts failed", file=sys.stderr, flush=True)
                time.sleep(0.001)

        def dispatch(args):
            threading.Thread(target=chatter, daemon=True).start()
            time.sleep(0.05)
            raise ApiLost("the Prefect API at http://127.0.0.1:1/api stopped answering during the run.")

        cli.dispatch = dispatch
        sys.argv = ["r2n2", "pipeline", "stocks"]
        cli.entry()
    """)
    for _ in range(5):  # the race, five times
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert lines[-1] == ("r2n2 pipeline: the Prefect API at http://127.0.0.1:1/api stopped answering during "
                             "the run."), lines[-3:]
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group, code", [(2, True, 130), (15, False, 143)], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_pipeline_ends_in_one_paragraph_and_stops_its_children(tmp_path, sig, to_group, code):
    """`r2n2 pipeline` stopped mid-stage by Ctrl-C (SIGINT to the terminal's process group, the temporary server
    included) or by SIGTERM to the command alone: it exits 130 / 143 with one closing paragraph saying what was
    kept, no traceback, no Prefect worker dump and no "Finished in state Running()"; no process is left behind;
    the finished stages are up to date for DVC and the interrupted one is not."""
    import psutil

    from .conftest import init_dvc_project, write_tiny_project

    write_tiny_project(tmp_path)
    init_dvc_project(tmp_path)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the temporary server, as in `make run`
    env.update(PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(root),
               PREFECT_HOME=str(tmp_path / "prefect-home"))
    err_path = tmp_path / "run.err"
    with open(err_path, "w") as err:
        run = subprocess.Popen([sys.executable, "-c", "from flows.cli import entry; entry()", "pipeline", "stocks"],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 240
        while "Running stage 'train-stocks'" not in err_path.read_text() and run.poll() is None:
            assert time.monotonic() < deadline, err_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)  # training under way
        descendants = psutil.Process(run.pid).children(recursive=True)
        if to_group:
            os.killpg(run.pid, sig)
        else:
            run.send_signal(sig)
        assert run.wait(timeout=180) == code
    stderr = err_path.read_text()
    assert "Traceback" not in stderr and "EventsWorker" not in stderr and "state Running()" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("r2n2 pipeline: interrupted (SIG") and "put its previous outputs back" in last, last
    gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    status = subprocess.run(["dvc", "status", "window-stocks", "train-stocks"], cwd=tmp_path, env=env,
                            capture_output=True, text=True).stdout
    assert "train-stocks" in status and "window-stocks:" not in status, status
