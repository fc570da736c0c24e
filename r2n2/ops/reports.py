"""The replay reports, one writer per kind, and the pieces they share: ``timeline.parquet``, ``summary.json``
(with a one-line ``headline``), ``replay.md`` and ``live_error.png`` under the report folder. The replays
(``r2n2.ops.replay.SeriesReplay``, ``r2n2.ops.textreplay.TextReplay``, ``r2n2.ops.panelreplay.PanelReplay``)
call their writer from ``write_report``; a writer reads the replay object it is handed (its timeline, retrains,
decisions and config) and never runs a step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..cases.classify import compare_classifiers
from ..errors import DataError
from ..evaluate.distribution import adaptive_conformal
from ..evaluate.engine import comparison_table
from ..evaluate.metrics import classification_metrics, daily_rank_ic
from ..evaluate.plots import _figure, date_axis, save_figure
from ..evaluate.report import fmt, md_table
from ..evaluate.stats import diebold_mariano, rank_ic_difference, verdict
from ..io import write_json_atomic, write_parquet_atomic, write_text_atomic
from .champion import slice_power

__all__ = ["write_replay_report", "write_text_replay_report", "write_panel_replay_report", "write_summary",
           "report_counts", "plot_live_error", "BREAK_HORIZON"]

TEXT_ROLL = 3     # batches in the text plot's rolling error rate
PANEL_ROLL = 63   # dates in the panel plot's rolling mean rank IC (a quarter)


BREAK_HORIZON = 126  # trading days (half a year): a later alarm answers something else, not the break


def _gate_power(rp) -> dict | None:
    """The gate's power on planted challengers built from the final champion's forecasts on the last decision's
    window (``r2n2.ops.champion.slice_power``, as `r2n2 retrain` states it): the sentence the report states."""
    windows = [e["window"] for e in rp.events if e.get("window")]
    if not windows:
        return None
    w = windows[-1]
    known = rp.table[(rp.table["date"] >= pd.Timestamp(w["start"])) & (rp.table["date"] <= pd.Timestamp(w["end"]))]
    scores = {"actual": known["target"].to_numpy(), "benchmark": rp.bench.reindex(known["date"]).to_numpy(),
              "kind": "forecast", "n_classes": None}
    out = slice_power(scores, rp.champion.preds.reindex(known["date"]).to_numpy(), rp.cfg.promotion,
                      seed=rp.cfg.train.seed)
    return None if out is None else {"window": w, "sentence": out["sentence"], "worse": out["worse"],
                                     "equal": out["equal"]}


def plot_live_error(x, errors: dict[str, np.ndarray], path: Path, *, alarms, promotions, title: str, ylabel: str,
                    xlabel: str = "") -> Path:
    """Rolling live error of each line over the replay (the first line, the deployed champion, drawn thicker);
    monitor alarms as red verticals, promotions as ticks along the bottom edge. The y axis fits the lines (it is
    not pulled to 0) and the legend sits below the axes, never over a line."""
    fig, ax = _figure(11, 5)
    colors = ["C1", "C0", "C2"]  # champion, never retrained, always retrain; the naive line grey
    for i, (name, err) in enumerate(errors.items()):
        ax.plot(x, err, lw=1.6 if i == 0 else 0.9, label=name, color=colors[i] if i < len(colors) else "0.4",
                zorder=3 if i == 0 else 2)  # the deployed champion on top: it often equals another line
    for k, a in enumerate(alarms):
        ax.axvline(a, color="red", lw=0.6, alpha=0.5, label="monitor alarm" if k == 0 else None)
    bottom = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for k, p in enumerate(promotions):
        ax.plot([p], [0.0], marker="|", color="C1", ms=10, transform=bottom, clip_on=False,
                label="promotion" if k == 0 else None, linestyle="none")
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    date_axis(ax, x)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if not xlabel else -0.18), ncol=6, frameon=False)
    return save_figure(fig, path)


def _live_coverage(rp, tl: pd.DataFrame) -> dict | None:
    """The deployed 90 % intervals' coverage over the live days: raw, and adapted as the coverage chart adapts
    them (None without a distribution head)."""
    keep = tl[["q_lo", "q_hi", "actual"]].notna().all(axis=1).to_numpy()
    if not keep.any() or rp.coverage_calib is None or rp.cfg.window.horizon != 1:
        return None
    q, y = tl.loc[keep, ["q_lo", "q_hi"]].to_numpy(float), tl.loc[keep, "actual"].to_numpy(float)
    adj, _ = adaptive_conformal(q, y, (0.05, 0.95), *rp.coverage_calib)
    return {"raw": float(np.mean((y >= q[:, 0]) & (y <= q[:, 1]))),
            "adaptive": float(np.mean((y >= adj[:, 0]) & (y <= adj[:, 1]))), "days": int(keep.sum())}


def write_summary(rp, summary: dict, out_dir: Path) -> None:
    """summary.json: what the replay decided and measured, the same bytes whatever ran it (any number of
    workers); timing.json: its run times and the workers."""
    write_json_atomic({k: v for k, v in summary.items() if k != "seconds"}, Path(out_dir) / "summary.json")
    write_json_atomic({"seconds": summary["seconds"], "workers": int(rp.workers), "dask_address": rp.dask_address,
                       "threads": rp._threads()}, Path(out_dir) / "timing.json")


def report_counts(summary: dict) -> list[str]:
    """The replay report's lines on what the loop did and what it cost (Markdown)."""
    s = summary["seconds"]
    return [f"Checks: {summary['checks']}, alarms: {summary['alarms']}, retrains: {summary['n_retrains']}, "
            f"promotions: {summary['promotions']}.", "",
            f"Run time: {s['total']} s (training {s['train']} s, monitoring {s['monitor']} s, predicting "
            f"{s['predict']} s).", ""]


def write_replay_report(rp, out_dir: Path, *, seconds: float) -> dict:
    """timeline.parquet, replay.md, live_error.png and summary.json under ``out_dir``."""
    tl = rp.timeline()
    write_parquet_atomic(tl, out_dir / "timeline.parquet")
    y = tl["actual"].to_numpy()
    lines = {"deployed champion": "prediction", "never retrained": "never_retrained",
             "always retrain (no test)": "always_retrained", rp.case.naive_name: "random_walk"}
    rmse = {k: float(np.sqrt(np.mean((tl[c].to_numpy() - y) ** 2))) for k, c in lines.items()}
    comps = [diebold_mariano(y, tl["prediction"].to_numpy(), tl[c].to_numpy(), a="deployed champion", b=k,
                             horizon=rp.cfg.window.horizon) for k, c in lines.items() if c != "prediction"]
    for c in comps:
        c["verdict"] = verdict(c, higher_is_better=False)
    cal = list(tl["date"])
    events = rp.cfg.monitor.events  # the case's known breaks (params: <case>.monitor.events)
    delays = _break_delays(tl, events)
    ratio = {k: v / rmse[rp.case.naive_name] for k, v in rmse.items()}
    years = tl.groupby(tl["date"].dt.year)["alarm"].agg(["sum", "size"])
    calm = [y for y in years.index if not any(pd.Timestamp(b).year == y for b in events.values())]
    power = _gate_power(rp)
    summary = {"case": rp.case_name, "entity": rp.entity, "start": str(cal[0].date()), "end": str(cal[-1].date()),
               "days": len(tl), "retrain_every": rp.retrain_every, "retrain_policy": rp.policy_name,
               "monitor_every": rp.monitor_every,
               "warm_start": rp.warm_start, "checks": int(len(tl) // rp.monitor_every),
               "alarms": int(tl["alarm"].sum()), "n_retrains": int(tl["retrained"].sum()),
               "promotions": int(tl["promoted"].sum()), "rmse": rmse, "rmse_ratio_to_random_walk": ratio,
               "comparisons": comps, "alarm_delays": delays, "cusum_alarms": int(tl["cusum_alarm"].sum()),
               "coverage_alarms": int(tl["coverage_alarm"].sum()), "coverage": _live_coverage(rp, tl),
               "alarms_per_calm_year": (float(years.loc[calm, "sum"].sum() / len(calm)) if calm else None),
               "calm_years": [int(y) for y in calm], "gate_power": power,
               "refusals": int(tl["retrained"].sum() - tl["promoted"].sum()),
               "retrains": rp.retrains[1:],  # the first model is trained before the period: not a retrain
               "first_model": rp.retrains[0], "look_ahead_rows": int((tl["model_train_end"] >= tl["date"]).sum()),
               "seconds": {"total": round(seconds, 1), **{k: round(v, 1) for k, v in rp.seconds.items()}},
               "headline": f"RMSE ratio to the random walk: champion {ratio['deployed champion']:.4f}, never "
                           f"retrained {ratio['never retrained']:.4f}"}
    write_summary(rp, summary, out_dir)

    err = {k: (pd.Series((tl[c].to_numpy() - y) ** 2).rolling(63, min_periods=20).mean() ** 0.5).to_numpy()
           for k, c in lines.items()}
    plot_live_error(tl["date"], err, out_dir / "live_error.png", alarms=tl.loc[tl["alarm"], "date"],
                    promotions=tl.loc[tl["promoted"], "date"], ylabel="RMSE of the log return",
                    title=f"{rp.entity}: live error of next-day forecasts, rolling 63 days (red: monitor alarms; "
                          "ticks: promotions)")
    write_text_atomic(_replay_markdown(rp, summary, calm), out_dir / "replay.md")
    return summary


def _break_delays(tl: pd.DataFrame, events: dict[str, str]) -> dict:
    """Per known break (``events``: name -> ISO date) inside the timeline: its first alarm within BREAK_HORIZON
    trading days and the delay in trading days, or None."""
    cal = np.asarray(tl["date"])
    delays = {}
    for name, d in events.items():
        b = pd.Timestamp(d)
        if not (cal[0] <= b <= cal[-1]):
            continue
        days = np.searchsorted(cal, tl["date"].to_numpy()) - np.searchsorted(cal, b)
        after = tl[(days >= 0) & (days <= BREAK_HORIZON) & tl["alarm"].to_numpy()]
        delays[name] = (None if after.empty else
                        {"first_alarm": str(after["date"].iloc[0].date()),
                         "trading_days": int(np.searchsorted(cal, after["date"].iloc[0]) - np.searchsorted(cal, b))})
    return delays


def _replay_markdown(rp, summary: dict, calm: list) -> str:
    rmse, ratio, delays, power = (summary["rmse"], summary["rmse_ratio_to_random_walk"], summary["alarm_delays"],
                                  summary["gate_power"])
    comps = summary["comparisons"]
    table = md_table({k: {"RMSE": v, "ratio to random walk": ratio[k]} for k, v in rmse.items()},
                     ["RMSE", "ratio to random walk"], first="line")
    dl = [f"- {k}: " + (f"first alarm {v['first_alarm']}, {v['trading_days']} trading days after"
                         if v else f"no alarm within {BREAK_HORIZON} trading days") for k, v in delays.items()] \
        or [f"- none of the known breaks ({rp.case_name}.monitor.events: {len(rp.cfg.monitor.events)}) lies in this "
            "period"]
    per_year = (f"{summary['alarms_per_calm_year']:.2f} alarms per calm year (the years without a known break: "
                f"{', '.join(map(str, calm))})" if calm else "no calm year in this period")
    md = "\n".join([
        f"# Replay: {rp.case_name} ({rp.entity}), {summary['start']} to {summary['end']}", "",
        f"{summary['days']} trading days; {rp.retrain_rule('days')} "
        f"({'warm-started from the champion' if rp.warm_start else 'from scratch'}), the monitor every "
        f"{rp.monitor_every} days. Every prediction comes from a model trained only on data realised before its "
        f"date ({summary['look_ahead_rows']} rows violate this).", "", *report_counts(summary), table, "",
        "Diebold–Mariano, the deployed champion minus each line (mean squared-error difference):", "",
        comparison_table(comps, compact=True), "",
        f"Monitor: {summary['alarms']} alarms in {summary['checks']} checks ({summary['cusum_alarms']} by the CUSUM "
        f"charts of the deployed process); {per_year}.", "",
        *([f"Coverage (distribution head): the deployed 90 % intervals, adapted online (adaptive conformal), covered "
           f"{summary['coverage']['adaptive']:.3f} of the live days, unadapted {summary['coverage']['raw']:.3f}; "
           f"{summary['coverage_alarms']} coverage alarms (Bernoulli CUSUM of the 5 % VaR exceedances).", ""]
          if summary["coverage"] else []),
        "Alarm delay after the known breaks:", "", *dl, "",
        f"Gate: {summary['refusals']} of {summary['n_retrains']} challengers refused. "
        + (power["sentence"] if power else "Its power was not estimated (no decision window)."), "",
        "![live error](live_error.png)", ""])
    return md


def write_text_replay_report(rp, out_dir: Path, *, seconds: float) -> dict:
    """The text replay's outputs: accuracy and macro-F1 per line, paired comparisons of the champion with each
    other line (paired bootstrap of macro-F1 and McNemar; "tie" when the 95 % interval covers 0)."""
    tl = rp.timeline()
    if tl.empty:
        raise DataError("the replay has not run a batch yet; nothing to report.")
    write_parquet_atomic(tl, out_dir / "timeline.parquet")
    ids = {l: i for i, l in enumerate(rp.case.labels)}
    k = len(rp.case.labels)
    y = tl["actual"].map(ids).to_numpy()
    lines = {"deployed champion": "prediction", "never retrained": "never_retrained",
             "always retrain (no test)": "always_retrained", "majority class": "majority"}
    preds = {name: tl[c].map(ids).to_numpy() for name, c in lines.items()}
    scores = {name: {m: classification_metrics(y, p, list(rp.case.labels))[m] for m in ("accuracy", "macro_f1")}
              for name, p in preds.items()}
    comps = [c for name in list(lines)[1:]
             for c in compare_classifiers(y, preds["deployed champion"], preds[name], "deployed champion", name, rp.cfg, k)]
    by_batch = tl.groupby("batch")[["alarm", "promoted"]].any()
    summary = {"case": rp.case_name, "time": "date" if rp.dates else "arrival",
               "start": rp._json(tl["date"].iloc[0]), "end": rp._json(tl["date"].iloc[-1]),
               "texts": len(tl), "batches": int(tl["batch"].nunique()), "batch": rp.batch,
               "retrain_every": rp.retrain_every, "retrain_policy": rp.policy_name,
               "monitor_every": rp.monitor_every, "warm_start": rp.warm_start,
               **rp.counts, "scores": scores, "comparisons": comps, "events": rp.events,
               "look_ahead_rows": int((tl["model_train_end"] >= tl["date"]).sum()),
               "seconds": {"total": round(seconds, 1), **{n: round(v, 1) for n, v in rp.seconds.items()}},
               "headline": "macro-F1: " + ", ".join(f"{n} {scores[n]['macro_f1']:.4f}" for n in
                                                    ("deployed champion", "never retrained", "majority class"))}
    summary["n_retrains"] = summary.pop("retrains")
    summary["retrains"] = rp.retrains[1:]  # the first model is trained before the period: not a retrain
    summary["first_model"] = rp.retrains[0]
    write_summary(rp, summary, out_dir)

    wrong = pd.DataFrame({name: p != y for name, p in preds.items()}).groupby(tl["batch"].to_numpy()).mean()
    plot_live_error(wrong.index.to_numpy(), {n: wrong[n].rolling(TEXT_ROLL, min_periods=1).mean().to_numpy()
                                             for n in lines}, out_dir / "live_error.png",
                    alarms=by_batch.index[by_batch["alarm"]], promotions=by_batch.index[by_batch["promoted"]],
                    xlabel="arrival batch", ylabel="error rate",
                    title=f"{rp.case_name}: live error rate per arrival batch of {rp.batch} texts, rolling {TEXT_ROLL} "
                          "batches (red: monitor alarms; ticks: promotions)")
    unit = "ISO times" if rp.dates else "arrival indices; the built-in corpus's order is simulated"
    ev = ["| batch | trigger | window | p | promoted |", "|---|---|---|---|---|"]
    span = lambda w: "none" if w is None else f"{w['start']} .. {w['end']}"  # noqa: E731
    ev += [f"| {e['step']} | {e['trigger']} | {span(e['window'])} | {fmt(e['p_value'])} | {e['promoted']} |"
           for e in rp.events]
    md = "\n".join([
        f"# Replay: {rp.case_name}, {summary['start']} to {summary['end']} ({unit})", "",
        f"{summary['texts']} texts in {summary['batches']} arrival batches of {rp.batch}; "
        f"{rp.retrain_rule('batches')} ({'warm-started from the champion' if rp.warm_start else 'from scratch, each with its own tokenizer'}), "
        f"the monitor every {rp.monitor_every} batches. Every prediction comes from a model trained only on texts "
        f"that arrived before it ({summary['look_ahead_rows']} rows violate this).", "",
        *report_counts(summary),
        md_table(scores, ["accuracy", "macro_f1"], first="line"), "",
        "Paired comparisons, the deployed champion (a) vs each line (b); diff = a minus b, verdict \"tie\" when the "
        "95 % interval covers 0:", "", comparison_table(comps, compact=True), "",
        "Retrains (the promotion window: the challenger's holdout texts after both models' cut-offs):", "",
        *ev, "", "![live error](live_error.png)", ""])
    write_text_atomic(md, out_dir / "replay.md")
    return summary


# the panel timeline's score column of each line, by its name in the report (the naive line is named by the case)
PANEL_LINES = {"deployed champion": "prediction", "never retrained": "never_retrained",
               "always retrain (no test)": "always_retrained"}


def _line_ics(rp, tl: pd.DataFrame) -> dict[str, pd.Series]:
    """Each line's daily rank IC over the replay (the naive line under the case's name)."""
    act = tl.pivot(index="date", columns="entity", values="actual")
    cols = {**PANEL_LINES, rp.case.replay_naive_name: "naive"}
    return {name: daily_rank_ic(tl.pivot(index="date", columns="entity", values=c), act) for name, c in cols.items()}


def write_panel_replay_report(rp, out_dir: Path, *, seconds: float) -> dict:
    """The panel replay's outputs: each line's mean daily rank IC, the champion minus each other line
    (Newey–West over dates; "tie" when the 95 % interval covers 0), the loop's counts and retrains."""
    tl = rp.timeline()
    if tl.empty:
        raise DataError("the replay has not run a date yet; nothing to report.")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(tl, out_dir / "timeline.parquet")
    ics = _line_ics(rp, tl)
    h, lags = rp.cfg.window.horizon, getattr(rp.cfg.evaluate, "nw_lags", None)
    comps = [rank_ic_difference(ics["deployed champion"], ic, a="deployed champion", b=name, horizon=h, lags=lags)
             for name, ic in ics.items() if name != "deployed champion"]
    for c in comps:
        c["verdict"] = verdict(c, higher_is_better=True)
    mean = {name: float(ic.mean()) for name, ic in ics.items()}
    by_date = tl.groupby("date")[["alarm", "retrained", "promoted", "cusum_alarm"]].any()
    summary = {"case": rp.case_name, "start": rp._show(by_date.index[0]), "end": rp._show(by_date.index[-1]),
               "days": int(len(by_date)), "stocks": len(rp.entities), "retrain_every": rp.retrain_every,
               "retrain_policy": rp.policy_name,
               "monitor_every": rp.monitor_every, "warm_start": rp.warm_start, "cusum_arl": rp.cusum_arl,
               **rp.counts, "refusals": int(by_date["retrained"].sum() - by_date["promoted"].sum()),
               "alarm_dates": [rp._show(d) for d in by_date.index[by_date["alarm"]]],
               "mean_rank_ic": mean, "comparisons": comps, "events": rp.events,
               "look_ahead_rows": int((tl["model_train_end"] >= tl["date"]).sum()),
               "seconds": {"total": round(seconds, 1), **{n: round(v, 1) for n, v in rp.seconds.items()}},
               "headline": "mean daily rank IC: " + ", ".join(f"{n} {v:.4f}" for n, v in mean.items())}
    summary["n_retrains"] = summary.pop("retrains")
    summary["retrains"] = rp.retrains[1:]  # the first model is trained before the period: not a retrain
    summary["first_model"] = rp.retrains[0]
    write_summary(rp, summary, out_dir)
    roll = {n: ic.rolling(PANEL_ROLL, min_periods=20).mean().to_numpy() for n, ic in ics.items()}
    plot_live_error(by_date.index, roll, out_dir / "live_error.png", alarms=by_date.index[by_date["alarm"]],
                    promotions=by_date.index[by_date["promoted"]], ylabel="mean daily rank IC (higher is better)",
                    title=f"{rp.case_name}: live daily cross-sectional rank IC of each line, rolling {PANEL_ROLL} dates "
                          "(red: monitor alarms; ticks: promotions)")
    write_text_atomic(_panel_markdown(rp, summary), out_dir / "replay.md")
    return summary


def _panel_markdown(rp, summary: dict) -> str:
    ev = ["| date | trigger | window | p | promoted |", "|---|---|---|---|---|"]
    span = lambda w: "none" if w is None else f"{w['start']} .. {w['end']}"  # noqa: E731
    ev += [f"| {e['date']} | {e['trigger']} | {span(e['window'])} | {fmt(e['p_value'])} | {e['promoted']} |"
           for e in rp.events]
    alarms = ", ".join(summary["alarm_dates"]) or "none"
    return "\n".join([
        f"# Replay: {rp.case_name} ({summary['stocks']} stocks), {summary['start']} to {summary['end']}", "",
        f"{summary['days']} trading dates; {rp.retrain_rule('dates')} "
        f"({'warm-started from the champion' if rp.warm_start else 'from scratch'}), the monitor every "
        f"{rp.monitor_every} dates. Every score comes from a model trained only on data realised before its date "
        f"({summary['look_ahead_rows']} rows violate this).", "", *report_counts(summary),
        md_table({n: {"mean daily rank IC": v} for n, v in summary["mean_rank_ic"].items()}, ["mean daily rank IC"],
                 first="line"), "",
        "The deployed champion minus each line, mean daily rank IC (Newey–West over dates; \"tie\" when the 95 % "
        "interval covers 0):", "", comparison_table(summary["comparisons"], compact=True), "",
        f"Monitor: a CUSUM of the deployed scores' daily rank loss, calibrated on each champion's validation and "
        f"holdout dates (in-control ARL {rp.cusum_arl:.0f} dates); {summary['alarms']} alarms in "
        f"{summary['checks']} checks ({alarms}).", "",
        "Retrains (the promotion window: the challenger's holdout dates after both models' cut-offs):", "", *ev, "",
        "![live rank IC](live_error.png)", ""])
