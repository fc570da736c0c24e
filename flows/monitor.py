"""Monitoring flow: check each case's deployed model on data after its cut-off (thresholds calibrated on its
training history), publish the signals as artifacts, and retrain only the case that alarmed. It writes only
monitor.json, in the case's operations workspace (data/ops/<case>/reports/<case>/)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from r2n2.ops.workspace import has_model
from r2n2.registry import get_case, load_params
from .failures import expected_failures, hold_retrain_lock, run_flow_cli
from .naming import case_run_name, fmt4
from .retrain import retrain_flow



@task(cache_policy=NONE, task_run_name="monitor-{case}")
@expected_failures
def monitor_task(case: str, params_path: str, overrides: list[str] | None, retrain: bool = False) -> dict:
    """Check one case; ``retrain``: the flow retrains the case if it alarms (the verdict says what happens next)."""
    from r2n2.ops.monitoring import monitor_case  # torch, in the task's process only

    log = get_run_logger()
    result = monitor_case(get_case(case), load_params(params_path, overrides).case(case), log=log.info,
                          retrain=retrain)

    def reference(s: dict) -> str:  # short: the table's last column must fit a 1600 px page
        r = s.get("reference") or {}
        draws = f"{r['windows']} windows" if r.get("windows") else f"{r['draws']} simulations" \
            if r.get("draws") else ""
        period = str(r.get("period", "")).removesuffix(" period").removesuffix(" history")
        return f"{period} {r.get('start')}..{r.get('end')}, {draws}" if r.get("start") else ""

    rows = [{"signal": name, "alarm": s.get("alarm"), "test": s.get("test"), "statistic": s.get("statistic"),
             "threshold": s.get("threshold"), "calibrated p": s.get("p_value"), "n": s.get("n"),
             "calibrated on": reference(s)} for name, s in result["signals"].items()]
    w = result["window"]
    create_table_artifact(fmt4(rows), key=f"{case}-monitor",
                          description=f"{case}: {result['scored']} on {w['n']} post-cut-off rows {w['start']} .. "
                                      f"{w['end']} (cut-off {result['cutoff']}); family false-alarm rate "
                                      f"{result['family_rate']}; next: {result['next']}")
    head, *more = result["lines"]
    body = "\n".join(f"- {line.strip()}" for line in more)
    create_markdown_artifact(f"# Monitor {case}\n\nScored: {result['scored']}, on rows after its cut-off "
                             f"{result['cutoff']}.\n\n**{head}**\n\n{body}\n", key=f"{case}-monitor-verdict",
                             description=f"{case}: the monitor's verdict on {result['scored']}")
    (log.warning if result["alarm"] else log.info)("\n".join(result["lines"]))
    return result


@flow(name="monitor", flow_run_name=case_run_name(), persist_result=False)
@expected_failures
def monitor_flow(case: str = "all", params_path: str = "params.yaml", overrides: list[str] | None = None,
                 trigger_retrain: bool = True) -> dict:
    """Monitor one case, or every case of params.serve.cases that has a trained model (case='all')."""
    params = load_params(params_path, overrides)
    log = get_run_logger()
    cases = params.serve.cases if case == "all" else [case]
    results = {}
    for c in cases:
        if not has_model(c):  # a champion, else a trained model (the operations workspace's or the research one)
            log.info(f"{c}: no trained model yet; skipped")
            continue
        results[c] = monitor_task(c, params_path, overrides, trigger_retrain)
    alarmed = [c for c, r in results.items() if r["alarm"] and params.case(c).monitor.retrain_on_alarm]
    if alarmed and trigger_retrain:
        from prefect.runtime import deployment

        if deployment.id:  # running as the served deployment: hand retraining to the retrain deployment
            from prefect.deployments import run_deployment

            run_deployment("retrain/r2n2-retrain", parameters={"cases": alarmed}, timeout=0)
            log.info(f"triggered the retrain deployment for {', '.join(alarmed)}")
        else:
            retrain_flow(alarmed, params_path, overrides)
        for c in alarmed:
            results[c]["retrain_triggered"] = True
    return results


def run_monitor(case: str, params_path: str, overrides: list[str] | None, *, trigger_retrain: bool) -> dict:
    return run_flow_cli(monitor_flow, case, params_path, overrides, trigger_retrain)


__all__ = ["monitor_flow", "run_monitor", "Path", "hold_retrain_lock"]
