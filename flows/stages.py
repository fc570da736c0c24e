"""Prefect wrappers generated from the stage table (``r2n2.stages.STAGES``) and the artifacts a user reads in the
UI (stable keys per case). No math here.

- The pipeline flow (`make run`, `r2n2 pipeline <case|all>`): one task per stage and case, in the table's order,
  each asking DVC to reproduce that one stage (``flows.dvcrun``), so DVC decides what is up to date, records
  dvc.lock and caches, and the UI shows each stage's log, its state ("up to date" or how long it ran) and the
  artifacts of those that ran.
- One flow per stage (`r2n2 <stage> <case> --prefect`): the pure stage function with `--set` overrides, outside
  DVC (a one-off run; `dvc status` then says what it changed)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, State

from r2n2.config import Params
from r2n2.errors import ConfigError, ValidationFailed
from r2n2.paths import CasePaths
from r2n2.registry import get_case, load_params, run_stage
from r2n2.stages import STAGE_NAMES
from .dvcgen import check_or_write
from .dvcrun import StageOutcome, check_project, reproduce_stage, stale_stages
from .failures import expected_failures, run_flow_cli
from .naming import case_run_name, fmt4
from .ui import embedded_plot



def _params(params_path: str, overrides: list[str] | None) -> Params:
    return load_params(Path(params_path), overrides or [])


# -- artifacts ---------------------------------------------------------------------------------------
# The columns validation derives to check what no single raw column says (r2n2/data/validate.py), as a reader
# knows them: the raw column and what was computed from it.
DERIVED_COLUMNS = {"_days_since_prev": "date: days since the entity's previous row", "_prev_date": "date",
                   "_entity_rows": "rows of each entity", "_zero_return_share": "close: share of unchanged days",
                   "_log_return": "close: daily log return", "_text_length": "text: length in characters",
                   "_label_share": "label: share of the rows"}


def publish_validation(case: str, paths: CasePaths) -> None:
    f = paths.reports / "validation.json"
    if not f.is_file():
        return
    summary = json.loads(f.read_text())
    rows = [{"check": r.get("says") or r["expectation"],
             "column": DERIVED_COLUMNS.get(r.get("column") or "", r.get("column") or "(the table)"),
             "success": r["success"],
             "unexpected": r.get("unexpected_count"),
             "examples": "; ".join(str(x)[:80] for x in (r.get("examples") or [])[:3])}
            for r in summary["results"]]
    create_table_artifact(rows, key=f"{case}-validation",
                          description=f"{case}: {summary['expectations'] - summary['failed']}/"
                                      f"{summary['expectations']} expectations passed on {summary['rows']} rows")


def _test_set(period: dict | None, fallback: str) -> str:
    if not period:
        return fallback
    return f"{period.get('entity', 'test')} test {period.get('start', '')}..{period.get('end', '')}".strip(". ")


def _vs_model(metrics: dict, name: str) -> dict:
    """The model against baseline ``name`` by the report's first test of that pair: verdict, p (adjusted where the
    report adjusts), difference and its 95 % interval, and the test; empty for the model's own rows."""
    c = next((c for c in metrics.get("comparisons", []) if c.get("a") == "model" and c.get("b") == name), None)
    if c is None:
        return {}
    lo, hi = c.get("ci_low"), c.get("ci_high")
    interval = f"[{fmt4(lo) if lo is not None else '-inf'}, {fmt4(hi) if hi is not None else 'inf'}]"
    return {"model vs this": c.get("verdict"), "p": c.get("p_adjusted", c.get("p_value")), "diff": c.get("diff"),
            "95 % interval": interval, "test": f"{c.get('test')} on {c.get('metric')}"}


def metrics_rows(metrics: dict, headline: tuple[str, ...] = ()) -> list[dict]:
    """One row per model: the model's verdict against that row with its p and interval, the case's headline
    columns, the difference and the test, the test set the row was scored on (entity and dates), then the other
    numbers; 4 significant digits."""
    main_set = _test_set(metrics.get("test_period"), "test")
    target_set = _test_set(metrics.get("target_period"), "transfer target test")
    rows = []
    for group, label in (("model", main_set), ("finetuned", target_set), ("scratch", target_set)):
        if group in metrics:
            rows.append({"model": group, "test set": label,
                         **{k: v for k, v in metrics[group].items() if isinstance(v, (int, float, type(None)))}})
    for group, label in (("baselines", main_set), ("target_baselines", target_set)):
        for name, m in metrics.get(group, {}).items():
            vs = _vs_model(metrics, name) if group == "baselines" else {}
            target = (metrics.get("target_period") or {}).get("entity") or "target"
            rows.append({"model": name if group == "baselines" else f"{name} ({target})", "test set": label, **vs,
                         **{k: v for k, v in m.items() if isinstance(v, (int, float, type(None))) and k not in vs}})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    # measured at 1600 px (headless Chromium): the verdict, its p and interval and the headline columns fit beside
    # the model's name; the wide test-set labels and the test's name come after them
    first = ["model", "model vs this", "p", "95 % interval", *headline, "diff", "test", "test set"]
    order = [k for k in first if k in keys]
    order += [k for k in keys if k not in order]
    return fmt4([{k: r.get(k) for k in order} for r in rows])


def publish_report(case: str, paths: CasePaths) -> None:
    metrics = json.loads((paths.reports / "metrics.json").read_text())

    create_table_artifact(metrics_rows(metrics, tuple(get_case(case).headline_metrics)), key=f"{case}-metrics",
                          description=f"{case}: model vs baselines (each row says its test set)")
    report = (paths.reports / "report.md").read_text()
    plots = sorted((paths.reports / "plots").glob("*.png"))
    images = "\n\n".join(f"![{p.stem}]({embedded_plot(p)})" for p in plots)  # this run's own pictures, inside
    create_markdown_artifact(report + "\n\n## Plots\n\n" + images, key=f"{case}-report",
                             description=f"{case}: evaluation report")


PUBLISH = {"validate": publish_validation, "evaluate": publish_report}


# -- tasks and flows ---------------------------------------------------------------------------------
@task(task_run_name="{stage}-{case}", cache_policy=NONE)
@expected_failures
def stage_task(stage: str, case: str, params: Params) -> str:
    log = get_run_logger()
    try:
        msg = run_stage(stage, case, params.case(case), log=log.info)
    finally:
        if stage in PUBLISH:  # validation results are published on failure too
            PUBLISH[stage](case, CasePaths(case))
    log.info(msg.splitlines()[0])
    return msg


@flow(name="stage", flow_run_name=case_run_name(flow_param="stage"), persist_result=False)
@expected_failures
def stage_flow(stage: str, case: str, params_path: str = "params.yaml", overrides: list[str] | None = None) -> str:
    """One stage of one case as its own flow run (what `r2n2 <stage> <case>` shows in the UI)."""
    return stage_task(stage, case, _params(params_path, overrides))


@task(task_run_name="{stage}-{case}", cache_policy=NONE)
@expected_failures
def dvc_stage_task(stage: str, case: str, up_to_date: bool = False) -> State:
    """DVC reproduces ``<stage>-<case>`` (``flows.dvcrun``); the task's state message says whether it ran or was
    up to date, and a stage that ran publishes its artifacts (validation's also when it failed). ``up_to_date``:
    the flow's one `dvc status` pass found the stage unchanged and nothing upstream has rerun since, so DVC is not
    asked again."""
    log = get_run_logger()
    try:
        outcome = (StageOutcome(f"{stage}-{case}", False, 0.0) if up_to_date
                   else reproduce_stage(f"{stage}-{case}", log.info))
    except ValidationFailed:
        if stage in PUBLISH:
            PUBLISH[stage](case, CasePaths(case))
        raise
    log.info(outcome.message)
    if outcome.ran and stage in PUBLISH:
        PUBLISH[stage](case, CasePaths(case))
    return Completed(message=outcome.message, data=outcome.message)


@flow(name="pipeline", flow_run_name=case_run_name(), persist_result=False)
@expected_failures
def pipeline_flow(case: str = "all", params_path: str = "params.yaml") -> dict:
    """Every stage of one case (or of every case in params), in the stage table's order, each reproduced by DVC
    (`dvc repro --single-item <stage>-<case>`): DVC decides what is up to date and records dvc.lock."""
    check_project()
    params = _params(params_path, None)
    if case != "all":
        params.case(case)  # a paragraph naming the cases params define
    cases = list(params.cases) if case == "all" else [case]
    _ensure_dvc_yaml(params, get_run_logger())
    stale = stale_stages()  # one `dvc status` pass instead of one per stage
    out, reran = {}, False
    for c in cases:
        for s in STAGE_NAMES:
            # once a stage has rerun, DVC judges every later one itself (its inputs may have changed)
            out[f"{c}.{s}"] = dvc_stage_task(s, c, up_to_date=not reran and f"{s}-{c}" not in stale)
            reran = reran or "reproduced by DVC" in str(out[f"{c}.{s}"])
    return out


def _ensure_dvc_yaml(params: Params, log) -> None:
    """dvc.yaml as the stage table generates it for these params (an instance added to params.yaml gets its
    stages); rewritten, with a log line, when it differs."""
    try:
        check_or_write(params, check=True)
    except ConfigError:
        log.info(check_or_write(params, check=False) + " (it differed from the stage table for params.yaml)")


def run_stage_flow(stage: str, case: str, params_path: str, overrides: list[str] | None) -> str:
    return run_flow_cli(stage_flow, stage, case, params_path, overrides)


def run_pipeline(case: str, params_path: str) -> dict:
    return run_flow_cli(pipeline_flow, case, params_path)
