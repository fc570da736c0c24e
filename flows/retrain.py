"""Scheduled retraining of the cases that need it: re-ingest the newest data -> that case's stages only (one
Prefect task per stage) -> champion vs challenger on fresh data (``r2n2.ops.champion``) -> `dvc push`.

Cut dates follow the data (``cuts="rolling"``, the default, also for `r2n2 serve`): ingest, validate, window with
``<case>.window.cuts=rolling`` (the newest ``holdout_days`` are the promotion slice, the ``val_days`` before them
early stopping) and train run as stage functions in the case's operations workspace (``data/ops/<case>/``: its
own raw, validated, windows and models), so a source that grew gives a challenger trained on the new rows and
judged on days neither model trained or early-stopped on, and no research output (``data/raw|validated|windows|
models|reports``) changes: `dvc status` is the same before and after. ``cuts="fixed"`` runs `dvc repro` of the
case's stages with params.yaml's cut dates: the research run, which rewrites the research outputs through DVC
(recorded in dvc.lock; its DVC output streamed to the run log), and its challenger is the research model.
Either way the decision (promotion.json) and the champion go to the operations workspace.

A file lock (data/ops/.retrain.lock) is taken before anything slow starts, so a second retrain in the same
workspace exits at once with one paragraph."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from r2n2.errors import R2N2Error
from r2n2.ops.workspace import ops_paths
from r2n2.paths import CasePaths
from r2n2.registry import get_case, load_params
from r2n2.stages import STAGE_NAMES, run_stage
from .failures import RetrainBusy, expected_failures, hold_retrain_lock, run_flow_cli
from .naming import case_run_name, fmt4


LOCK_PATH = Path("data") / "ops" / ".retrain.lock"  # flows/cli.py takes the same path before importing Prefect


def _dvc(args: list[str], log) -> str:
    """Run dvc, streaming its output line by line to ``log``; a failure is one paragraph."""
    exe = shutil.which("dvc") or "dvc"
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    lines = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            log(line)
    if proc.wait() != 0:
        tail = [ln for ln in lines if not ln.startswith("Traceback")][-4:]
        raise R2N2Error(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}): {' | '.join(tail)[-500:]}")
    return "\n".join(lines)


@task(cache_policy=NONE, task_run_name="{stage}-{case}")
@expected_failures
def dvc_stage_task(stage: str, case: str, force: bool = False) -> str:
    log = get_run_logger()
    return _dvc(["repro", "--single-item", *(["--force"] if force else []), f"{stage}-{case}"], log.info)


@task(cache_policy=NONE, task_run_name="{stage}-{case}")
@expected_failures
def stage_task(stage: str, case: str, params_path: str, overrides: list[str]) -> str:
    """One stage function with the deployment's overrides (rolling cuts), outside DVC, in the case's operations
    workspace (data/ops/<case>/): the research outputs stay as DVC recorded them."""
    log = get_run_logger()
    cfg = load_params(params_path, overrides).case(case)  # first: it makes an instance (brent: stocks) known
    msg = run_stage(stage, get_case(case), cfg, log=log.info, paths=ops_paths(case))
    log.info(msg.splitlines()[0])
    return msg


DEPLOY_STAGES = ("ingest", "validate", "window", "train")  # a challenger; the research stages stay with `dvc repro`


def deploy_overrides(case: str, overrides: list[str] | None) -> list[str]:
    """The deployment's rolling cuts, unless the user set ``<case>.window.cuts`` themselves."""
    overrides = list(overrides or [])
    if not any(o.split("=", 1)[0].strip() == f"{case}.window.cuts" for o in overrides):
        overrides.append(f"{case}.window.cuts=rolling")
    return overrides


@task(cache_policy=NONE, task_run_name="promote-{case}")
@expected_failures
def champion_task(case: str, params_path: str, overrides: list[str] | None, cuts: str = "rolling") -> dict:
    """Champion vs the challenger this retrain trained: rolling, in the operations workspace; fixed, the research
    model `dvc repro` wrote. The decision and the champion go to the operations workspace."""
    from r2n2.ops.champion import promote_if_not_worse  # torch, in the task's process only

    source = ops_paths(case) if cuts == "rolling" else CasePaths(case)
    cfg = load_params(params_path, overrides).case(case)  # first: it makes an instance (brent: stocks) known
    decision = promote_if_not_worse(get_case(case), cfg, source=source)
    get_run_logger().info(f"{case}: {decision['reason']}")
    if decision.get("power"):
        get_run_logger().info(f"{case}: {decision['power']['sentence']}")
    versions = ops_paths(case).champion_dir / "versions"
    if Path(".dvc").is_dir() and versions.is_dir():
        # the versions in DVC (pushed below), their .dvc file in git; after every decision, not only a promotion,
        # so a retrain killed between a promotion and this line is made whole by the next one
        _dvc(["add", "-q", str(versions)], get_run_logger().debug)
    publish_promotion(decision)
    return decision


def publish_promotion(d: dict) -> None:
    rows = [{"model": who, **{k: v for k, v in (d.get(who) or {}).items() if not isinstance(v, (dict, list))}}
            for who in ("champion", "challenger")]
    w = d.get("window") or {}
    days = ("the challenger's holdout: days neither model trained or early-stopped on" if d.get("cut_rule") == "rolling"
            else "fresh data, before the test split")
    power = f". Power: {d['power']['sentence']}" if d.get("power") else ""
    create_table_artifact(fmt4(rows), key=f"{d['case']}-promotion",
                          description=f"{d['case']}: champion vs challenger on {w.get('start')} .. {w.get('end')} "
                                      f"({days}); {d['test'].get('name')} p = {fmt4(d['test'].get('p_value'))}; "
                                      f"promoted: {d['promoted']}{power}")


@task(cache_policy=NONE, retries=2, retry_delay_seconds=10)
def push_task() -> str:
    log = get_run_logger()
    remotes = _dvc(["remote", "list"], log.debug).strip()
    if not remotes:
        return "no DVC remote configured: nothing pushed"
    _dvc(["push"], log.info)
    return f"pushed to {remotes.splitlines()[0].split()[0]}"


@flow(name="retrain", flow_run_name=case_run_name(case_param="cases"), persist_result=False)
@expected_failures
def retrain_flow(cases: list[str], params_path: str = "params.yaml", overrides: list[str] | None = None,
                 push: bool = True, cuts: str = "rolling") -> list[dict]:
    """For each case: a fresh ingest, only that case's stages, promotion on fresh data. ``cuts``: "rolling"
    (deployment: cut dates follow the data) or "fixed" (`dvc repro` with params.yaml's cut dates)."""
    if cuts not in ("rolling", "fixed"):
        raise R2N2Error(f"cuts must be rolling or fixed, got {str(cuts)[:40]!r}.")
    if cuts == "fixed" and not Path(".dvc").is_dir():
        raise R2N2Error("retrain runs `dvc repro` and needs a DVC project here; run `make init` (git + dvc init) "
                        "first.")
    decisions = []
    with hold_retrain_lock(LOCK_PATH):  # deployments and monitor-triggered retrains hold it too
        for case in cases:
            if cuts == "rolling":
                case_overrides = deploy_overrides(case, overrides)
                for stage in DEPLOY_STAGES:
                    stage_task(stage, case, params_path, case_overrides)
            else:
                case_overrides = overrides
                for stage in STAGE_NAMES:
                    dvc_stage_task(stage, case, force=stage == "ingest")  # the source may hold new rows
            decisions.append(champion_task(case, params_path, case_overrides, cuts))
        pushed = ("push disabled" if not push else push_task() if Path(".dvc").is_dir() else
                  "no DVC project here: nothing pushed")
    lines = [f"- **{d['case']}**: {'promoted' if d['promoted'] else 'kept the champion'}: {d['reason']}"
             for d in decisions]
    create_markdown_artifact("# Retrain\n\n" + "\n".join(lines) + f"\n\nDVC: {pushed}\n", key="retrain-decision",
                             description="champion/challenger decisions of the last retrain")
    return decisions


def run_retrain(cases: list[str], params_path: str, overrides: list[str] | None, *, push: bool,
                cuts: str = "rolling") -> list[dict]:
    return run_flow_cli(retrain_flow, cases, params_path, overrides, push, cuts)


__all__ = ["retrain_flow", "run_retrain", "RetrainBusy", "LOCK_PATH", "hold_retrain_lock"]
