"""Scheduled retraining of the cases that need it: re-ingest the newest data -> `dvc repro` of that case's
stages only (one Prefect task per stage, its DVC output streamed to the run log) -> champion vs challenger on
fresh data (``r2n2.ops.champion``) -> `dvc push`.

A file lock (data/.retrain.lock) is taken before anything slow starts, so a second retrain in the same
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
from r2n2.stages import STAGE_NAMES

from .failures import RetrainBusy, expected_failures, hold_retrain_lock
from .naming import case_run_name, fmt4

LOCK_PATH = Path("data") / ".retrain.lock"


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


@task(cache_policy=NONE, task_run_name="promote-{case}")
@expected_failures
def champion_task(case: str, params_path: str, overrides: list[str] | None) -> dict:
    from r2n2.registry import load_params
    from r2n2.ops.champion import promote_if_not_worse
    from r2n2.registry import get_case

    decision = promote_if_not_worse(get_case(case), load_params(params_path, overrides).case(case))
    get_run_logger().info(f"{case}: {decision['reason']}")
    publish_promotion(decision)
    return decision


def publish_promotion(d: dict) -> None:
    rows = [{"model": who, **{k: v for k, v in (d.get(who) or {}).items() if not isinstance(v, (dict, list))}}
            for who in ("champion", "challenger")]
    w = d.get("window") or {}
    create_table_artifact(fmt4(rows), key=f"{d['case']}-promotion",
                          description=f"{d['case']}: champion vs challenger on {w.get('start')} .. {w.get('end')} "
                                      f"(fresh data, before the test split); {d['test'].get('name')} "
                                      f"p = {fmt4(d['test'].get('p_value'))}; promoted: {d['promoted']}")


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
                 push: bool = True) -> list[dict]:
    """For each case: force a fresh ingest, reproduce only that case's stages, promote on fresh data."""
    if not Path(".dvc").is_dir():
        raise R2N2Error("retrain runs `dvc repro` and needs a DVC project here; run `make init` (git + dvc init) "
                        "first.")
    decisions = []
    with hold_retrain_lock(LOCK_PATH):  # deployments and monitor-triggered retrains hold it too
        for case in cases:
            for stage in STAGE_NAMES:
                dvc_stage_task(stage, case, force=stage == "ingest")  # the source may hold new rows
            decisions.append(champion_task(case, params_path, overrides))
        pushed = push_task() if push else "push disabled"
    lines = [f"- **{d['case']}**: {'promoted' if d['promoted'] else 'kept the champion'}: {d['reason']}"
             for d in decisions]
    create_markdown_artifact("# Retrain\n\n" + "\n".join(lines) + f"\n\nDVC: {pushed}\n", key="retrain-decision",
                             description="champion/challenger decisions of the last retrain")
    return decisions


def run_retrain(cases: list[str], params_path: str, overrides: list[str] | None, *, push: bool) -> list[dict]:
    from .failures import run_flow_cli

    return run_flow_cli(retrain_flow, cases, params_path, overrides, push)


__all__ = ["retrain_flow", "run_retrain", "RetrainBusy", "LOCK_PATH", "hold_retrain_lock"]
