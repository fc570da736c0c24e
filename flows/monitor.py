"""Monitoring flow: score the champion on the newest data, publish drift as an artifact, and trigger the
retrain deployment (or flow) when thresholds from params are exceeded."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from r2n2.config import load_params


@flow(name="monitor", persist_result=False)
def monitor_flow(case: str = "all", params_path: str = "params.yaml", trigger_retrain: bool = True) -> dict:
    """Monitor one case, or every case of params.serve.cases with case='all'."""
    params = load_params(params_path)
    if case == "all":
        return {c: monitor_one(c, params, trigger_retrain) for c in params.serve.cases}
    return monitor_one(case, params, trigger_retrain)


def monitor_one(case: str, params, trigger_retrain: bool) -> dict:
    from r2n2.monitor import monitor_case

    result = monitor_case(case, params.case(case))
    rows = [{"signal": k, "value": v} for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows += [{"signal": f"psi {f}", "value": v} for f, v in result.get("feature_psi", {}).items()]
    create_table_artifact(rows, key=f"{case}-monitor", description=f"{case}: champion on the newest data")
    verdict = ("drift: " + "; ".join(result["reasons"])) if result["drift"] else "no drift above thresholds"
    create_markdown_artifact(f"# Monitor {case}\n\nScored: {result['scored']}.\n\n**{verdict}**\n",
                             key=f"{case}-monitor-verdict")
    log = get_run_logger()
    log.info(verdict)
    if result["drift"] and trigger_retrain:
        from prefect.runtime import deployment

        if deployment.id:  # running as the served deployment: hand retraining to the retrain deployment
            from prefect.deployments import run_deployment

            run_deployment("retrain/r2n2-retrain", parameters={"cases": [case]}, timeout=0)
            log.info("triggered the retrain deployment")
        else:
            from .retrain import retrain_flow

            retrain_flow(cases=[case])
        result["retrain_triggered"] = True
    return result
