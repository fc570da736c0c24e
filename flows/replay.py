"""`r2n2 replay`: a case's simulated calendar (the one loop of ``r2n2.ops.replay``, stepping trading days for
prices and arrival batches for texts) as one Prefect flow with a named sub-run per retrain period, so the UI shows
the history: alarms, retrains and promotions as they happened. With ``--workers`` / ``--dask-address`` the
scheduled challengers are trained ahead on Dask before the first sub-run."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from r2n2.errors import ConfigError
from r2n2.ops.loop import make_replay
from r2n2.paths import CasePaths
from r2n2.registry import get_case, load_params
from .failures import expected_failures, run_flow_cli
from .ui import embedded_plot


_RUNS: dict[str, object] = {}  # replay objects by key: sub-runs take plain parameters


@flow(name="replay-period", flow_run_name="replay-{case}-{until}", persist_result=False)
@expected_failures
def replay_period(key: str, case: str, until: str) -> dict:
    """One retrain period of the replay: its steps' predictions, monitor checks, retrain and promotion."""
    rp = _RUNS[key]
    rp.log, rp.warn = get_run_logger().info, get_run_logger().warning
    counts = rp.run_until(until)
    get_run_logger().info(f"through {until}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


# Named from the parameters as given: `start` is a date for prices, an arrival index or a date for texts.
@flow(name="replay", flow_run_name="replay-{case}-{start}", persist_result=False)
@expected_failures
def replay_flow(case: str, start: str, end: str, retrain_every: int = 21, monitor_every: int = 5,
                warm_start: bool = False, params_path: str = "params.yaml", overrides: list[str] | None = None,
                batch: int | None = None, workers: int = 1, dask_address: str | None = None,
                threads: int | None = None, retrain_policy: str = "both") -> dict:
    t0 = time.perf_counter()
    cfg = load_params(params_path, overrides).case(case)
    rp = make_replay(get_case(case), cfg, Path("."), start=start, end=end, retrain_every=retrain_every,
                               monitor_every=monitor_every, warm_start=warm_start, batch=batch,
                               workers=workers, dask_address=dask_address, threads=threads,
                               retrain_policy=retrain_policy, log=get_run_logger().info)
    key = f"{case}-{start}-{id(rp)}"
    _RUNS[key] = rp
    try:
        for until in rp.period_ends():
            replay_period(key, case, until)
    finally:
        _RUNS.pop(key, None)
        rp.close()  # a parallel replay's Dask workers, if a failure left them running
    out = replay_report_dir(case)
    summary = rp.write_report(out, seconds=time.perf_counter() - t0)
    create_markdown_artifact((out / "replay.md").read_text().replace("](live_error.png)", f"]({_url(out / 'live_error.png')})"),
                             key=f"{case}-replay", description=f"{case}: replay {start} .. {end}")
    return summary


def replay_report_dir(case: str) -> Path:
    """The replay's report: in the case's operations workspace, never the research reports (its scratch projects
    are under data/ops/<case>/replay/)."""
    return CasePaths(case).operations().reports / "replay"


def _url(path: Path) -> str:
    return embedded_plot(path)


def run_replay(case: str, params_path: str, overrides: list[str] | None, *, start: str, end: str,
               retrain_every: int, monitor_every: int, warm_start: bool, batch: int | None = None, workers: int = 1,
               dask_address: str | None = None, threads: int | None = None, retrain_policy: str = "both") -> str:
    """`r2n2 replay`: run the flow and return its one-line summary."""
    if retrain_every < 1 or monitor_every < 1:
        raise ConfigError("--retrain-every and --monitor-every must be >= 1.")
    if workers < 1 or (threads is not None and threads < 1):
        raise ConfigError(f"--workers and --threads must be >= 1, got {workers} and {threads}.")
    load_params(params_path, overrides).case(case)
    get_case(case).replay_check(batch=batch)  # a replay this case cannot run fails before a Prefect server starts
    s = run_flow_cli(replay_flow, case, start, end, retrain_every, monitor_every, warm_start, params_path, overrides,
                     batch, workers, dask_address, threads, retrain_policy)
    return (f"replay {case} {s['start']} .. {s['end']}: {s['checks']} checks, {s['alarms']} alarms, "
            f"{s['n_retrains']} retrains, {s['promotions']} promotions; {s['headline']} -> "
            f"{replay_report_dir(case).as_posix()}/ ({s['seconds']['total']:.0f} s)")
