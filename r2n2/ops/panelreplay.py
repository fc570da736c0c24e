"""The cross-section kind's steps of the one replay loop (``r2n2.ops.replay.ReplaySchedule``): a simulated calendar
of trading dates over which the deployed champion ranks every stock, judged by the daily cross-sectional rank IC.

A step is one trading date ``d``; the data known at ``d``'s close is every row whose target was realised by then
(what ingest keeps with ``data.until = d``). At each date, in this order:

1. the deployed champion (trained on the data known at an earlier date) scores every stock for ``d``: truly out
   of sample (``model_train_end < date`` on every row);
2. every ``monitor_every`` dates the monitor advances a CUSUM (``r2n2.ops.sequential``) of the deployed process's
   daily rank loss (minus its rank IC) over the dates realised since the last check, calibrated by ``fit_cusum``
   on the champion's validation and holdout dates (in-control ARL ``cusum_arl`` dates, the series convention): it
   alarms on a drop of the rank IC;
3. by the retrain policy (default: every ``retrain_every`` dates, or right after an alarm), a challenger is
   trained by the case's window and train stages with rolling cut dates on the data known at ``d`` (the shared
   ``_train`` / ``fit_retrain`` path, so each retrain's ``set`` rebuilds its ``model.pt`` bytes);
4. the deployed gate (``fresh_window`` + ``decide_promotion`` on ``case.promotion_scores``, as `r2n2 retrain`):
   champion, challenger and the case's naive benchmark on the challenger's holdout dates after both cut-offs.

Beside the champion the timeline records the first model never retrained, "always retrain" (every challenger
deployed without a test) and the case's naive scores (``case.naive_scores``: 1-day reversal for the panel).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..cases.base import CaseData, window_meta_of
from ..cases.crosssection import model_view, score_matrix
from ..data.sources import read_parquet
from ..errors import DataError
from ..evaluate.metrics import daily_rank_ic
from .replay import Deployed, ReplaySchedule, TradingDays, promotion_gate_scores
from .reports import write_panel_replay_report

__all__ = ["PanelReplay"]
_quiet = lambda msg: None  # noqa: E731


@dataclass
class PanelDeployed(Deployed):
    data: CaseData | None = None            # its windows, until its promotion is decided


@dataclass
class PanelReplay(TradingDays, ReplaySchedule):
    """The simulated calendar of one cross-section case; ``run_until(until)`` advances it (one Prefect sub-run
    each). ``preds`` of a deployed model: its scores, dates x stocks, from its validation start on. Its time axis
    is the series kind's (``TradingDays``)."""

    cusum_arl: float = 1000.0               # the chart's in-control average run length (dates)

    # the sequential chart of the deployed process: its daily rank loss (minus the rank IC; a drop of the IC rises)
    CHARTS = {"rank_ic": ("daily rank loss (minus the cross-sectional rank IC) of the deployed scores",
                          lambda ic, naive_ic, _: -ic)}

    def __post_init__(self):
        if self.case.kind != "crosssection":  # one cross-section of stocks per trading date
            raise DataError(f"this replay covers cross-section cases (stocks ranked per date); {self.case_name} is a "
                            f"{self.case.kind or 'other'} case.")
        self._begin()
        self.source = read_parquet(self.paths.validated, f"validated {self.case_name} data")
        # every date's features and target through the case's own windowing (its splits are not used here)
        cfg0 = self._cfg_at(None)
        self.case.build_windows(cfg0, self.source, self.work.data / "replay-table", _quiet)
        self.table = self.case.load(cfg0, self.work.data / "replay-table").table
        self.entities = sorted(self.table["entity"].astype(str).unique())
        self.fwd = self.table.pivot(index="date", columns="entity", values="fwd_return").sort_index()
        close = self.table.pivot(index="date", columns="entity", values="close").sort_index()
        self.naive = self.case.naive_scores(close)
        self.dates = pd.DatetimeIndex(self.fwd.index)
        lo, hi = pd.Timestamp(self.start), pd.Timestamp(self.end)
        self.calendar = list(self.dates[(self.dates >= lo) & (self.dates <= hi)])
        self.n_steps = len(self.calendar)
        if self.n_steps < 2 * self.retrain_every:
            raise DataError(f"the replay period {self.start} .. {self.end} holds {self.n_steps} trading dates of "
                            f"{self.case_name}; it needs at least 2 x --retrain-every = {2 * self.retrain_every}.")
        before = self.dates[self.dates < self.calendar[0]]
        if before.empty:
            raise DataError(f"the replay starts on the first date of the data ({self.calendar[0].date()}); start it "
                            "later so a first model can be trained on what came before.")
        self.log(f"replay {self.case_name} ({len(self.entities)} stocks) {self.calendar[0].date()} .. "
                 f"{self.calendar[-1].date()}: training the first model on data up to {before[-1].date()}")
        self._prefit(before[-1])
        self.champion = self._train(before[-1], None)
        self.never = self.latest = self.champion

    # -- models ---------------------------------------------------------------------------------------------
    def _scores(self, model, meta) -> pd.DataFrame:
        """The model's scores (dates x stocks) on every date from its validation start through the replay's end,
        from the full-history table (its features are per-date cross-sectional z-scores of trailing values: a
        date's row does not change when later dates arrive), scaled with the model's own metadata."""
        lo = pd.Timestamp(meta.cuts["val_start"])
        first = self.dates[max(0, int(self.dates.searchsorted(lo)) - (meta.lookback - 1))]
        part = self.table[(self.table["date"] >= first) & (self.table["date"] <= self.calendar[-1])]
        part = part.sort_values(["entity", "date"]).reset_index(drop=True)
        # every full window of the slice is scored (its first lookback - 1 dates per stock begin no window)
        part["split"] = np.where(part.groupby("entity").cumcount() >= meta.lookback - 1, "all", "")
        scores = score_matrix(model, model_view(part, meta), None)
        return scores.loc[scores.index >= lo]

    def _deployed(self, model, ck: dict, t, data) -> PanelDeployed:
        meta = window_meta_of(ck)
        return PanelDeployed(model=model, ck=ck, meta=meta, train_end=pd.Timestamp(t),
                             preds=self._scores(model, meta), data=data)

    def _gate_scores(self, challenger: PanelDeployed, champion: PanelDeployed, window: dict) -> dict:
        """What `r2n2 retrain` scores (squared error on the cross-sectional z-score of the forward return, the naive
        benchmark beside), on the challenger's windows."""
        return promotion_gate_scores(self, challenger, champion, window)

    # -- the calendar ---------------------------------------------------------------------------------------
    def _record(self, i: int) -> pd.DataFrame:
        """Date ``i``'s rows: one per stock, every line's score and the realised forward return (``actual``)."""
        day, ents = self.calendar[i], self.entities
        at = lambda frame: frame.reindex(index=[day], columns=ents).to_numpy(float)[0]  # noqa: E731
        return pd.DataFrame({"date": day, "entity": ents, "actual": at(self.fwd),
                             "prediction": at(self.champion.preds), "model_train_end": self.champion.train_end,
                             "never_retrained": at(self.never.preds), "always_retrained": at(self.latest.preds),
                             "naive": at(self.naive), "alarm": False, "retrained": False, "promoted": False,
                             "monitor_p_min": np.nan, "cusum": np.nan, "cusum_alarm": False})

    def timeline(self) -> pd.DataFrame:
        """One row per replayed (date, stock): every line's score, the realised forward return, the champion's
        ``model_train_end`` and the date's ``alarm`` / ``retrained`` / ``promoted`` flags (on every row of it)."""
        return pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame()

    # -- monitoring -----------------------------------------------------------------------------------------
    def _realised(self) -> int:
        """Timeline dates whose forward return is realised (``horizon`` dates after them)."""
        return max(0, len(self.rows) - (self.cfg.window.horizon - 1))

    def _chart_arrays(self, recs: list) -> tuple:
        """(deployed rank IC, naive rank IC, zeros), one value per date of the records ``recs``."""
        f = pd.concat(recs, ignore_index=True)
        act = f.pivot(index="date", columns="entity", values="actual")
        ic = daily_rank_ic(f.pivot(index="date", columns="entity", values="prediction"), act).to_numpy()
        naive = daily_rank_ic(f.pivot(index="date", columns="entity", values="naive"), act).to_numpy()
        return ic, naive, np.zeros(len(ic))

    def _fit_cusum(self, c: PanelDeployed) -> dict:
        """The chart calibrated on the champion's daily rank IC over its validation and holdout dates (out of
        sample for its weights, before every date it is then charted on), as the series chart is."""
        ref = c.preds[(c.preds.index >= pd.Timestamp(c.meta.cuts["val_start"])) &
                      (c.preds.index <= pd.Timestamp(c.meta.cuts["end"]))]
        ic = daily_rank_ic(ref, self.fwd.reindex(index=ref.index)).dropna().to_numpy()
        return self._calibrate(ic, np.zeros(len(ic)), np.zeros(len(ic)), arl0=self.cusum_arl)

    def _monitor(self, i: int) -> dict:
        """The CUSUM of the deployed process's rank loss over the dates realised since the previous check (a
        promotion does not reset it; an alarm restarts it)."""
        t0 = _time.perf_counter()
        c = self.champion
        if c.cusum is None:
            c.cusum = self._fit_cusum(c)
        cus = self._check_cusum(c)
        stat = "no chart" if cus["statistic"] is None else f"CUSUM {cus['statistic']:.2f} <= {cus['h']:.2f}"
        self.seconds["monitor"] += _time.perf_counter() - t0
        return {"alarm": cus["alarm"], "signals": {}, "cusum": cus,
                "verdict": f"ALARM: {cus['reason']}" if cus["alarm"] else f"no alarm ({stat})"}

    def write_report(self, out_dir: Path, *, seconds: float) -> dict:
        """timeline.parquet, summary.json, replay.md and live_error.png under ``out_dir``."""
        return write_panel_replay_report(self, Path(out_dir), seconds=seconds)
