"""What the UI shows: run names, 4-digit tables, plots served over http and rendered in a real browser, and
`r2n2 ui` leaving nothing behind on SIGTERM or Ctrl-C."""

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from flows.naming import case_run_name, fmt4, run_name
from flows.ui import plot_url, published_plot_url, run_ui, serve_files
from r2n2.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PLOT_RGB = (31, 119, 180)  # matplotlib's first line colour (#1f77b4): the plot is on screen if these pixels are


# -- names and numbers --------------------------------------------------------------------------------------
def test_run_name():
    assert run_name("monitor", "stocks", dt.date(2018, 2, 5)) == "monitor-stocks-2018-02-05"
    assert run_name("replay", "stocks", "2008-09-15") == "replay-stocks-2008-09-15"
    assert run_name("replay", "stocks", "2008-09-15T16:00:00") == "replay-stocks-2008-09-15"
    assert run_name("retrain", ["stocks", "sentiment"], dt.datetime(2020, 1, 2, 23, 59)) == \
        "retrain-stocks+sentiment-2020-01-02"
    assert run_name("monitor", "all") == f"monitor-all-{dt.date.today().isoformat()}"


def test_fmt4_rounds_floats_to_4_significant_digits_everywhere():
    rows = [{"model": "r2n2", "rmse": 0.012345678901234567, "n": 250, "ok": True, "big": 123456.789,
             "neg": -2.0000049, "nan": float("nan"), "f32": np.float32(0.333333343), "i64": np.int64(7),
             "curve": (1.23456, [9.87654321])}]
    out = fmt4(rows)
    assert out[0]["rmse"] == 0.01235 and out[0]["big"] == 123500.0 and out[0]["neg"] == -2.0
    assert out[0]["f32"] == 0.3333 and type(out[0]["f32"]) is float
    assert out[0]["n"] == 250 and out[0]["ok"] is True and out[0]["i64"] == 7 and out[0]["model"] == "r2n2"
    assert np.isnan(out[0]["nan"])
    assert out[0]["curve"] == [1.235, [9.877]]
    assert rows[0]["rmse"] == 0.012345678901234567  # the input is not modified


# -- plot URLs and the file server ---------------------------------------------------------------------------
def test_plot_url(tmp_path, monkeypatch):
    reports = tmp_path / "data" / "reports"
    png = reports / "stocks" / "plots" / "live error.png"
    monkeypatch.delenv("R2N2_FILES_URL", raising=False)
    assert plot_url(png, reports_dir=reports) == "http://127.0.0.1:4201/stocks/plots/live%20error.png"
    monkeypatch.setenv("R2N2_FILES_URL", "http://127.0.0.1:9000/")
    assert plot_url(png, reports_dir=reports) == "http://127.0.0.1:9000/stocks/plots/live%20error.png"
    assert plot_url(png, reports_dir=reports, base="http://h:1") == "http://h:1/stocks/plots/live%20error.png"
    monkeypatch.chdir(tmp_path)  # the default reports_dir is data/reports under the working directory
    assert plot_url("data/reports/sentiment/plots/cm.png").endswith(":9000/sentiment/plots/cm.png")
    with pytest.raises(ValueError, match="is not under"):
        plot_url(tmp_path / "params.yaml", reports_dir=reports)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _plot(path: Path, color: str = "C0") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [1, 3, 2, 4], linewidth=6, color=color)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def test_two_workspaces_reports_keep_their_own_pictures(tmp_path, monkeypatch):
    """Two workspaces publish a picture of the same name; a rerun redraws one of them. Each published URL serves
    the bytes of its own run, also after the rerun and from a file server started in a third folder."""
    store, port = tmp_path / "store", _free_port()
    a = _plot(tmp_path / "one/data/reports/stocks/plots/forecast.png")
    b = _plot(tmp_path / "two/data/reports/stocks/plots/forecast.png", color="C3")
    first = {"one": a.read_bytes(), "two": b.read_bytes()}
    assert first["one"] != first["two"]
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("R2N2_PLOT_STORE", str(store))
    urls = {"one": published_plot_url(a, base=base), "two": published_plot_url(b, base=base)}
    _plot(a, color="C2")  # a rerun in workspace one redraws its picture
    urls["one again"] = published_plot_url(a, base=base)
    httpd = serve_files(tmp_path / "elsewhere", port, store=store)

    def get(url):
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read()

    try:
        assert get(urls["one"]) == first["one"] and get(urls["two"]) == first["two"]  # each its own
        assert get(urls["one again"]) == a.read_bytes() != first["one"]  # the rerun has a URL of its own
        with pytest.raises(urllib.error.HTTPError):
            get(f"{base}/_plots/../../etc/passwd")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_file_server_serves_reports_on_localhost_only(tmp_path):
    png = _plot(tmp_path / "stocks" / "plots" / "a b.png")
    port = _free_port()
    httpd = serve_files(tmp_path, port)
    try:
        assert httpd.server_address[0] == "127.0.0.1"
        url = plot_url(png, reports_dir=tmp_path, base=f"http://127.0.0.1:{port}")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"] == "image/png" and r.read() == png.read_bytes()
        with pytest.raises(ConfigError) as info:  # the port is taken now
            serve_files(tmp_path, port)
        assert str(info.value).startswith(f"Cannot start the report file server on 127.0.0.1:{port} (")
        assert str(info.value).endswith("another program, perhaps an earlier `r2n2 ui`, is using that port. "
                                        "Stop it, or choose another port.")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _closed(port)


def test_ui_refuses_a_busy_port_before_starting_anything(tmp_path):
    files_port = _free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Cannot start the Prefect server on 127.0.0.1:{port} "):
            run_ui(port, files_port=files_port, reports_dir=tmp_path)
    assert _closed(files_port)  # the file server was never started


# -- r2n2 ui: two real servers, one stopped by SIGTERM, one by Ctrl-C ------------------------------------------
UI = "import sys; from flows.ui import run_ui; sys.exit(run_ui(int(sys.argv[1]), files_port=int(sys.argv[2])))"


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def uis(tmp_path_factory):
    """Two `run_ui` processes started together (start-up is slow), each in a project folder of its own."""
    started = []
    for name in ("term", "int"):
        folder = tmp_path_factory.mktemp(f"ui-{name}")
        _plot(folder / "data" / "reports" / "stocks" / "plots" / "live error.png")
        port, files_port = _free_port(), _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(folder / "prefect-home"),
               "R2N2_PLOT_STORE": str(folder / "plot-store")}  # the published pictures, not the user's cache
        env.pop("PREFECT_API_URL", None)
        # Own session, like a shell's foreground job: Ctrl-C is a SIGINT to this group only.
        log = open(folder / "ui.log", "w")  # a file, not a pipe nobody reads, which could fill and block
        proc = subprocess.Popen([sys.executable, "-c", UI, str(port), str(files_port)], cwd=folder, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append({"proc": proc, "port": port, "files_port": files_port, "folder": folder})
    deadline = time.monotonic() + 240
    for ui in started:
        while not (_up(f"http://127.0.0.1:{ui['port']}/api/health")
                   and _up(f"http://127.0.0.1:{ui['files_port']}/stocks/plots/live%20error.png")):
            assert ui["proc"].poll() is None, (ui["folder"] / "ui.log").read_text()
            assert time.monotonic() < deadline, "r2n2 ui did not answer within 240 s"
            time.sleep(0.5)
    yield started
    for ui in started:  # only if a test failed before stopping it
        if ui["proc"].poll() is None:
            for p in psutil.Process(ui["proc"].pid).children(recursive=True):
                p.kill()
            os.killpg(ui["proc"].pid, signal.SIGKILL)


def _drain_prefect_workers() -> None:
    """Send this process's queued events and logs while the `r2n2 ui` server they go to is still up. Its
    servers are stopped later in this module; a worker left bound to a dead server made the session's
    `prefect_test_harness` teardown wait forever in a later file on the same xdist worker (seen 2026-12-05:
    test_ui, then test_deploy and test_readme, hung at teardown every time)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


def test_runs_are_named_and_plots_render_in_the_ui(uis, monkeypatch):
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ui = uis[0]
    api = f"http://127.0.0.1:{ui['port']}/api"
    monkeypatch.setenv("R2N2_FILES_URL", f"http://127.0.0.1:{ui['files_port']}")
    monkeypatch.chdir(ui["folder"])

    @flow(name="monitor", flow_run_name=case_run_name(), persist_result=False)
    def monitor(case: str = "stocks") -> str:
        url = plot_url("data/reports/stocks/plots/live error.png")
        return create_markdown_artifact(f"# {case}\n\n![live error]({url})\n", key=f"{case}-report")

    with temporary_settings(updates={PREFECT_API_URL: api}):
        state = monitor("stocks", return_state=True)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        artifact_id = state.result()
        _drain_prefect_workers()
    assert run.name == f"monitor-stocks-{dt.date.today().isoformat()}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium to look at the artifact page (Debian: apt-get install chromium)")
    shot = ui["folder"] / "artifact.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,1000", "--virtual-time-budget=15000",
                    f"http://127.0.0.1:{ui['port']}/artifacts/artifact/{artifact_id}"],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    plot_pixels = (np.abs(pixels - PLOT_RGB).max(axis=1) <= 12).sum()
    assert plot_pixels > 200, "the plot's line is not on the artifact page: the image did not load"


READ_RUNS = """
import asyncio, flows.cli  # flows.cli sets the project's Prefect home, as every r2n2 command does
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

async def main():
    async with get_client() as client:
        for run in await client.read_flow_runs():
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            print(run.name, run.state.type.value, *sorted(t.name for t in tasks))

asyncio.run(main())
"""


def _cli_env() -> dict[str, str]:
    """A user's shell: no Prefect home or API set (the project's own is used), the test's code importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    return {**env, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_runs_outlive_the_command_in_the_projects_prefect_home(tmp_path):
    """A flow command without PREFECT_HOME / PREFECT_API_URL stores its run in the project's .prefect/, where a
    later process (`r2n2 ui` reads the same home) finds it with its tasks."""
    from .conftest import write_tiny_project

    write_tiny_project(tmp_path)
    run = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", "stocks", "--prefect"], cwd=tmp_path,
                         env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / ".prefect" / "prefect.db").is_file()
    read = subprocess.run([sys.executable, "-c", READ_RUNS], cwd=tmp_path, env=_cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    assert f"ingest-stocks-{dt.date.today().isoformat()} COMPLETED ingest-stocks" in read.stdout, read.stdout


def test_commands_in_the_project_use_its_running_ui(uis, tmp_path):
    """While `r2n2 ui` runs, it announces itself in the Prefect home ($PREFECT_HOME/ui.json); a command started in
    a project whose .prefect/ui.json names a live `r2n2 ui` sends its run there instead of starting a temporary
    server on the same database."""
    import json

    from .conftest import write_tiny_project

    ui = uis[0]
    target = ui["folder"] / "prefect-home" / "ui.json"
    deadline = time.monotonic() + 10  # written once the server answers, within a poll (0.5 s) of it
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    announced = json.loads(target.read_text())
    assert announced == {"api_url": f"http://127.0.0.1:{ui['port']}/api", "pid": ui["proc"].pid}
    write_tiny_project(tmp_path)
    (tmp_path / ".prefect").mkdir()
    (tmp_path / ".prefect" / "ui.json").write_text(json.dumps(announced))
    run = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", "stocks", "--prefect"], cwd=tmp_path,
                         env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Starting temporary server" not in run.stderr, run.stderr[-2000:]
    read = subprocess.run([sys.executable, "-c", READ_RUNS], cwd=tmp_path, env=_cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert f"ingest-stocks-{dt.date.today().isoformat()} COMPLETED ingest-stocks" in read.stdout, read.stdout


def _chromium_shot(url: str, shot: Path) -> np.ndarray:
    """The page at `url` as headless Chromium draws it at 1400 x 1000: its pixels, (n, 3) RGB."""
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium to look at the artifact page (Debian: apt-get install chromium)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,1000", "--virtual-time-budget=15000", url],
                   capture_output=True, timeout=120, check=True)
    return np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)


def _near(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(pixels - np.asarray(rgb)).max(axis=1) <= 12).sum())


def test_two_workspaces_two_runs_each_report_version_shows_its_own_plot_in_chromium(uis, tmp_path, monkeypatch):
    """Two workspaces publish the evaluate stage's report artifact (the same key, `stocks-report`) with a plot
    of the same name; workspace one then reruns with a redrawn plot. In a real browser each of the three
    artifact versions shows its own picture: the older version keeps its plot after the rerun."""
    import json

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.stages import publish_report
    from r2n2.paths import CasePaths

    ui = uis[0]
    api = f"http://127.0.0.1:{ui['port']}/api"
    monkeypatch.setenv("R2N2_FILES_URL", f"http://127.0.0.1:{ui['files_port']}")
    monkeypatch.setenv("R2N2_PLOT_STORE", str(ui["folder"] / "plot-store"))  # the store this `r2n2 ui` serves
    colours = {"one": ("C0", (31, 119, 180)), "two": ("C3", (214, 39, 40)), "one again": ("C2", (44, 160, 44))}

    @flow(name="pipeline", persist_result=False)
    def evaluate_stage() -> None:
        publish_report("stocks", CasePaths("stocks"))

    with temporary_settings(updates={PREFECT_API_URL: api}):
        for run, (colour, _) in colours.items():
            reports = tmp_path / run.split()[0] / "data" / "reports" / "stocks"
            _plot(reports / "plots" / "forecast.png", color=colour)
            (reports / "metrics.json").write_text(json.dumps({"model": {"rmse": 0.0127}}))
            (reports / "report.md").write_text(f"# stocks, workspace {run}\n")
            monkeypatch.chdir(reports.parents[2])
            evaluate_stage()
        with get_client(sync_client=True) as client:
            versions = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stocks-report"])))
        _drain_prefect_workers()
    versions = sorted((a for a in versions if "workspace" in a.data), key=lambda a: a.created)  # not the test above's
    assert len(versions) == 3
    for (run, (_, rgb)), artifact in zip(colours.items(), versions):
        assert f"workspace {run}\n" in artifact.data
        assert "](data:image/png;base64," in artifact.data and "127.0.0.1" not in artifact.data  # no file server
        pixels = _chromium_shot(f"http://127.0.0.1:{ui['port']}/artifacts/artifact/{artifact.id}",
                                tmp_path / f"{run}.png")
        others = [c for r, (_, c) in colours.items() if r != run]
        assert _near(pixels, rgb) > 200, f"{run}: its own plot is not on its artifact page"
        assert all(_near(pixels, c) < 20 for c in others), f"{run}: another run's plot is on its artifact page"


@pytest.mark.parametrize("index, sig", [(0, signal.SIGTERM), (1, signal.SIGINT)], ids=["SIGTERM", "Ctrl-C"])
def test_ui_stops_both_servers_and_its_child(uis, index, sig):
    ui = uis[index]
    proc = ui["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("prefect" in " ".join(c.cmdline()) for c in children)
    t0 = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does to the foreground job
    else:
        proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    seconds = time.monotonic() - t0
    assert seconds < 15, f"r2n2 ui took {seconds:.1f} s to stop"
    assert _closed(ui["port"]) and _closed(ui["files_port"])
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {[c.pid for c in alive]}"
    assert not (ui["folder"] / "prefect-home" / "ui.json").exists()  # no longer announced
    print(f"{sig.name}: stopped in {seconds:.1f} s")


def test_metrics_table_puts_the_headline_first_and_names_every_test_set():
    """The `<case>-metrics` artifact: the case's headline columns right after the model (visible without
    scrolling), its test set after them, strings (a method's name) left out, and transfer rows labelled with their entity and
    dates, not "transfer target test"."""
    from flows.stages import metrics_rows

    m = {"test_period": {"entity": "sp500", "start": "2016-02-16", "end": "2018-12-28"},
         "target_period": {"entity": "nasdaq", "start": "2016-02-16", "end": "2018-12-28"},
         "model": {"crps": 0.0025, "crps_method": "scoringrules", "mae": 0.0061, "rmse": 0.00785,
                   "rel_rmse_random_walk": 0.9987, "up_rate": 0.54, "coverage": {"0.9": 0.9}},
         "finetuned": {"rmse": 0.0101, "mae": 0.007},
         "baselines": {"random_walk": {"rmse": 0.00786, "rel_rmse_random_walk": 1.0}}}
    rows = metrics_rows(m, ("rmse", "rel_rmse_random_walk", "oos_r2"))
    assert list(rows[0])[:4] == ["model", "rmse", "rel_rmse_random_walk", "test set"]
    assert "crps_method" not in rows[0] and "coverage" not in rows[0]
    assert [(r["model"], r["test set"]) for r in rows] == [("model", "sp500 test 2016-02-16..2018-12-28"),
                                                          ("finetuned", "nasdaq test 2016-02-16..2018-12-28"),
                                                          ("random_walk", "sp500 test 2016-02-16..2018-12-28")]


def test_metrics_table_carries_the_verdicts_next_to_the_headline():
    """Each baseline row says how the model did against it (verdict, adjusted p where the report has one,
    interval) right after the model's name, before the headline columns: visible at 1600 px without scrolling."""
    from flows.stages import metrics_rows

    m = {"test_period": {"entity": "sp500", "start": "2016-02-16", "end": "2018-12-28"},
         "model": {"rmse": 0.00785, "mae": 0.006, "up_rate": 0.54},
         "baselines": {"random_walk": {"rmse": 0.00786, "mae": 0.0061}},
         "comparisons": [{"a": "model", "b": "random_walk", "metric": "mse_loss_differential", "diff": -1.4e-07,
                          "ci_low": -1.1e-06, "ci_high": 8.3e-07, "p_value": 0.7773, "test": "diebold_mariano",
                          "verdict": "tie"}]}
    rows = metrics_rows(m, ("rmse",))
    assert list(rows[1])[:8] == ["model", "model vs this", "p", "95 % interval", "rmse", "diff", "test", "test set"]
    assert rows[1]["model vs this"] == "tie" and rows[1]["p"] == 0.7773
    assert rows[1]["95 % interval"] == "[-1.1e-06, 8.3e-07]" and rows[1]["test"] == "diebold_mariano on mse_loss_differential"
    assert rows[0]["model vs this"] is None  # the model's own row


def test_validation_table_names_derived_columns_as_a_reader_knows_them(tmp_path, monkeypatch):
    """No internal column (`_days_since_prev`, `_entity_rows`) reaches the `<case>-validation` artifact."""
    import json

    import flows.stages as stages
    from r2n2.paths import CasePaths

    paths = CasePaths("stocks", tmp_path)
    paths.reports.mkdir(parents=True)
    results = [{"expectation": "expect_column_values_to_be_between", "column": c, "says": "a check",
                "success": True} for c in (*stages.DERIVED_COLUMNS, "close", None)]
    (paths.reports / "validation.json").write_text(json.dumps({"results": results, "expectations": len(results),
                                                               "failed": 0, "rows": 10}))
    published = {}
    monkeypatch.setattr(stages, "create_table_artifact", lambda rows, **kw: published.update(rows=rows, **kw))
    stages.publish_validation("stocks", paths)
    columns = [r["column"] for r in published["rows"]]
    assert not any(c.startswith("_") for c in columns), columns
    assert columns[:2] == ["date: days since the entity's previous row", "date"]
    assert columns[-2:] == ["close", "(the table)"]
