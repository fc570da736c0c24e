"""`r2n2 deploy`: the retrain and monitor deployments of `r2n2 serve`, registered on a Prefect process work pool.

`r2n2 serve` holds the deployments in one process and runs every flow run itself (`prefect.serve`). `r2n2 deploy`
registers the same two deployments (serve's names, crons, parameters, tags: `flows.serve.build_deployments`) on a
work pool and exits; a worker started with `prefect worker start --pool r2n2` on the machine that should run them
(a GPU box) polls the server and runs each flow run in a subprocess. The scheduler stays with the server.

The deployment's source is the project folder `r2n2 deploy` ran in, by its absolute path: a local source, nothing
built, copied or pushed (`flow.from_source(<folder>, ...)`; its pull step sets the run's working directory to the
folder, where params.yaml and data/ live). The entrypoints are module paths (`flows.monitor.monitor_flow`), so the
run imports the same `flows` package the CLI does from the worker's Python. Hence on the worker's machine: the
project at the same absolute path (a checkout there, or a shared file system), r2n2 installed in the Python that
runs `prefect worker start`, and PREFECT_API_URL naming the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from r2n2.config import Params
from r2n2.errors import ConfigError, truncate

__all__ = ["POOL", "ENTRYPOINTS", "Registered", "build_pool_deployments", "deploy", "deploy_command", "needs_server",
           "ensure_pool", "worker_command"]

POOL = "r2n2"  # the default --pool
POOL_TYPE = "process"  # a worker runs each flow run as a subprocess of itself: no image, no cloud
ENTRYPOINTS = {"retrain": "flows.retrain.retrain_flow", "monitor": "flows.monitor.monitor_flow"}  # flow name -> path


@dataclass(frozen=True)
class Registered:
    """One deployment as the server now holds it."""

    name: str  # "<flow>/<deployment>", as `run_deployment` and the UI name it
    id: UUID
    schedules: list[str]  # "cron (timezone)"
    parameters: dict


def needs_server() -> None:
    """The same paragraph as `r2n2 serve`: a work pool lives on a server that stays up, never a temporary one."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("`r2n2 deploy` needs a running Prefect server: start one with `make ui` (or `r2n2 ui`) "
                          "and export PREFECT_API_URL=http://127.0.0.1:4200/api in this shell.")


def worker_command(pool: str) -> str:
    return f"prefect worker start --pool {pool}"


def ensure_pool(pool: str) -> bool:
    """Create the process work pool `pool` unless it exists; True when created. A pool of another type is an error
    (its worker would need an image or a cloud account)."""
    import httpx
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except httpx.ConnectError as exc:  # the first request: a server that is down, or a wrong URL
            raise ConfigError(f"no Prefect server answers at PREFECT_API_URL={truncate(client.api_url, 120)} "
                              f"({truncate(exc, 80)}): start one with `make ui` (or `r2n2 ui`), or export the URL "
                              "of the server that runs.") from None
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=pool, type=POOL_TYPE, base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="r2n2: scheduled retrain and monitor runs (`r2n2 deploy`)"))
                return True
            except ObjectAlreadyExists:  # a second `r2n2 deploy` created it a moment ago
                existing = client.read_work_pool(pool)
    if existing.type != POOL_TYPE:
        raise ConfigError(f"work pool {pool!r} exists as a {existing.type!r} pool; `r2n2 deploy` registers on a "
                          f"{POOL_TYPE!r} pool: name another with --pool.")
    return False


def build_pool_deployments(params: Params, params_path: str = "params.yaml", *, project: Path, pool: str) -> list:
    """Serve's deployments, each loaded from `project` (a local source) and bound to the work pool `pool`."""
    from prefect import Flow

    from .serve import build_deployments  # Prefect: `r2n2 deploy --help` and POOL stay light

    out = []
    for served in build_deployments(params, params_path):
        flow = Flow.from_source(source=str(project), entrypoint=ENTRYPOINTS[served.flow_name])
        out.append(flow.to_deployment(name=served.name, schedules=served.schedules, parameters=served.parameters,
                                      tags=served.tags, description=served.description, work_pool_name=pool))
    return out


def deploy(params: Params, params_path: str = "params.yaml", *, pool: str = POOL,
           project: Path | None = None) -> tuple[bool, list[Registered]]:
    """Create the pool if missing and register (or update) both deployments on it.

    `project` (default: the working directory, where serve looks for each case's data) is where the runs execute.
    Returns (whether the pool was created, the deployments as registered).
    """
    needs_server()
    project = (project or Path.cwd()).resolve()
    created = ensure_pool(pool)
    out = []
    for d in build_pool_deployments(params, params_path, project=project, pool=pool):
        crons = [f"{s.schedule.cron} ({s.schedule.timezone})" for s in d.schedules]
        out.append(Registered(f"{d.flow_name}/{d.name}", d.apply(), crons, dict(d.parameters)))
    return created, out


def deploy_command(args, params: Params) -> str:
    """`r2n2 deploy [--pool NAME]`: what was registered, and the worker command."""
    project = Path.cwd().resolve()
    created, registered = deploy(params, args.params, pool=args.pool, project=project)
    lines = [f"work pool {args.pool!r} ({POOL_TYPE}, {'created' if created else 'exists'}) now holds:"]
    for r in registered:
        params_text = ", ".join(f"{k}={v}" for k, v in r.parameters.items())
        lines.append(f"  {r.name}  {'; '.join(r.schedules)}  {params_text}  (id {r.id})")
    lines += [f"Runs execute in {project} on the machine of a worker; start one there (this project "
              "at the same path, r2n2 installed, the server reachable):",
              f"  export PREFECT_API_URL={os.environ['PREFECT_API_URL']}",
              f"  {worker_command(args.pool)}"]
    return "\n".join(lines)
