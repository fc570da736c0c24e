"""The distribution half of the series evaluation, when ``model.distribution`` is quantile or student_t: the
model's quantiles, split-conformally calibrated on the validation period (never test), scored on the test
period (CRPS, pinball per level, coverage and width, PIT histogram, VaR backtests) beside two risk-desk
baselines of the same returns fitted on training + validation days only: GARCH(1,1)-t and historical
simulation (250 days); and a Diebold–Mariano test of the model's CRPS against each.

Beside the split-conformal forecast, the same intervals under adaptive conformal inference (Gibbs & Candès
2021), updated online through the test period from the days before each one; the deployed monitor runs it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import predict_batches
from ..evaluate.distribution import (empirical_quantiles, ewma_normal_quantiles, garch_family_quantiles,
                                     historical_quantiles, pit_histogram, student_t_quantiles)
from ..evaluate.engine import comparison_table, evaluate_heads, head_table

__all__ = ["HS_WINDOW", "distribution_baselines", "distribution_report", "evaluate_distribution", "forecast_quantiles",
           "model_outputs"]

HS_WINDOW = 250  # trading days of historical simulation (about a year, the Basel convention)


def model_outputs(model, data, role: str, split: str, *, distribution: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """(n, P) model outputs on the model's scaled target (P = 1 for the point forecast; with ``distribution``
    the head's quantiles or Student-t parameters) and the n rows they forecast, this role's entity only."""
    entities = bool(model.config.entities)
    batches = data.batches(role, split, batch_size=512, entities=entities)
    out = predict_batches(model, batches, distribution=distribution)  # (n, 1[, P]) or (n, E, 1[, P])
    rows = data.rows(role, split)
    if entities:  # aligned windows: keep this role's entity, matched by date
        w = batches.windows
        col = w.entities.index(data.key(role))
        sel = out[:, col, 0].reshape(len(out), -1)  # (n, P)
        by_date = pd.DataFrame(sel, index=pd.DatetimeIndex(w.dates[w.ends]))
        rows = rows[rows["date"].isin(by_date.index)].reset_index(drop=True)
        out = by_date.loc[rows["date"]].to_numpy()
    return out.reshape(len(rows), -1), rows


def forecast_quantiles(model, data, role: str, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(actual, (n, K) quantiles at ``model.config.quantiles``, rows) on the evaluation scale, from a model with a
    distribution head (a Student-t head's quantiles are its distribution's)."""
    out, rows = model_outputs(model, data, role, split, distribution=True)
    cfg = model.config
    q = student_t_quantiles(out, cfg.quantiles) if cfg.distribution == "student_t" else out  # scaled target
    ts = data.meta.target_scaler
    q = q * ts["scale"] + ts["mean"]  # a positive affine map keeps every quantile a quantile
    actual = rows["target"].to_numpy(float)
    if data.meta.target == "close":
        base = rows["base_log_close"].to_numpy(float)
        q, actual = q - base[:, None], actual - base
    return actual, q, rows


BASELINE_NAMES = {"garch_t": "GARCH(1,1)-t", "gjr_garch_t": "GJR-GARCH(1,1)-t", "ewma_normal": "EWMA-normal (λ 0.94)",
                  "empirical": "empirical quantiles (returns before the test cut)",
                  "historical_simulation": f"historical simulation ({HS_WINDOW} days)"}


def distribution_baselines(data, role: str, rows: pd.DataFrame, levels) -> dict[str, np.ndarray]:
    """Quantile forecasts of each row's next-day return from what is known at its date, the risk desk's
    baselines: GARCH(1,1)-t and GJR-GARCH(1,1)-t (arch, refitted every 21 origins on the returns up to the
    block's first origin: an expanding window, never a day they forecast), EWMA-normal (RiskMetrics λ 0.94),
    the empirical quantiles of the returns before the test cut, and historical simulation. Only for a next-day
    return target (else {})."""
    meta = data.meta
    if meta.target != "return" or meta.horizon != 1:
        return {}
    t = data.table[data.table["entity"] == data.key(role)].sort_values("date").reset_index(drop=True)
    r = t["ret_close"].to_numpy(float)  # r[j]: the return realised on row j's date; row j's target is r[j + 1]
    ends = pd.Index(t["date"]).get_indexer(rows["date"])
    fit_end = int((t["date"] < pd.Timestamp(meta.cuts["test_start"])).sum())  # never a test-period return
    out = {"garch_t": garch_family_quantiles(r, ends, levels), "gjr_garch_t": garch_family_quantiles(r, ends, levels, o=1),
           "ewma_normal": ewma_normal_quantiles(r, ends, levels), "empirical": empirical_quantiles(r, fit_end, ends, levels)}
    if int(ends.min()) + 1 >= HS_WINDOW:
        out["historical_simulation"] = historical_quantiles(r, ends, levels, window=HS_WINDOW)
    return out


def evaluate_distribution(data, model, y: np.ndarray, rows: pd.DataFrame, *, horizon: int,
                          role: str = "pretrain") -> tuple[dict, dict, list[dict], dict]:
    """(the model's scores, {baseline: scores}, CRPS and VaR-pinball comparisons, plot frames) on the test rows
    ``rows`` (whose targets are ``y``): the engine's :func:`r2n2.evaluate.engine.evaluate_heads` with the VaR
    backtests and, for next-day targets, adaptive conformal. The conformal offsets come from the validation rows
    alone."""
    levels = list(model.config.quantiles)
    y_val, q_val, val_rows = forecast_quantiles(model, data, role, "val")
    _, q_raw, test_rows = forecast_quantiles(model, data, role, "test")
    if not np.array_equal(test_rows["date"].to_numpy(), rows["date"].to_numpy()):
        raise ValueError("the distribution forecasts are not on the point forecasts' test rows.")
    out = evaluate_heads(y, levels, {"model": (q_val, y_val, q_raw)}, distribution_baselines(data, role, rows, levels),
                         horizon=horizon, online=True, tails=(0.01, 0.05), var=True)
    block = {**out["block"], "distribution": model.config.distribution}
    block["conformal"] |= {"start": str(val_rows["date"].min().date()), "end": str(val_rows["date"].max().date())}
    q = out["quantiles"]
    frames = {"pit": pd.DataFrame([{"forecast": name, **b} for name, qq in q.items() for b in pit_histogram(y, qq, levels)]),
              "fan": pd.DataFrame({"date": rows["date"].to_numpy(), "actual": y,
                                   **{f"q{t:g}": q["model"][:, j] for j, t in enumerate(levels)}})}
    return block, out["scores"], out["comparisons"], frames


def distribution_report(m: dict) -> list[str]:
    """The report's distribution section (model beside its baselines), from metrics.json's blocks."""
    d = m["model"]
    rows = {f"model ({d['distribution']}, split conformal)": d, "model (adaptive conformal)": d.get("aci"),
            "model (before conformal)": d["uncalibrated"],
            **{BASELINE_NAMES.get(k, k): v for k, v in m.get("distribution_baselines", {}).items()}}
    lines = ["## Forecast distribution", "",
             (f"Quantiles at {', '.join(f'{t:g}' for t in d['levels'])}; the model's central intervals widened by a "
             f"split-conformal offset fitted on the validation period only ({d['conformal']['start']} to "
             f"{d['conformal']['end']}, {d['conformal']['n']} days). CRPS: scoringrules' quantile CRPS (2/K × the "
             "pinball losses summed over these levels, the same levels for every row). VaR backtests of the 1 % and "
             "5 % quantiles: Kupiec's proportion of failures, Christoffersen's independence and conditional "
             "coverage (p-values; small = rejected). Adaptive conformal: the same intervals widened online "
             "(Gibbs & Candès, gamma 0.005), each test day's width from the days before it. Baselines, each from "
             "the returns known at the forecast's date: GARCH(1,1)-t and GJR-GARCH(1,1)-t (arch, refitted every 21 "
             "days on an expanding window), EWMA-normal (RiskMetrics), the empirical quantiles of the returns "
             f"before the test cut, historical simulation ({HS_WINDOW} days)."), "", *head_table(rows)]
    comps = [c for c in m.get("comparisons", []) if c["a"] == "model"
             and (c["metric"] == "crps" or c["metric"].startswith("pinball_"))]
    if comps:
        lines += ["", "The model (split conformal) minus each baseline, Diebold–Mariano (HAC, two-sided; negative "
                  "favours the model) on CRPS and on the pinball (tick) loss of each VaR quantile:", "",
                  comparison_table(comps, names=BASELINE_NAMES, note=False)]
    return lines + ["", "Plots: `plots/fan.png` (the test period's 50 % and 90 % intervals, realised returns, VaR "
                    "exceedances marked; `plots/fan.csv`), `plots/pit.png` (PIT histogram on the quantile grid; "
                    "`plots/pit.csv`).", ""]
