"""Scheduled retraining: ingest the newest data -> `dvc repro` -> champion/challenger -> `dvc push`.

A file lock (data/.retrain.lock) keeps two retrains from running in one workspace at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from r2n2.champion import decide_promotion, promote, read_champion_metrics
from r2n2.errors import R2N2Error
from r2n2.paths import CasePaths

LOCK_PATH = Path("data") / ".retrain.lock"


class RetrainBusy(R2N2Error):
    """Another retrain holds the workspace lock."""


def _dvc(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("dvc") or "dvc"
    proc = subprocess.run([exe, *args], capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise R2N2Error(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc


@task(cache_policy=NONE, retries=2, retry_delay_seconds=10)
def repro_task(force_ingest: bool) -> str:
    """Re-ingest (the source may have new rows), then reproduce whatever changed."""
    if force_ingest:
        _dvc("repro", "--force", "--single-item", "ingest")
    return _dvc("repro").stdout[-2000:]


@task(cache_policy=NONE)
def champion_task(case: str) -> dict:
    paths = CasePaths(case)
    challenger = json.loads((paths.reports / "metrics.json").read_text())
    ok, reason = decide_promotion(case, challenger, read_champion_metrics(paths))
    if ok:
        promote(paths, challenger)
    get_run_logger().info(f"{case}: {reason}")
    return {"case": case, "promoted": ok, "reason": reason}


@task(cache_policy=NONE, retries=2, retry_delay_seconds=10)
def push_task() -> str:
    remotes = _dvc("remote", "list").stdout.strip()
    if not remotes:
        return "no DVC remote configured: nothing pushed"
    _dvc("push")
    return f"pushed to {remotes.splitlines()[0].split()[0]}"


@flow(name="retrain", persist_result=False)
def retrain_flow(cases: list[str] | None = None, force_ingest: bool = True, push: bool = True) -> list[dict]:
    """ingest newest data -> dvc repro -> promote each case's challenger if not worse -> dvc push."""
    cases = cases or ["stocks", "sentiment"]
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(LOCK_PATH))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RetrainBusy(f"another retrain is running in this workspace (lock {LOCK_PATH} is held); "
                          "this run did nothing.") from None
    try:
        repro_task(force_ingest)
        decisions = [champion_task(c) for c in cases]
        pushed = push_task() if push else "push disabled"
    finally:
        lock.release()
    lines = [f"- **{d['case']}**: {'promoted' if d['promoted'] else 'kept champion'} — {d['reason']}"
             for d in decisions]
    create_markdown_artifact("# Retrain\n\n" + "\n".join(lines) + f"\n\nDVC: {pushed}\n", key="retrain-decision",
                             description="champion/challenger decisions of the last retrain")
    return decisions
