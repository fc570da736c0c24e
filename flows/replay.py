"""`r2n2 replay`: the simulated calendar (``r2n2.ops.replay``) as one Prefect flow with a named sub-run per
retrain period, so the UI shows the history: alarms, retrains and promotions as they happened."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from r2n2.config import load_params
from r2n2.paths import CasePaths

from .failures import expected_failures
from .naming import case_run_name

_RUNS: dict[str, object] = {}  # replay objects by key: sub-runs take plain parameters


@flow(name="replay-period", flow_run_name="replay-{case}-{until}", persist_result=False)
@expected_failures
def replay_period(key: str, case: str, until: str) -> dict:
    """One retrain period of the replay: its daily forecasts, monitor checks, retrain and promotion."""
    rp = _RUNS[key]
    rp.log = get_run_logger().info
    counts = rp.run_until(pd.Timestamp(until))
    get_run_logger().info(f"until {until}: {counts}")
    return counts


@flow(name="replay", flow_run_name=case_run_name("replay", date_param="start"), persist_result=False)
@expected_failures
def replay_flow(case: str, start: str, end: str, retrain_every: int = 21, monitor_every: int = 5,
                warm_start: bool = False, params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    from r2n2.ops.replay import SeriesReplay, write_replay_report

    t0 = time.perf_counter()
    cfg = load_params(params_path, overrides).case(case)
    rp = SeriesReplay(case, cfg, Path("."), start, end, retrain_every=retrain_every, monitor_every=monitor_every,
                      warm_start=warm_start, log=get_run_logger().info)
    key = f"{case}-{start}-{id(rp)}"
    _RUNS[key] = rp
    try:
        for until in rp.period_ends():
            replay_period(key, case, str(until.date()))
    finally:
        _RUNS.pop(key, None)
    out = CasePaths(case).reports / "replay"
    summary = write_replay_report(rp, out, seconds=time.perf_counter() - t0)
    create_markdown_artifact((out / "replay.md").read_text().replace("](live_error.png)", f"]({_url(out / 'live_error.png')})"),
                             key=f"{case}-replay", description=f"{case}: replay {start} .. {end}")
    return summary


def _url(path: Path) -> str:
    from .ui import plot_url

    return plot_url(path)


def run_replay(case: str, params_path: str, overrides: list[str] | None, *, start: str, end: str,
               retrain_every: int, monitor_every: int, warm_start: bool) -> str:
    from r2n2.errors import ConfigError

    from .failures import run_flow_cli

    if retrain_every < 1 or monitor_every < 1:
        raise ConfigError("--retrain-every and --monitor-every must be >= 1.")
    s = run_flow_cli(replay_flow, case, start, end, retrain_every, monitor_every, warm_start, params_path, overrides)
    return (f"replay {case} {s['start']} .. {s['end']}: {s['alarms']} alarms, {s['retrains']} retrains, "
            f"{s['promotions']} promotions; RMSE ratio to the random walk: champion "
            f"{s['rmse_ratio_to_random_walk']['deployed champion']:.4f}, never retrained "
            f"{s['rmse_ratio_to_random_walk']['never retrained']:.4f} -> data/reports/{case}/replay/ "
            f"({s['seconds']['total']:.0f} s)")
