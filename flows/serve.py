"""Scheduled deployments: `retrain` (cron from params.serve.retrain_cron) and `monitor` (monitor_cron).

`r2n2 serve` runs them in-process with `prefect.serve` against the server in PREFECT_API_URL
(start one with `r2n2 ui` / `make ui`)."""

from __future__ import annotations

from prefect.schedules import Cron

from r2n2.config import Params

RETRAIN_DEPLOYMENT = "r2n2-retrain"
MONITOR_DEPLOYMENT = "r2n2-monitor"


def build_deployments(params: Params, params_path: str = "params.yaml") -> list:
    from .monitor import monitor_flow  # pandas and the monitor's code, only when deployments are built
    from .retrain import retrain_flow  # pandas and the retrain's code, likewise

    s = params.serve
    retrain = retrain_flow.to_deployment(
        name=RETRAIN_DEPLOYMENT, schedules=[Cron(s.retrain_cron, timezone=s.timezone)],
        parameters={"cases": [c for c in s.cases if _has_data(c)] or list(s.cases), "params_path": params_path},
        tags=["r2n2", "retrain"],
        description="ingest newest data -> each case's stages with rolling cuts in data/ops/<case>/ -> "
                    "champion/challenger on fresh data -> dvc push")
    monitor = monitor_flow.to_deployment(
        name=MONITOR_DEPLOYMENT, schedules=[Cron(s.monitor_cron, timezone=s.timezone)],
        parameters={"case": "all", "params_path": params_path}, tags=["r2n2", "monitor"],
        description="score the champion on the newest data; trigger retrain on drift")
    return [retrain, monitor]


def _has_data(case: str) -> bool:
    """Deployments cover only the cases whose data exists in this project: windowed by the research pipeline or
    by an earlier retrain (in its operations workspace, data/ops/<case>/)."""
    from r2n2.ops.workspace import has_windows  # numpy

    return has_windows(case)


def serve(params: Params, params_path: str = "params.yaml") -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(params, params_path))
