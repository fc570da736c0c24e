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
from .champion import sync_champion
from ..checkpoint import load_checkpoint
from .drift import fit_monitor
from ..errors import DataError
from ..evaluate.distribution import adaptive_conformal, apply_offsets, conformal_offsets
from ..io import write_json_atomic
from ..paths import CasePaths
from .sequential import bernoulli_cusum, bernoulli_path, fit_cusum
from .workspace import trained

__all__ = ["deployed_model", "monitor_case", "check_frame", "check_signals", "explain", "fit_frame_monitor",
           "check_window", "next_step", "periods", "signal_config"]


def deployed_model(paths: CasePaths):
    """(model, checkpoint metadata, window meta, which): the champion, else the latest trained model (the
    operations workspace's, else the research one: ``workspace.trained``)."""
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
    train, val, post = periods(frame, mmeta, time)
    post = post.tail(window)
    out = check_window(mon, post, mmeta, mcfg, inputs=inputs, time=time, bench=bench)
    # what each threshold was calibrated on (the rows of the reference and how many null windows), for the verdict
    refs = {f: ("validation period", val) if f in val_inputs else ("training period", train) for f in inputs}
    refs["prediction"] = ("pre-cut-off history", pd.concat([train, val])) if prediction_history else \
        ("validation period", val)
    for name, s in out["signals"].items():
        period, rows = refs.get(name, ("validation period", val))
        det = mon.detectors.get(name)
        n_ref = len(det.reference) if det is not None else len(mon.errors.loss) if mon.errors is not None else 0
        nulls = (len(det.null(s["n"])) if det is not None else len(mon.errors.null(s["n"]))) \
            if s.get("threshold") is not None else 0
        s["reference"] = {"period": period, **_span(rows, mmeta, time), "n": int(n_ref), "windows": int(nulls),
                          "window": int(s["n"])}
    return out


def _span(rows: pd.DataFrame, mmeta, time: str = "date") -> dict:
    """{"start", "end", "n"} of some rows: ISO dates, or arrival indices (texts without a time column)."""
    if not len(rows):
        return {"start": None, "end": None, "n": 0}
    show = (lambda v: str(v)[:10]) if mmeta.time == "date" else int
    return {"start": show(rows[time].min()), "end": show(rows[time].max()), "n": int(len(rows))}


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
    cols = sorted((c for c in frame.columns if c.startswith("q0.")), key=lambda c: float(c[1:]))
    levels = [float(c[1:]) for c in cols]
    _, val, post = periods(frame, mmeta, time)
    none = {"alarm": False, "statistic": None, "threshold": None, "n": int(len(post)), "reason": None,
            "test": "bernoulli cusum of VaR exceedances", "run": _span(post, mmeta, time),
            "reference": {"period": "validation period", **_span(val, mmeta, time)}}
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
            "reference": {**none["reference"], "draws": chart["n_boot"], "steps": int(3 * arl0)},
            "reason": (f"coverage: {int(hits.sum())} of {len(y)} days below the adaptive {var_level:.0%} VaR "
                       f"(rate {hits.mean():.3f}); Bernoulli CUSUM {stat:.2f} > {chart['h']:.2f} (in-control ARL "
                       f"{arl0:.0f} days)") if alarm else None}


def cusum_check(frame: pd.DataFrame, mmeta, *, time: str = "date", seed: int = 0) -> dict:
    """The CUSUM (``r2n2.ops.sequential``) of the model's loss minus the benchmark's, calibrated on the validation
    rows and run over every row since the cut-off; it alarms while its statistic is above its threshold now (a
    crossing in the past would have alarmed at that check). Rolling cuts (deployment): calibrated on the
    validation rows and the holdout (both out of sample for the weights; the reference then ends where the model's
    data ends, as the replay's charts do) and run over the rows after it."""
    _, val, post = periods(frame, mmeta, time)
    period = "validation period"
    if mmeta.cut_rule == "rolling":
        end = (_ts if mmeta.time == "date" else int)(mmeta.cuts["end"])
        val, post = pd.concat([val, post[post[time] <= end]]), post[post[time] > end]
        period = "validation period and holdout"
    reference = {"period": period, **_span(val, mmeta, time)}
    try:
        chart = fit_cusum((val["loss"] - val["bench_loss"]).to_numpy(), n_boot=200, seed=seed)
    except DataError as exc:
        return {"alarm": False, "statistic": None, "threshold": None, "n": int(len(post)), "reason": None,
                "reference": reference, "run": _span(post, mmeta, time), "note": f"no chart: {exc}"}
    res = chart.run((post["loss"] - post["bench_loss"]).to_numpy())
    alarm = bool(res.n and res.last > chart.h)
    return {"alarm": alarm, "statistic": res.last, "threshold": chart.h, "n": res.n, "test": "cusum",
            "arl0": chart.arl0, "max": res.to_dict()["max"],
            "reference": {**reference, "draws": chart.n_boot, "steps": chart.horizon, "block": chart.block},
            "run": _span(post, mmeta, time),
            "reason": (f"cusum: the loss differential vs the benchmark {res.last:.2f} > {chart.h:.2f} (in-control "
                       f"ARL {chart.arl0:.0f} steps)") if alarm else None}


def _range(span: dict) -> str:
    return f"{span['start']}..{span['end']}"


def _what(name: str, s: dict, *, benchmark: str) -> str:
    """One signal's reading in a few words: its statistic against its threshold, with the calibrated p-value."""
    p = f" (p {s['p_value']:.2g})" if s.get("p_value") is not None else ""
    stat, thr = s.get("statistic"), s.get("threshold")
    if name == "cusum":
        return f"cusum of the loss minus the {benchmark}'s since {s['run']['start']} {stat:.2f}, threshold {thr:.2f}"
    if name == "coverage":
        return f"coverage: {s.get('exceedances')} of {s['n']} below the 5% VaR, CUSUM {stat:.2f}, threshold {thr:.2f}"
    if name == "error" and s.get("test") == "loss ratio to benchmark":
        return f"the model's squared error {stat:.3f} x the {benchmark}'s, threshold {thr:.3f}{p}"
    if name == "error":
        return f"error rate {stat:.3f} on labelled texts, threshold {thr:.3f}{p}"
    test = "chi-square" if s.get("test") == "chi2" else s.get("test", "").upper()
    return f"{name} {test} {stat:.3f} vs its reference, threshold {thr:.3f}{p}"


_PERIOD = {"training period": "training", "validation period": "validation", "pre-cut-off history": "history",
           "validation period and holdout": "validation + holdout"}


def _calibration(name: str, s: dict, *, unit: str, quantile: float) -> str:
    """How one signal's threshold was calibrated: on which rows, from how many windows or simulated charts."""
    ref = s.get("reference") or {}
    rows = (f"{_PERIOD.get(ref.get('period'), ref.get('period'))} {_range(ref)}" if ref.get("start") is not None
            else "its reference")
    if name == "cusum":
        return f"cusum: ARL {s.get('arl0', 1000):,.0f} {unit}, {ref.get('draws')} bootstrap charts of {rows}"
    if name == "coverage":
        return f"coverage: ARL {s.get('arl0', 1000):,.0f} {unit}, {ref.get('draws')} simulated streams"
    return f"{name}: {quantile:.1%} point over {ref.get('windows')} windows of {ref.get('window')} {unit} of {rows}"


def next_step(case_name: str, result: dict, *, retrain: bool, retrain_on_alarm: bool = True) -> str:
    """What follows a monitor check: a retrain of this case now, why not, or nothing."""
    if not result["alarm"]:
        return ("calm: nothing to do" if result["window"]["n"] and result.get("per_signal_quantile") is not None
                else "nothing to do until enough rows arrive after the cut-off")
    later = f"`r2n2 retrain {case_name}` retrains it"
    if not retrain_on_alarm:
        return f"no retrain: monitor.retrain_on_alarm is false; {later}"
    if not retrain:
        return f"no retrain: --no-retrain; {later}"
    return f"retraining {case_name} now (--no-retrain: report only)"


def explain(result: dict, *, case_name: str, path: str, next_step: str, benchmark: str = "benchmark",
            unit: str = "days") -> list[str]:
    """The verdict line and three short lines: the rows judged and the signal(s) against their thresholds; how
    those thresholds were calibrated (on which rows, from how many windows or simulated charts) and the
    false-alarm rate per check; where the full result is; what happens next. Printed by `r2n2 monitor`, logged,
    and published as the ``<case>-monitor-verdict`` artifact."""
    w, sig = result["window"], result["signals"]
    if result.get("per_signal_quantile") is None or not w["n"]:
        return [f"{case_name}: {result['verdict']}", f"  full result: {path}", f"  next: {next_step}"]
    scored = {k: v for k, v in sig.items() if v.get("threshold") is not None}
    windowed = sum(k not in ("cusum", "coverage") for k in sig)
    rows = f"{_range(w)} ({w['n']} {unit})"
    if result["alarm"]:  # the first signal that alarmed in words, any others by name, value and threshold
        shown = [k for k, v in scored.items() if v["alarm"]]
        rest = ", ".join(f"{k} {sig[k]['statistic']:.3g} > {sig[k]['threshold']:.3g}" for k in shown[1:])
        head = (f"{case_name}: ALARM on {rows}: {_what(shown[0], sig[shown[0]], benchmark=benchmark)}"
                + (f"; also {rest}" if rest else ""))
    else:
        pvals = {k: v["p_value"] for k, v in scored.items() if v.get("p_value") is not None}
        shown = [min(pvals, key=pvals.get)] if pvals else []
        head = (f"{case_name}: calm on {rows}: {len(sig)} checks under threshold"
                + (f"; closest: {_what(shown[0], sig[shown[0]], benchmark=benchmark)}" if shown else ""))
    q = result["per_signal_quantile"]
    calib = _calibration(shown[0], sig[shown[0]], unit=unit, quantile=q) if shown else ""
    rate = f"<= {result['family_rate']:.0%} false alarms per check ({windowed} signals together)"
    return [head, f"  calibrated: {calib}; {rate}" if calib else f"  calibrated: {rate}",
            f"  full result: {path}", f"  next: {next_step}"]


def monitor_case(case: UseCase, cfg, root: str | Path = ".", *, log=None, retrain: bool = False) -> dict:
    """Check the deployed model of a case on its post-cut-off data (the newest windows: the operations
    workspace's once a retrain wrote them, else the research ones); writes
    data/ops/<case>/reports/<case>/monitor.json, nothing in the research workspace. ``retrain``: the caller
    retrains the case if it alarms (and ``monitor.retrain_on_alarm`` allows), which the verdict says.
    The result's ``lines`` are the verdict and what it rests on (``explain``); ``verdict`` is their first."""
    paths = CasePaths(case.name, Path(root)).operations()
    model, ck, mmeta, which = deployed_model(paths)
    data = case.load(cfg, trained(case.name, root).windows)
    frame, signals = case.monitor_frame(cfg, data, model, ck)
    out = {"case": case.name, "scored": which, **check_signals(frame, mmeta, cfg.monitor, signals)}
    target = paths.reports / "monitor.json"
    out["next"] = next_step(case.name, out, retrain=retrain, retrain_on_alarm=cfg.monitor.retrain_on_alarm)
    out["lines"] = explain(out, case_name=case.name, path=paths.rel(target), next_step=out["next"],
                           benchmark=getattr(case, "naive_name", "benchmark"),
                           unit="days" if signals.time == "date" else "texts")
    out["verdict"] = out["lines"][0]
    write_json_atomic(out, target)
    return out
