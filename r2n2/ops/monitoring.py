"""Monitoring the deployed model on data after its training cut-off, with thresholds calibrated on its own
training history (``r2n2.ops.drift``). The signals are data, declared by each case kind
(``UseCase.monitor_frame`` -> a frame and its ``MonitorSignals``); this module only checks them:

- series (stocks): the input features, the forecast, and the squared error as a ratio to the random walk's; with a
  distribution head also the coverage signal (``coverage_check``: VaR exceedances of the adaptive intervals);
- text (sentiment): text length (words) and the share of words unseen in the training period, the predicted
  classes, and the error rate on texts whose labels have arrived;
- cross-section (panel): the market's mean raw volatility and 20-day return, the dispersion of the scores, and
  the squared error on the cross-sectional target vs zero's.

References come from before the cut-off only: inputs from the training period; errors (and the predicted classes
of a classifier) from the validation period, out of sample for the model, so a calm deployment does not look like
a jump. A forecast's distribution is a function of its inputs, so the price cases take its reference from the
whole pre-cut-off history (``prediction_history``): a validation period of three calm years (2013-2015) made the
Q4-2018 sell-off's forecasts an alarm that the inputs, judged against 2000-2012, did not raise. Measured on the
calm synthetic replay (6 seeds, 474 checks): 2.3 % alarms with the history reference, 2.1 % with validation only. The checked
window is the newest ``monitor.window`` rows whose prediction date is at or after the cut-off (``test_start``
of the model's own window metadata): rows the model never trained on or was selected on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..cases.base import MonitorSignals, UseCase, window_meta_of
from ..checkpoint import load_checkpoint
from ..errors import DataError
from ..io import write_json_atomic
from ..paths import CasePaths
from .drift import fit_monitor
from .workspace import trained

__all__ = ["deployed_model", "monitor_case", "check_frame", "check_signals", "fit_frame_monitor", "check_window",
           "periods", "signal_config"]


def deployed_model(paths: CasePaths):
    """(model, checkpoint metadata, window meta, which): the champion, else the latest trained model (the
    operations workspace's, else the research one: ``workspace.trained``)."""
    from .champion import sync_champion

    path, which = paths.champion_dir / "model.pt", "champion"
    version = sync_champion(paths)  # finishes a promotion a kill interrupted; a corrupt history is one paragraph
    if version:
        which = f"champion {version}"
    if not path.is_file():
        path, which = (trained(paths.case, paths.root).model_dir / "model.pt",
                       "latest trained model (no champion promoted in this workspace; a replay's promotions are "
                       "simulated and deploy nothing)")
    model, ck = load_checkpoint(path)
    return model, ck, window_meta_of(ck), which


def _ts(v):
    return pd.Timestamp(v)


def periods(frame: pd.DataFrame, mmeta, time: str = "date"):
    """(training rows, validation rows, post-cut-off rows) of a frame, by the model's own cut dates."""
    conv = _ts if mmeta.time == "date" else int
    t = frame[time]
    val_start, test_start = conv(mmeta.cuts["val_start"]), conv(mmeta.cuts["test_start"])
    return frame[t < val_start], frame[(t >= val_start) & (t < test_start)], frame[t >= test_start]


def fit_frame_monitor(frame: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                      kinds: dict | None = None, n_classes: dict | None = None, bench: bool = True,
                      seed: int = 0, val_inputs: tuple[str, ...] = (), n_null: int = 300,
                      prediction_history: bool = False):
    """The calibrated monitor of a model, from its own pre-cut-off rows: inputs from the training period;
    signals the training period defines (e.g. words unseen in it) and the model's own outputs and errors from
    the validation period, out of sample like the post-cut-off window. Returns (monitor, window size)."""
    train, val, _ = periods(frame, mmeta, time)
    refs = {f: (val if f in val_inputs else train)[f].to_numpy() for f in inputs}
    refs["prediction"] = (pd.concat([train, val]) if prediction_history else val)["pred"].to_numpy()
    window = min(mcfg.window, max(mcfg.min_samples, len(val) // 4))
    mon = fit_monitor(refs, window=window, kinds=kinds, n_classes=n_classes, loss=val["loss"].to_numpy(),
                      benchmark_loss=val["bench_loss"].to_numpy() if bench else None,
                      family_rate=mcfg.family_rate, min_samples=mcfg.min_samples, seed=seed, n_null=n_null)
    return mon, window


def check_window(mon, post: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                 bench: bool = True, input_rows: pd.DataFrame | None = None) -> dict:
    """Check the newest post-cut-off rows with a fitted monitor; a JSON-ready result with a one-line verdict.
    ``input_rows``: where the input signals are read, when not ``post`` (inputs need no model, so any rows
    outside their training-period reference will do: the replay checks the newest ones at every check)."""
    rows = post if input_rows is None else input_rows
    result = mon.check({**{f: rows[f].to_numpy() for f in inputs}, "prediction": post["pred"].to_numpy()},
                       loss=post["loss"].to_numpy(), benchmark_loss=post["bench_loss"].to_numpy() if bench else None)
    if len(post) == 0:
        span = {"start": None, "end": None, "n": 0}
    elif mmeta.time == "date":
        span = {"start": str(post[time].min())[:10], "end": str(post[time].max())[:10], "n": int(len(post))}
    else:
        span = {"start": int(post[time].min()), "end": int(post[time].max()), "n": int(len(post))}
    return {"alarm": result["alarm"], "reasons": result["reasons"], "family_rate": result["family_rate"],
            "per_signal_quantile": result["quantile"], "window": span, "cutoff": mmeta.cuts["test_start"],
            "signals": result["signals"],
            "verdict": ("ALARM: " + "; ".join(result["reasons"])) if result["alarm"] else
                       (f"no drift ({len(post)} post-cut-off rows checked)" if len(post) >= mcfg.min_samples else
                        f"no verdict: {len(post)} rows after the cut-off {mmeta.cuts['test_start']}, fewer than "
                        f"monitor.min_samples {mcfg.min_samples}")}


def check_frame(frame: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                kinds: dict | None = None, n_classes: dict | None = None, bench: bool = True,
                seed: int = 0, val_inputs: tuple[str, ...] = (), prediction_history: bool = False) -> dict:
    """Fit the calibrated monitor on the frame's pre-cut-off rows; check its newest post-cut-off window."""
    try:
        mon, window = fit_frame_monitor(frame, mmeta, mcfg, inputs=inputs, time=time, kinds=kinds,
                                        n_classes=n_classes, bench=bench, seed=seed, val_inputs=val_inputs,
                                        prediction_history=prediction_history)
    except DataError as exc:  # too little history to calibrate: say so, never alarm on a guess
        return {"alarm": False, "reasons": [], "family_rate": mcfg.family_rate, "per_signal_quantile": None,
                "window": {"start": None, "end": None, "n": 0}, "cutoff": mmeta.cuts["test_start"], "signals": {},
                "verdict": f"no verdict: the model's history is too short to calibrate the monitor ({exc})"}
    post = periods(frame, mmeta, time)[2].tail(window)
    return check_window(mon, post, mmeta, mcfg, inputs=inputs, time=time, bench=bench)


def signal_config(mcfg, signals: MonitorSignals):
    """The monitor section with ``monitor.window`` in rows (a unit of the window counts ``window_unit`` rows)."""
    return dataclasses.replace(mcfg, window=mcfg.window * signals.window_unit) if signals.window_unit != 1 else mcfg


def check_signals(frame: pd.DataFrame, mmeta, mcfg, signals: MonitorSignals, *, seed: int = 0) -> dict:
    """``check_frame`` with a case kind's declared signals; with a benchmark, also the sequential chart."""
    out = check_frame(frame, mmeta, signal_config(mcfg, signals), inputs=list(signals.inputs), time=signals.time,
                      kinds=dict(signals.kinds) or None, n_classes=dict(signals.n_classes) or None,
                      bench=signals.bench, seed=seed, val_inputs=tuple(signals.val_inputs),
                      prediction_history=signals.prediction_history)
    charts = {"cusum": cusum_check(frame, mmeta, time=signals.time, seed=seed)} if signals.bench else {}
    if any(c.startswith("q0.") for c in frame.columns):  # a distribution head: is its VaR still a VaR?
        charts["coverage"] = coverage_check(frame, mmeta, time=signals.time)
    for name, chart in charts.items():
        out["signals"][name] = chart
        if chart["alarm"]:
            out["alarm"] = True
            out["reasons"] = [*out["reasons"], chart["reason"]]
            out["verdict"] = "ALARM: " + "; ".join(out["reasons"])
    return out


def coverage_check(frame: pd.DataFrame, mmeta, *, time: str = "date", var_level: float = 0.05,
                   arl0: float = 1000.0, gamma: float = 0.005) -> dict:
    """The coverage signal of a model with a distribution head. Its central intervals are adapted online by
    adaptive conformal inference (Gibbs & Candès 2021), started from the validation rows' conformity scores and
    run over every row since the cut-off (what a deployment that adapts its intervals serves); the lower end of
    the (1 - 2 var_level) interval is the ``var_level`` Value-at-Risk, and a Bernoulli CUSUM of its exceedances
    (nominal ``var_level`` against double that, in-control ARL ``arl0`` days) alarms when even the adapted
    quantile stops being one. The split-conformal (fixed) interval's coverage is reported beside it."""
    from ..evaluate.distribution import adaptive_conformal, apply_offsets, conformal_offsets
    from .sequential import bernoulli_cusum, bernoulli_path

    cols = sorted((c for c in frame.columns if c.startswith("q0.")), key=lambda c: float(c[1:]))
    levels = [float(c[1:]) for c in cols]
    _, val, post = periods(frame, mmeta, time)
    none = {"alarm": False, "statistic": None, "threshold": None, "n": int(len(post)), "reason": None,
            "test": "bernoulli cusum of VaR exceedances"}
    if getattr(mmeta, "horizon", 1) != 1:  # an h-day target is known h - 1 days after the next forecast
        return {**none, "note": f"no chart: horizon {mmeta.horizon} (the online adaptation needs next-day targets)"}
    lower = [i for i, t in enumerate(levels) if abs(t - var_level) < 1e-9]
    if not lower or not any(abs(t - (1 - var_level)) < 1e-9 for t in levels):
        return {**none, "note": f"no chart: the head has no {var_level:g} and {1 - var_level:g} quantiles"}
    if len(val) < 20:
        return {**none, "note": f"no chart: {len(val)} validation rows to calibrate the intervals (needs 20)"}
    y_val, q_val = val["target"].to_numpy(float), val[cols].to_numpy(float)
    y, q = post["target"].to_numpy(float), post[cols].to_numpy(float)
    if not len(y):
        return {**none, "note": "no chart: no rows after the cut-off yet"}
    q_aci, state = adaptive_conformal(q, y, levels, q_val, y_val, gamma=gamma)
    q_fixed = apply_offsets(q, conformal_offsets(q_val, y_val, levels), levels)
    hits = y < q_aci[:, lower[0]]
    chart = bernoulli_cusum(var_level, min(2 * var_level, 0.5), arl0=arl0)
    stat = float(bernoulli_path(hits, chart)[-1])
    alarm = stat > chart["h"]
    cover = f"{1 - 2 * var_level:g}"
    j_lo, j_hi = lower[0], levels.index(min(levels, key=lambda t: abs(t - (1 - var_level))))
    return {**none, "alarm": bool(alarm), "statistic": stat, "threshold": chart["h"], "arl0": arl0,
            "var_level": var_level, "exceedances": int(hits.sum()), "rate": float(hits.mean()),
            "rate_split_conformal": float(np.mean(y < q_fixed[:, lower[0]])),
            f"coverage_{cover}_adaptive": float(np.mean((y >= q_aci[:, j_lo]) & (y <= q_aci[:, j_hi]))),
            f"coverage_{cover}_split_conformal": float(np.mean((y >= q_fixed[:, j_lo]) & (y <= q_fixed[:, j_hi]))),
            "aci_alpha_now": state[cover]["alpha_end"], "gamma": gamma,
            "reason": (f"coverage: {int(hits.sum())} of {len(y)} days below the adaptive {var_level:.0%} VaR "
                       f"(rate {hits.mean():.3f}); Bernoulli CUSUM {stat:.2f} > {chart['h']:.2f} (in-control ARL "
                       f"{arl0:.0f} days)") if alarm else None}


def cusum_check(frame: pd.DataFrame, mmeta, *, time: str = "date", seed: int = 0) -> dict:
    """The CUSUM (``r2n2.ops.sequential``) of the model's loss minus the benchmark's, calibrated on the validation
    rows and run over every row since the cut-off; it alarms while its statistic is above its threshold now (a
    crossing in the past would have alarmed at that check). Rolling cuts (deployment): calibrated on the
    validation rows and the holdout (both out of sample for the weights; the reference then ends where the model's
    data ends, as the replay's charts do) and run over the rows after it."""
    from .sequential import fit_cusum

    _, val, post = periods(frame, mmeta, time)
    if mmeta.cut_rule == "rolling":
        end = (_ts if mmeta.time == "date" else int)(mmeta.cuts["end"])
        val, post = pd.concat([val, post[post[time] <= end]]), post[post[time] > end]
    try:
        chart = fit_cusum((val["loss"] - val["bench_loss"]).to_numpy(), n_boot=200, seed=seed)
    except DataError as exc:
        return {"alarm": False, "statistic": None, "threshold": None, "n": int(len(post)), "reason": None,
                "note": f"no chart: {exc}"}
    res = chart.run((post["loss"] - post["bench_loss"]).to_numpy())
    alarm = bool(res.n and res.last > chart.h)
    return {"alarm": alarm, "statistic": res.last, "threshold": chart.h, "n": res.n, "test": "cusum",
            "arl0": chart.arl0, "max": res.to_dict()["max"],
            "reason": (f"cusum: the loss differential vs the benchmark {res.last:.2f} > {chart.h:.2f} (in-control "
                       f"ARL {chart.arl0:.0f} steps)") if alarm else None}


def monitor_case(case: UseCase, cfg, root: str | Path = ".", *, log=None) -> dict:
    """Check the deployed model of a case on its post-cut-off data (the newest windows: the operations
    workspace's once a retrain wrote them, else the research ones); writes
    data/ops/<case>/reports/<case>/monitor.json, nothing in the research workspace."""
    paths = CasePaths(case.name, Path(root)).operations()
    model, ck, mmeta, which = deployed_model(paths)
    data = case.load(cfg, trained(case.name, root).windows)
    frame, signals = case.monitor_frame(cfg, data, model, ck)
    out = {"case": case.name, "scored": which, **check_signals(frame, mmeta, cfg.monitor, signals)}
    write_json_atomic(out, paths.reports / "monitor.json")
    return out
