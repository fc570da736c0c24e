"""Replay: a simulated calendar over real history that proves the scheduled loop (monitor -> retrain -> promote).

Each trading day ``d`` of [start, end] (stocks): the data known at ``d``'s close is every row whose target was
realised by then. In that order, each day:

1. the deployed champion (trained on data up to an earlier day) forecasts the window ending at ``d``: the
   recorded prediction, truly out of sample (``model_train_end < date`` on every row);
2. every ``monitor_every`` days the calibrated monitor (``r2n2.ops.monitoring``) checks the champion's newest
   post-cut-off rows;
3. every ``retrain_every`` days, or right after an alarm, a challenger is trained on the data known at ``d``
   (the last ``val_days`` days are its validation period, used for early stopping), from scratch or warm-started
   from the champion's weights;
4. promotion (``r2n2.ops.promotion``): champion and challenger on the days after the champion's cut-off that the
   challenger only validated on; Diebold–Mariano, refused only if the challenger is significantly worse.

Beside the champion the timeline records the random walk, the first model never retrained, and "always
retrain" (every challenger deployed without a test), scored on the same days.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..cases.base import UseCase
from ..cases.series import SeriesData, SeriesMeta, series_frame
from ..data.sources import read_parquet
from ..data.window import FEATURE_NAMES, fit_scalers, series_table, window_splits
from ..errors import DataError
from ..models.core import build_model
from ..paths import CasePaths
from ..train import seed_everything
from .monitoring import check_window, fit_frame_monitor
from .promotion import decide_promotion

__all__ = ["ReplaySchedule", "SeriesReplay", "BREAKS", "write_replay_report", "period_ends", "plot_live_error", "report_counts"]

# Market breaks whose alarm delay the report states (first trading day of the month of the break).
BREAKS = {"Lehman, Sep 2008": "2008-09-15", "US downgrade, Aug 2011": "2011-08-01",
          "China devaluation, Aug 2015": "2015-08-11", "Volmageddon, Feb 2018": "2018-02-02"}
BREAK_HORIZON = 126  # trading days (half a year): a later alarm answers something else, not the break
_FAR = "2262-01-01"


@dataclass
class Deployed:
    model: object
    meta: SeriesMeta
    train_end: pd.Timestamp                 # last day whose realised target the model trained on
    preds: pd.Series                        # forecast per window-end date, over the whole history
    monitor: object = None                  # fitted lazily
    window: int = 0


@dataclass
class ReplaySchedule:
    """What every replay shares: its case, period, schedule (in the case's steps) and its record so far."""

    case: UseCase
    cfg: object
    root: Path
    start: str
    end: str
    retrain_every: int = 21
    monitor_every: int = 5
    warm_start: bool = False
    warm_epochs: int = 3                    # epochs of a warm-started retrain
    log: Callable[[str], None] = print
    rows: list = field(default_factory=list)
    events: list = field(default_factory=list)

    @property
    def case_name(self) -> str:
        return self.case.name


@dataclass
class SeriesReplay(ReplaySchedule):
    """The simulated calendar of one price case; ``run_until(date)`` advances it (one Prefect sub-run each)."""

    val_days: int = 250                     # validation period of each challenger (trading days)

    def __post_init__(self):
        if self.case.kind != "series":  # one series of trading days
            raise DataError(f"this replay covers series cases (trading days); {self.case_name} is a "
                            f"{self.case.kind or 'other'} case.")
        self.paths = CasePaths(self.case_name, Path(self.root))
        w = self.cfg.window
        df = read_parquet(self.paths.validated, f"validated {self.case_name} data")
        entity = w.pretrain_entity if w.pretrain_entity in set(df["entity"]) else str(df["entity"].iloc[0])
        df = df[df["entity"] == entity]
        far = {"start": "1900-01-01", "val_start": _FAR, "test_start": _FAR, "end": _FAR}
        self.table = series_table(df, lookback=w.lookback, horizon=w.horizon, target=w.target, cuts=far)
        self.entity = entity
        self.features = [c for c in FEATURE_NAMES.values() if c in self.table]
        dates = self.table["date"]
        self.calendar = list(dates[(dates >= pd.Timestamp(self.start)) & (dates <= pd.Timestamp(self.end))])
        if len(self.calendar) < 2 * self.retrain_every:
            raise DataError(f"the replay period {self.start} .. {self.end} holds {len(self.calendar)} trading days of "
                            f"{entity}; it needs at least {2 * self.retrain_every}.")
        self.step = 0
        self.since_retrain = 0
        self.seconds = {"train": 0.0, "monitor": 0.0, "predict": 0.0}
        first = self.calendar[0]
        before = dates[dates < first]
        if before.empty:
            raise DataError(f"the replay starts on the first day of the data ({first.date()}); start it later so a "
                            "first model can be trained on what came before.")
        self.log(f"replay {self.case_name} ({entity}) {first.date()} .. {self.calendar[-1].date()}: training the "
                 f"first model on data up to {before.iloc[-1].date()}")
        self.champion = self._train(before.iloc[-1], None)
        self.never = self.champion
        self.latest = self.champion

    # -- training -----------------------------------------------------------------------------------
    def _known(self, day: pd.Timestamp) -> pd.DataFrame:
        return self.table[self.table["target_date"] <= day].reset_index(drop=True)

    def _train(self, day: pd.Timestamp, warm_from: Deployed | None) -> Deployed:
        """A model trained on the data known at ``day``'s close (validation: its last ``val_days`` days)."""
        from ..stages import fit

        t0 = _time.perf_counter()
        known = self._known(day)
        w = self.cfg.window
        if len(known) < self.val_days + 3 * w.lookback:
            raise DataError(f"at {day.date()} only {len(known)} rows are known; a replay retrain needs more than "
                            f"{self.val_days + 3 * w.lookback}. Start the replay later.")
        val_start = known["date"].iloc[len(known) - self.val_days]
        cuts = {"start": str(known["date"].iloc[0].date()), "val_start": str(val_start.date()),
                "test_start": str((day + pd.Timedelta(days=1)).date()), "end": str(day.date())}
        first = pd.Series(known["date"].to_numpy()).shift(w.lookback - 1).to_numpy()
        cut_values = {k: np.datetime64(pd.Timestamp(v), "us").astype(known["date"].to_numpy().dtype)
                      for k, v in cuts.items()}
        known["split"] = window_splits(first, known["target_date"].to_numpy(), cut_values)
        known.loc[:w.lookback - 2, "split"] = ""
        scaler, target_scaler = fit_scalers(known, self.features, cuts["val_start"])
        meta = SeriesMeta(case=self.case_name, time="date", cuts=cuts, splits={}, lookback=w.lookback,
                          horizon=w.horizon, target=w.target, features=self.features, entities=[self.entity],
                          scaler=scaler, target_scaler=target_scaler, pretrain_entity=self.entity)
        data = SeriesData.in_memory(self.case, self.cfg, meta, known)
        seed_everything(self.cfg.train.seed)
        model = build_model(data.model_config())
        cfg = self.cfg
        if warm_from is not None:
            model.load_state_dict(warm_from.model.state_dict())
            cfg = replace(cfg, train=replace(cfg.train, epochs=min(self.warm_epochs, cfg.train.epochs)))
        fit(cfg, data, model, "pretrain", f"replay-{day.date()}", self.paths, seed=cfg.train.seed)
        self.seconds["train"] += _time.perf_counter() - t0
        t1 = _time.perf_counter()
        frame = series_frame(model, meta, self.table)
        self.seconds["predict"] += _time.perf_counter() - t1
        return Deployed(model=model, meta=meta, train_end=day, preds=frame.set_index("date")["pred"])

    # -- monitoring ---------------------------------------------------------------------------------
    def _monitor(self, day: pd.Timestamp) -> dict:
        t0 = _time.perf_counter()
        c = self.champion
        frame = series_frame(c.model, c.meta, self._known(day)) if c.monitor is None else None
        if c.monitor is None:
            c.monitor, c.window = fit_frame_monitor(frame, c.meta, self.cfg.monitor, inputs=self.features, n_null=150,
                                                         prediction_history=True)
        known = self._known(day)
        post = known[known["date"] > c.train_end].tail(c.window).copy()
        post["pred"] = c.preds.reindex(post["date"]).to_numpy()
        post["loss"] = (post["pred"] - post["target"]) ** 2
        post["bench_loss"] = post["target"] ** 2
        out = check_window(c.monitor, post, c.meta, self.cfg.monitor, inputs=self.features)
        self.seconds["monitor"] += _time.perf_counter() - t0
        return out

    # -- the calendar -------------------------------------------------------------------------------
    def run_until(self, until: str | pd.Timestamp | None = None) -> dict:
        """Advance day by day up to ``until`` (an ISO date, inclusive; default: the end). Returns this period's
        counts."""
        until = None if until is None else pd.Timestamp(until)
        counts = {"days": 0, "alarms": 0, "retrains": 0, "promotions": 0}
        while self.step < len(self.calendar) and (until is None or self.calendar[self.step] <= until):
            day = self.calendar[self.step]
            row = self.table.loc[self.table["date"] == day].iloc[0]
            c = self.champion
            rec = {"date": day, "actual": float(row["target"]), "prediction": float(c.preds.get(day, np.nan)),
                   "model_train_end": c.train_end, "never_retrained": float(self.never.preds.get(day, np.nan)),
                   "always_retrained": float(self.latest.preds.get(day, np.nan)), "random_walk": 0.0,
                   "alarm": False, "retrained": False, "promoted": False, "monitor_p_min": np.nan}
            self.step += 1
            self.since_retrain += 1
            counts["days"] += 1
            if self.step % self.monitor_every == 0:
                m = self._monitor(day)
                rec["alarm"] = m["alarm"]
                ps = [s.get("p_value") for s in m["signals"].values() if s.get("p_value") is not None]
                rec["monitor_p_min"] = min(ps) if ps else np.nan
                if m["alarm"]:
                    counts["alarms"] += 1
                    self.log(f"{day.date()}: {m['verdict']}")
            if self.since_retrain >= self.retrain_every or rec["alarm"]:
                rec["retrained"] = True
                counts["retrains"] += 1
                challenger = self._train(day, self.champion if self.warm_start else None)
                decision = self._decide(challenger, day)
                rec["promoted"] = decision["promoted"]
                counts["promotions"] += int(decision["promoted"])
                self.events.append({"date": str(day.date()), "trigger": "alarm" if rec["alarm"] else "schedule",
                                    **{k: decision[k] for k in ("promoted", "reason")},
                                    "window": decision["window"], "p_value": decision["test"]["p_value"]})
                self.latest = challenger
                if decision["promoted"]:
                    self.champion = challenger
                self.since_retrain = 0
            self.rows.append(rec)
        return counts

    def _decide(self, challenger: Deployed, day: pd.Timestamp) -> dict:
        """Champion vs challenger on the realised days after the champion's cut-off that the challenger only
        validated on (never trained on); neither is ever scored on a day after ``day``."""
        champ = self.champion
        known = self._known(day)
        val_start = pd.Timestamp(challenger.meta.cuts["val_start"])
        win = known[(known["date"] > champ.train_end) & (known["date"] >= val_start)]
        if win.empty:
            return {"promoted": False, "reason": "no fresh days to compare on; kept the champion.", "window": None,
                    "test": {"p_value": None}}
        window = {"start": str(win["date"].iloc[0].date()), "end": str(win["date"].iloc[-1].date())}
        return decide_promotion(actual=win["target"].to_numpy(), champion_pred=champ.preds.reindex(win["date"]).to_numpy(),
                                challenger_pred=challenger.preds.reindex(win["date"]).to_numpy(), kind="forecast",
                                window=window, horizon=self.cfg.window.horizon)

    def period_ends(self) -> list[str]:
        """The days (ISO) that close each scheduled retrain period (the replay's sub-runs)."""
        return [str(d.date()) for d in period_ends(self.calendar, self.retrain_every)]

    def timeline(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def write_report(self, out_dir: Path, *, seconds: float) -> dict:
        """timeline.parquet, replay.md, live_error.png and summary.json under ``out_dir``."""
        return write_replay_report(self, out_dir, seconds=seconds)


# -- pieces every replay shares (the stocks replay here, the text replay in r2n2.ops.textreplay) ---------------
def period_ends(steps: list, every: int) -> list:
    """The steps that close each scheduled retrain period of ``every`` steps, the last step always included."""
    ends = list(steps[every - 1::every])
    return ends if ends and ends[-1] == steps[-1] else [*ends, steps[-1]]


def plot_live_error(x, errors: dict[str, np.ndarray], path: Path, *, alarms, promotions, title: str, ylabel: str,
                    xlabel: str = "") -> Path:
    """Rolling live error of each line over the replay (the first line, the deployed champion, drawn thicker);
    monitor alarms as red verticals, promotions as ticks on the x axis."""
    from ..evaluate.plots import _figure, save_figure

    fig, ax = _figure(11, 5)
    colors = ["C1", "C0", "C2"]  # champion, never retrained, always retrain; the naive line grey
    for i, (name, err) in enumerate(errors.items()):
        ax.plot(x, err, lw=1.2 if i == 0 else 0.9, label=name, color=colors[i] if i < len(colors) else "0.4")
    for a in alarms:
        ax.axvline(a, color="red", lw=0.6, alpha=0.5)
    for p in promotions:
        ax.plot([p], [0], marker="|", color="C1", ms=8)
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def report_counts(summary: dict) -> list[str]:
    """The replay report's lines on what the loop did and what it cost (Markdown)."""
    s = summary["seconds"]
    return [f"Checks: {summary['checks']}, alarms: {summary['alarms']}, retrains: {summary['retrains']}, "
            f"promotions: {summary['promotions']}.", "",
            f"Run time: {s['total']} s (training {s['train']} s, monitoring {s['monitor']} s, predicting "
            f"{s['predict']} s).", ""]


def write_replay_report(rp: SeriesReplay, out_dir: Path, *, seconds: float) -> dict:
    """timeline.parquet, replay.md, live_error.png and summary.json under ``out_dir``."""
    from ..cases.forecast import comparison_table
    from ..evaluate.report import md_table
    from ..evaluate.stats import diebold_mariano, verdict
    from ..io import write_json_atomic, write_parquet_atomic, write_text_atomic

    tl = rp.timeline()
    write_parquet_atomic(tl, out_dir / "timeline.parquet")
    y = tl["actual"].to_numpy()
    lines = {"deployed champion": "prediction", "never retrained": "never_retrained",
             "always retrain (no test)": "always_retrained", "random walk": "random_walk"}
    rmse = {k: float(np.sqrt(np.mean((tl[c].to_numpy() - y) ** 2))) for k, c in lines.items()}
    comps = [diebold_mariano(y, tl["prediction"].to_numpy(), tl[c].to_numpy(), a="deployed champion", b=k,
                             horizon=rp.cfg.window.horizon) for k, c in lines.items() if c != "prediction"]
    for c in comps:
        c["verdict"] = verdict(c, higher_is_better=False)
    cal = list(tl["date"])
    delays = {}
    for name, d in BREAKS.items():
        b = pd.Timestamp(d)
        if not (cal[0] <= b <= cal[-1]):
            continue
        days = np.searchsorted(np.asarray(cal), tl["date"].to_numpy()) - np.searchsorted(np.asarray(cal), b)
        after = tl[(days >= 0) & (days <= BREAK_HORIZON) & tl["alarm"].to_numpy()]
        delays[name] = (None if after.empty else
                        {"first_alarm": str(after["date"].iloc[0].date()),
                         "trading_days": int(np.searchsorted(np.asarray(cal), after["date"].iloc[0]) -
                                             np.searchsorted(np.asarray(cal), b))})
    ratio = {k: v / rmse["random walk"] for k, v in rmse.items()}
    summary = {"case": rp.case_name, "entity": rp.entity, "start": str(cal[0].date()), "end": str(cal[-1].date()),
               "days": len(tl), "retrain_every": rp.retrain_every, "monitor_every": rp.monitor_every,
               "warm_start": rp.warm_start, "checks": int(len(tl) // rp.monitor_every),
               "alarms": int(tl["alarm"].sum()), "retrains": int(tl["retrained"].sum()),
               "promotions": int(tl["promoted"].sum()), "rmse": rmse, "rmse_ratio_to_random_walk": ratio,
               "comparisons": comps, "alarm_delays": delays, "look_ahead_rows": int((tl["model_train_end"] >= tl["date"]).sum()),
               "seconds": {"total": round(seconds, 1), **{k: round(v, 1) for k, v in rp.seconds.items()}},
               "headline": f"RMSE ratio to the random walk: champion {ratio['deployed champion']:.4f}, never "
                           f"retrained {ratio['never retrained']:.4f}"}
    write_json_atomic(summary, out_dir / "summary.json")

    err = {k: (pd.Series((tl[c].to_numpy() - y) ** 2).rolling(63, min_periods=20).mean() ** 0.5).to_numpy()
           for k, c in lines.items()}
    plot_live_error(tl["date"], err, out_dir / "live_error.png", alarms=tl.loc[tl["alarm"], "date"],
                    promotions=tl.loc[tl["promoted"], "date"], ylabel="RMSE of the log return",
                    title=f"{rp.entity}: live error of next-day forecasts, rolling 63 days (red: monitor alarms; "
                          "ticks: promotions)")
    table = md_table({k: {"RMSE": v, "ratio to random walk": ratio[k]} for k, v in rmse.items()},
                     ["RMSE", "ratio to random walk"], first="line")
    dl = [f"- {k}: " + (f"first alarm {v['first_alarm']}, {v['trading_days']} trading days after"
                         if v else f"no alarm within {BREAK_HORIZON} trading days") for k, v in delays.items()]
    md = "\n".join([
        f"# Replay: {rp.case_name} ({rp.entity}), {summary['start']} to {summary['end']}", "",
        f"{summary['days']} trading days; a retrain every {rp.retrain_every} days or after an alarm "
        f"({'warm-started from the champion' if rp.warm_start else 'from scratch'}), the monitor every "
        f"{rp.monitor_every} days. Every prediction comes from a model trained only on data realised before its "
        f"date ({summary['look_ahead_rows']} rows violate this).", "", *report_counts(summary), table, "",
        "Diebold–Mariano, the deployed champion minus each line (mean squared-error difference):", "",
        comparison_table(comps), "", "Alarm delay after the known breaks:", *dl, "",
        "![live error](live_error.png)", ""])
    write_text_atomic(md, out_dir / "replay.md")
    return summary
