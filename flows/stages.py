"""Prefect wrappers: one task per pipeline stage (a thin call of the pure stage function), one flow per stage,
the per-case pipeline flow, and the artifacts a user reads in the UI (stable keys per case)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from r2n2.config import Params, load_params
from r2n2.paths import CasePaths

STAGES = ("ingest", "validate", "window", "train", "finetune", "evaluate")


def _params(params_path: str, overrides: list[str] | None) -> Params:
    return load_params(Path(params_path), overrides or [])


# -- artifacts ---------------------------------------------------------------------------------------
def publish_validation(case: str, summary: dict) -> None:
    rows = [{"batch": r["batch"], "expectation": r["expectation"], "column": r["column"] or "",
             "success": r["success"], "unexpected": r["unexpected_count"], "examples": ", ".join(r["examples"][:3])}
            for r in summary["results"]]
    create_table_artifact(rows, key=f"{case}-validation",
                          description=f"{case}: {summary['expectations'] - summary['failed']}/"
                                      f"{summary['expectations']} expectations passed on {summary['rows']} rows")


def metrics_rows(metrics: dict) -> list[dict]:
    rows = []
    for group in ("model", "finetuned", "scratch"):
        if group in metrics:
            rows.append({"model": group, **{k: v for k, v in metrics[group].items() if not isinstance(v, list)}})
    for group in ("baselines", "target_baselines"):
        for name, m in metrics.get(group, {}).items():
            label = name if group == "baselines" else f"{name} (transfer target)"
            rows.append({"model": label, **{k: v for k, v in m.items() if not isinstance(v, list)}})
    return rows


def publish_report(case: str, paths: CasePaths) -> None:
    metrics = json.loads((paths.reports / "metrics.json").read_text())
    create_table_artifact(metrics_rows(metrics), key=f"{case}-metrics",
                          description=f"{case}: model vs baselines on the same test split")
    report = (paths.reports / "report.md").read_text()
    plots = sorted((paths.reports / "plots").glob("*.png"))
    # Image artifacts need public URLs: local PNGs are listed as file links instead.
    links = "\n".join(f"- [{p.name}]({p.resolve().as_uri()})" for p in plots)
    create_markdown_artifact(report + "\n\n## Plot files\n" + links, key=f"{case}-report",
                             description=f"{case}: evaluation report")


def _is_io_error(state) -> bool:
    """Retry only transient I/O failures, never bad data or bad params."""
    from r2n2.errors import R2N2Error

    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) and not isinstance(exc, R2N2Error)


# -- tasks -------------------------------------------------------------------------------------------
@task(retries=2, retry_delay_seconds=5, retry_condition_fn=lambda t, r, state: _is_io_error(state), task_run_name="ingest-{case}", cache_policy=NONE)
def ingest_task(case: str, params: Params) -> str:
    from r2n2.data.sources import ingest

    paths = CasePaths(case)
    df = ingest(case, params.case(case), paths.raw)
    return f"{len(df)} rows -> {paths.raw}"


@task(task_run_name="validate-{case}", cache_policy=NONE)
def validate_task(case: str, params: Params) -> str:
    from r2n2.data.validate import validate
    from r2n2.errors import ValidationFailed

    paths = CasePaths(case)
    try:
        summary = validate(case, params.case(case), paths.raw, paths.validated, paths.reports)
    except ValidationFailed as exc:
        publish_validation(case, exc.result)
        raise
    publish_validation(case, summary)
    return f"{summary['expectations']} expectations passed"


@task(task_run_name="window-{case}", cache_policy=NONE)
def window_task(case: str, params: Params) -> str:
    from r2n2.data.window import window

    paths = CasePaths(case)
    window(case, params.case(case), paths.validated, paths.windows)
    return str(paths.windows)


def _logger():
    from prefect import get_run_logger

    log = get_run_logger()
    return log.info


@task(task_run_name="train-{case}", cache_policy=NONE)
def train_task(case: str, params: Params) -> float:
    from r2n2.stages import train_stage

    return train_stage(case, params.case(case), log=_logger()).best_metric


@task(task_run_name="finetune-{case}", cache_policy=NONE)
def finetune_task(case: str, params: Params) -> dict:
    from r2n2.stages import finetune_stage

    return finetune_stage(case, params.case(case), log=_logger())


@task(task_run_name="evaluate-{case}", cache_policy=NONE)
def evaluate_task(case: str, params: Params) -> dict:
    from r2n2.stages import evaluate_stage

    metrics = evaluate_stage(case, params.case(case), log=_logger())
    publish_report(case, CasePaths(case))
    return metrics


TASKS = {"ingest": ingest_task, "validate": validate_task, "window": window_task, "train": train_task,
         "finetune": finetune_task, "evaluate": evaluate_task}


# -- flows -------------------------------------------------------------------------------------------
@flow(name="stage", flow_run_name="{stage}-{case}", persist_result=False)
def stage_flow(stage: str, case: str, params_path: str = "params.yaml", overrides: list[str] | None = None):
    """One stage of one case as its own flow run (what `r2n2 <stage> <case>` shows in the UI)."""
    return TASKS[stage](case, _params(params_path, overrides))


@flow(name="pipeline", flow_run_name="pipeline-{case}", persist_result=False)
def pipeline_flow(case: str = "all", params_path: str = "params.yaml", overrides: list[str] | None = None,
                  stages: list[str] | None = None) -> dict:
    """ingest -> validate -> window -> train -> finetune -> evaluate for one case or both."""
    params = _params(params_path, overrides)
    cases = list(params.cases) if case == "all" else [case]
    results = {}
    for c in cases:
        for stage in stages or STAGES:
            if stage == "finetune":
                from r2n2.cases import CaseData

                if not CaseData(c, params.case(c), CasePaths(c).windows).has_target():
                    continue  # a single-series user file has no transfer target
            results[f"{c}.{stage}"] = TASKS[stage](c, params)
    return results
