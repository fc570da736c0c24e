"""The headline numbers DVC shows (``dvc metrics show``): one small file per report, the same keys in every case,
so the table fits a terminal. The whole report stays in ``metrics.json`` and ``report.md``. DVC sorts the columns by key, so the keys read in
that order: metric, model, model_sd, p, seeds, test, verdict, versus, versus_score."""

from __future__ import annotations


def headline_numbers(metrics: dict, *, metric: str, main: str | None) -> dict:
    """The model's ``metric`` (its mean and sd over seeds in a report of several) beside the case's main baseline's,
    and the verdict of the report's first test of the model against that baseline (on the first seed's model, with
    its p-value: the family-adjusted one where the report has it)."""
    model = metrics.get("model", {})
    out = {"metric": metric, "model": model.get(metric)}
    seeds = metrics.get("seeds", {}).get("model", {}).get(metric)
    if seeds and seeds.get("n", 1) > 1:  # a 5-seed report: the model's mean and sd over its seeds
        out |= {"model": seeds["mean"], "model_sd": seeds["sd"], "seeds": seeds["n"]}
    if main is None:
        return out
    base = metrics.get("baselines", {}).get(main, {})
    out |= {"versus": main, "versus_score": base.get(metric) if isinstance(base, dict) else None}
    c = next((c for c in metrics.get("comparisons", []) if c.get("a") == "model" and c.get("b") == main), None)
    if c is not None:
        out |= {"verdict": c.get("verdict"), "p": c.get("p_adjusted", c.get("p_value")), "test": c.get("test")}
    return out
