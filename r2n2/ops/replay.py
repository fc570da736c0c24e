"""Replay: the deployed loop (monitor -> retrain -> promote) under a simulated clock over real history.

Each trading day ``d`` of [start, end] (series cases): the data known at ``d``'s close is every row whose target
was realised by then. In that order, each day:

1. the deployed champion (trained on data up to an earlier day) forecasts the window ending at ``d``: the
   recorded prediction, truly out of sample (``model_train_end < date`` on every row);
2. every ``monitor_every`` days the deployed monitor checks: the calibrated drift tests (``r2n2.ops.monitoring``)
   on the champion's rows since its cut-off, and a CUSUM (``r2n2.ops.sequential``) of the live loss differential
   of whichever model was deployed each day against the random walk;
3. by the retrain policy (default: every ``retrain_every`` days, or right after an alarm), a challenger is trained
   on the data known at ``d`` by the case's own window and train stages with rolling cut dates (``window.cuts =
   rolling``), from scratch (the default; reproducible with the stage commands) or warm-started from the
   champion's weights;
4. the deployed gate (``r2n2.ops.champion.fresh_window`` + ``decide_promotion``): champion, challenger and the
   random walk on the challenger's holdout days after the champion's cut-off; the challenger is refused if it is
   significantly worse than the champion or than the random walk (``promotion`` params).

Beside the champion the timeline records the random walk, the first model never retrained, and "always
retrain" (every challenger deployed without a test), scored on the same days.
"""

from __future__ import annotations

import hashlib
import os
import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import pandas as pd

from ..cases.base import UseCase, window_meta_of
from ..cases.series import series_frame
from .champion import fresh_window
from ..checkpoint import load_checkpoint
from ..config import with_values
from ..data.sources import read_parquet
from ..errors import ConfigError, DataError
from ..evaluate.distribution import adaptive_conformal
from ..models.core import build_model
from .monitoring import check_window, fit_frame_monitor
from ..paths import CasePaths
from .promotion import decide_promotion
from .reports import write_replay_report
from .sequential import bernoulli_cusum, bernoulli_path, fit_cusum
from ..stages import fit, train_stage
from ..train import seed_everything
from .workspace import replay_dir

__all__ = ["ReplaySchedule", "SeriesReplay", "TradingDays", "promotion_gate_scores", "period_ends"]

RETRAIN_POLICIES = ("both", "schedule", "alarm")
_quiet = lambda msg: None  # noqa: E731


def _build(case: UseCase, cfg, known: pd.DataFrame, work: CasePaths, when: str) -> None:
    try:
        case.build_windows(cfg, known, work.windows, _quiet)
    except DataError as exc:
        raise DataError(f"at {when} the known data cannot be windowed for a retrain ({exc}) Start the replay "
                        "later.") from None


def fit_retrain(case: UseCase, cfg, known: pd.DataFrame, root: Path, when: str) -> dict:
    """One from-scratch retrain of the replay, in the scratch project ``root``: the case's window stage on the
    rows ``known`` at ``when`` (what ingest keeps with ``data.until``) and its train stage (with ``cfg``'s
    ``train.threads``). A Dask task: it depends on nothing but its arguments. Returns {"path", "sha256"}."""
    work = CasePaths(case.name, Path(root))
    _build(case, cfg, known, work, when)
    train_stage(case, cfg, work, _quiet)
    path = work.model_dir / "model.pt"
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@dataclass
class Deployed:
    """One model of the replay: its weights and checkpoint metadata (``ck``, as `r2n2 train` writes it), the last
    time whose data it knew (its retrain's ``data.until``) and its predictions; its monitor is fitted lazily."""

    model: object
    ck: dict
    meta: object                            # its window metadata (rolling cuts)
    train_end: object                       # the last time of the data it was trained with (day or arrival index)
    preds: object                           # series: forecast per window-end date; texts: {stream position: class id}
    monitor: object = None                  # fitted lazily (texts: False when there is too little history)
    window: int = 0
    cusum: object = None                    # the calibrated charts (or why there are none), fitted lazily
    note: str = ""
    quants: object = None                   # series with a distribution head: its 5 % and 95 % quantiles per date
    calib: object = None                    # and (quantiles, targets) of its validation rows (conformal scores)


@dataclass
class ReplaySchedule:
    """The one replay loop: the deployed loop (monitor -> retrain -> promote) under a simulated clock, for every
    kind. A step is a trading day (series) or an arrival batch of texts (texts); the kind's subclass says what a
    step holds (``step_time``, ``_record``), how its models predict and are monitored (``_deployed``,
    ``_monitor``) and which rows the gate scores (``_gate_scores``). Everything else is shared and is what
    `r2n2 retrain` runs: each retrain is the case's window and train stages on the data known at that step
    (``data.until``) with rolling cut dates, in a scratch project under ``data/ops/<case>/replay/``, so its ``set``
    (``summary.json["retrains"]``) rebuilds the same ``model.pt`` bytes through `r2n2 ingest/validate/window/train`;
    each decision is the deployed gate (``fresh_window`` + ``decide_promotion``, benchmark leg included)."""

    case: UseCase
    cfg: object
    root: Path
    start: str
    end: str
    retrain_every: int = 21
    monitor_every: int = 5
    warm_start: bool = False
    warm_epochs: int = 3                    # epochs of a warm-started retrain
    workers: int = 1                        # local Dask worker processes that pre-train the scheduled challengers
    dask_address: str | None = None         # or a running Dask scheduler (tcp://host:8786) that does
    threads: int | None = None              # torch threads per training (None: the cores / workers, at least 1)
    # when a step's close retrains (Darts' ``retrain``): "both" every ``retrain_every`` steps and after an alarm,
    # "schedule" every ``retrain_every`` steps only, "alarm" only after an alarm, or a callable
    # ``policy(step=i, time=t, alarm=bool) -> bool`` (its retrains are trained when it asks: never ahead on Dask)
    retrain_policy: object = "both"
    log: Callable[[str], None] = print
    warn: Callable[[str], None] | None = None  # where alarms go (a logger's warning); default: ``log``
    rows: list = field(default_factory=list)
    events: list = field(default_factory=list)

    @property
    def case_name(self) -> str:
        return self.case.name

    def _begin(self) -> None:
        """Shared state; the subclass calls it in ``__post_init__`` before training the first model."""
        if not callable(self.retrain_policy) and self.retrain_policy not in RETRAIN_POLICIES:
            raise ConfigError(f"the retrain policy must be one of {', '.join(RETRAIN_POLICIES)} or a callable "
                              f"(step, time, alarm) -> bool, got {str(self.retrain_policy)[:80]!r}.")
        self.paths = CasePaths(self.case_name, Path(self.root))  # read only: the research data it replays
        self.work = CasePaths(self.case_name, replay_dir(self.case_name, self.root))  # everything it writes
        self.step = 0
        self.n_steps = 0
        self.prefitted: dict[str, object] = {}  # retrain time -> Dask future of {"path", "sha256"} (parallel)
        self._dask: tuple = (None, None)    # (client, local cluster) of a parallel replay, until it is done
        self.counts = {"checks": 0, "alarms": 0, "retrains": 0, "promotions": 0}
        self.seconds = {"train": 0.0, "monitor": 0.0, "predict": 0.0}
        self.retrains: list[dict] = []
        self.cusum_pos = 0                  # timeline records the charts have consumed
        self.cusum_stat: dict[str, float] = {}  # each chart's statistic (empty: restarted)
        self.coverage_calib = None          # the first head's validation (quantiles, targets): ACI's start
        self.coverage_restart = 0           # realised rows before the coverage chart's last restart

    # -- what a kind says (SeriesReplay here, r2n2.ops.textreplay.TextReplay) ----------------------------------
    def step_time(self, i: int):
        """The time of the newest data known at step ``i``'s close (comparable with ``_parse(until)``)."""
        raise NotImplementedError

    def _parse(self, until):
        raise NotImplementedError

    def _show(self, t) -> str:
        """A time as the report and ``data.until`` write it."""
        raise NotImplementedError

    def _json(self, t):
        """A time as summary.json and the events hold it."""
        return self._show(t)

    def _known_source(self, t) -> pd.DataFrame:
        """The validated rows that ingest with ``data.until = _show(t)`` keeps."""
        raise NotImplementedError

    def _record(self, i: int):
        """Step ``i``'s timeline row(s) (a dict, or a frame for several rows): every line's predictions."""
        raise NotImplementedError

    def _monitor(self, i: int) -> dict:
        raise NotImplementedError

    def _deployed(self, model, ck: dict, t, data) -> Deployed:
        """A trained model as the replay deploys it: its predictions over the history, from its own metadata."""
        raise NotImplementedError

    def _warm(self, data, warm_from: Deployed) -> tuple:
        """(data, checkpoint metadata) of a retrain warm-started from ``warm_from``'s weights."""
        return data, data.checkpoint_metadata()

    def _gate_scores(self, challenger: Deployed, champion: Deployed, window: dict) -> dict | None:
        """{actual, champion, challenger, benchmark, benchmark_id, kind, n_classes, horizon} on the window's rows."""
        raise NotImplementedError

    # -- training: the stage functions on the data known at t ------------------------------------------------
    def overrides_at(self, t) -> dict[str, object]:
        """The params a retrain at ``t`` runs with, beyond the replay's own: the data known at ``t``, rolling cut
        dates, one seed (None: the whole history)."""
        out = {"window.cuts": "rolling", "evaluate.seeds": 1}
        if self._threads() is not None:
            out["train.threads"] = self._threads()
        if t is not None:
            out["data.until"] = self._show(t)
        return out

    def _cfg_at(self, t):
        return with_values(self.cfg, self.overrides_at(t))

    def _schedule(self) -> list[int]:
        """The steps whose close retrains by schedule: every ``retrain_every``-th step of the calendar (a cron, as
        `r2n2 serve` deploys it; an alarm adds a retrain and leaves the schedule as it is); none when the policy
        is "alarm" or a callable (whose answers are not known ahead)."""
        if callable(self.retrain_policy) or self.retrain_policy == "alarm":
            return []
        return [i for i in range(self.n_steps) if (i + 1) % self.retrain_every == 0]

    def _retrains_at(self, i: int, alarm: bool) -> bool:
        """Whether step ``i``'s close trains a challenger, by the retrain policy."""
        if callable(self.retrain_policy):
            return bool(self.retrain_policy(step=i, time=self.step_time(i), alarm=alarm))
        scheduled = (i + 1) % self.retrain_every == 0
        return {"both": scheduled or alarm, "schedule": scheduled, "alarm": alarm}[self.retrain_policy]

    @property
    def policy_name(self) -> str:
        p = self.retrain_policy
        return getattr(p, "__name__", "callable") if callable(p) else str(p)

    def retrain_rule(self, unit: str) -> str:
        """The retrain policy as a report says it (``unit``: what a step is, plural)."""
        if callable(self.retrain_policy):
            return f"a retrain whenever {getattr(self.retrain_policy, '__name__', 'the retrain policy')} says so"
        return {"both": f"a retrain every {self.retrain_every} {unit} or after an alarm",
                "schedule": f"a retrain every {self.retrain_every} {unit} (alarms do not retrain)",
                "alarm": "a retrain only after an alarm"}[self.retrain_policy]

    def _root_at(self, t) -> Path:
        """The scratch project of the retrain at ``t`` (absolute: a Dask worker may run elsewhere; with
        ``dask_address`` the workers and this process must share this folder's file system)."""
        return (self.work.data / "retrains" / self._show(t)).resolve()

    def _threads(self) -> int | None:
        """Torch threads of a training (``train.threads``): ``threads``, else (parallel) the cores shared out among
        the workers so they do not oversubscribe them, else (sequential) None: the params' ``train.threads``.
        Float sums split by thread, so a model's bytes depend on it: it is part of each retrain's ``set``."""
        if self.threads:
            return int(self.threads)
        if int(self.workers) > 1:
            return max(1, len(os.sched_getaffinity(0)) // int(self.workers))
        return None

    def _prefit(self, first) -> None:
        """Train the first model and every scheduled from-scratch challenger as parallel Dask tasks (each depends
        only on the data known at its time), when ``workers`` > 1 or ``dask_address`` is given, submitted in
        calendar order; the calendar walk starts at once and waits only for the model it needs next, so the
        monitor, the predictions and the retrains after alarms run while later challengers train. The cluster
        closes when the last of them is collected (or at ``close``). Warm-started replays stay sequential (each
        retrain starts from the previous champion). Results are the bytes a sequential run trains, for the same
        ``threads``."""
        if self.warm_start or (int(self.workers) <= 1 and not self.dask_address):
            if self.warm_start and (int(self.workers) > 1 or self.dask_address):
                self.log("a warm-started replay trains each challenger from the previous champion: sequential, "
                         "--workers and --dask-address are not used")
            return
        import logging

        from distributed import Client, LocalCluster

        for name in ("distributed", "distributed.scheduler", "distributed.core", "distributed.nanny"):
            logging.getLogger(name).setLevel(logging.WARNING)  # the cluster's connection chatter is not the replay's
        times = [first, *(self.step_time(i) for i in self._schedule())]
        if self.dask_address:
            client, cluster = Client(self.dask_address), None
            where = f"the Dask cluster at {self.dask_address}"
        else:
            cluster = LocalCluster(n_workers=int(self.workers), threads_per_worker=1, processes=True,
                                   dashboard_address=":0")  # any free port: never another cluster's 8787
            client = Client(cluster)
            where = f"{self.workers} local Dask workers x {self._threads()} torch thread(s) each"
        self._dask = (client, cluster)
        if cluster is not None:  # the walk shares this machine's cores with the workers: one torch thread for it
            import torch

            self._main_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        self.log(f"training the first model and {len(times) - 1} scheduled challengers on {where}, in calendar "
                 "order, while the walk runs")
        try:
            self.prefitted = {self._show(t): client.submit(fit_retrain, self.case, self._cfg_at(t),
                                                           self._known_source(t), self._root_at(t), self._show(t),
                                                           pure=False, priority=len(times) - k)
                              for k, t in enumerate(times)}
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the Dask client (and the local cluster) of a parallel replay; nothing when there is none."""
        client, cluster = self._dask
        self._dask = (None, None)
        if client is not None:
            for fut in self.prefitted.values():
                fut.cancel()
            self.prefitted = {}
            client.close()
        if cluster is not None:
            cluster.close()
            import torch

            torch.set_num_threads(self._main_threads)

    def _train(self, t, warm_from: Deployed | None) -> Deployed:
        """A challenger trained on the data known at ``t`` by the window and train stages (from scratch; trained
        ahead by ``_prefit`` when it is on the schedule of a parallel replay), or warm-started from
        ``warm_from``'s weights for ``warm_epochs`` epochs (not a stage command: no ``set``)."""
        t0 = _time.perf_counter()
        cfg = self._cfg_at(t)
        work = CasePaths(self.case_name, self._root_at(t))
        if warm_from is None:
            fut = self.prefitted.pop(self._show(t), None)
            if fut is not None:
                try:
                    done = fut.result()
                except BaseException:
                    self.close()
                    raise
                if not self.prefitted:
                    self.close()  # the last scheduled challenger is in
            else:
                done = fit_retrain(self.case, cfg, self._known_source(t), self._root_at(t), self._show(t))
            data = self.case.load(cfg, work.windows)
            model, ck = load_checkpoint(Path(done["path"]))
            sha = done["sha256"]
        else:
            _build(self.case, cfg, self._known_source(t), work, self._show(t))
            data, ck = self._warm(self.case.load(cfg, work.windows), warm_from)
            seed_everything(cfg.train.seed)
            model = build_model(data.model_config())
            model.load_state_dict(warm_from.model.state_dict())
            wcfg = replace(cfg, train=replace(cfg.train, epochs=min(self.warm_epochs, cfg.train.epochs)))
            fit(wcfg, data, model, "pretrain", f"replay-{self._show(t)}", work, seed=cfg.train.seed)
            sha = None
        self.retrains.append({"date": self._show(t), "model_sha256": sha,
                              "set": None if warm_from is not None else
                              [f"{self.case_name}.{k}={v}" for k, v in self.overrides_at(t).items()]})
        self.seconds["train"] += _time.perf_counter() - t0
        t1 = _time.perf_counter()
        out = self._deployed(model, ck, t, data)
        self.seconds["predict"] += _time.perf_counter() - t1
        return out

    # -- the gate: the deployed one -------------------------------------------------------------------------
    def _decide(self, challenger: Deployed) -> dict:
        """The deployed gate (``r2n2.ops.champion.fresh_window``): champion, challenger and the naive benchmark on
        the challenger's holdout after both models' cut-offs (neither trained or early-stopped on it); the
        holdout ends with the data known at the retrain, so never a later row."""
        champ = self.champion
        window = fresh_window(challenger.meta, champ.meta)
        s = None if window is None else self._gate_scores(challenger, champ, window)
        if s is None or len(s["actual"]) == 0:
            return {"promoted": False, "reason": "no fresh rows to compare on; kept the champion.", "window": None,
                    "test": {"p_value": None}}
        p = self.cfg.promotion
        return decide_promotion(actual=s["actual"], champion_pred=s["champion"], challenger_pred=s["challenger"],
                                kind=s["kind"], window=window, horizon=s["horizon"], n_classes=s["n_classes"],
                                alpha=p.alpha, tolerance=p.tolerance, benchmark_pred=s["benchmark"],
                                benchmark_id=s["benchmark_id"], benchmark_tolerance=p.benchmark_tolerance,
                                champion_id=f"cut-off {champ.meta.cuts['test_start']}",
                                challenger_id=f"cut-off {challenger.meta.cuts['test_start']}")

    # -- the sequential charts of the deployed process (every kind; CHARTS: name -> (what, stream)) -----------
    CHARTS: ClassVar[dict] = {}
    unit: ClassVar[str] = "days"

    def _calibrate(self, pred, bench, y, *, arl0: float, n_boot: int = 200) -> dict:
        """Each chart fitted on a champion's reference rows (its validation period: out of sample for its
        weights, before its holdout and before every step it is then charted on)."""
        out = {}
        for name, (_, stream) in self.CHARTS.items():
            try:
                out[name] = fit_cusum(stream(pred, bench, y), arl0=arl0, n_boot=n_boot, seed=self.cfg.train.seed)
            except DataError as exc:  # too short a reference: no chart, said in every check
                out[name] = str(exc)
        return out

    def _realised(self) -> int:
        """Timeline records (``self.rows`` and then the step being checked, ``self.pending``) whose targets or
        labels have arrived."""
        return len(self.rows) + 1

    def _chart_arrays(self, recs: list) -> tuple:
        """(prediction, benchmark, actual) of the timeline records ``recs``."""
        raise NotImplementedError

    def _check_cusum(self, c: Deployed) -> dict:
        """Advance each chart over the rows realised since the previous check, each row's increment standardised
        by the chart of the champion deployed then (a promotion changes the scale of new increments, never the
        statistic already accumulated); alarm when it crosses its threshold, then restart (the alarm is
        investigated: a retrain)."""
        realised = self._realised()
        new = [*self.rows, self.pending][self.cusum_pos:realised]
        self.cusum_pos = max(self.cusum_pos, realised)
        arrays = self._chart_arrays(new) if new else None
        charts, reasons = {}, []
        for name, (what, stream) in self.CHARTS.items():
            chart = c.cusum[name]
            if isinstance(chart, str):
                charts[name] = {"alarm": False, "statistic": None, "h": None, "note": chart}
                continue
            d = np.asarray(stream(*arrays), dtype=float) if arrays is not None else np.zeros(0)
            z = chart.standardise(d[np.isfinite(d)]) if len(d) else np.zeros(0)
            stat, crossed = self.cusum_stat.get(name, 0.0), False
            for step in z:  # Page's recursion, continued from the statistic so far
                stat = max(0.0, stat + float(step) - chart.k)
                crossed = crossed or stat > chart.h
            self.cusum_stat[name] = stat
            charts[name] = {"alarm": crossed, "statistic": stat, "h": float(chart.h)}
            if crossed:
                reasons.append(f"CUSUM of the {what} crossed {chart.h:.2f} (now {stat:.2f}; in-control ARL "
                               f"{chart.arl0:.0f} {self.unit}, calibrated on the champion's validation period)")
        if reasons:
            self.cusum_stat = {}  # restart every chart
        d = next(iter(charts.values()))  # the first chart's statistic is the one the timeline records
        return {"alarm": bool(reasons), "reason": "; ".join(reasons) or None, "statistic": d["statistic"],
                "h": d["h"], "charts": charts}

    # -- the calendar ---------------------------------------------------------------------------------------
    def run_until(self, until=None) -> dict:
        """Advance step by step through the step that closes at ``until`` (a value of ``period_ends()``; default:
        the end). Each step: the deployed champion predicts it (out of sample), the monitor checks every
        ``monitor_every`` steps, a challenger is trained when the retrain policy says so (default: every
        ``retrain_every`` steps or right after an alarm) and the gate decides. Returns this period's counts."""
        stop = None if until is None else self._parse(until)
        counts = {"steps": 0, "rows": 0, "alarms": 0, "retrains": 0, "promotions": 0}
        while self.step < self.n_steps and (stop is None or self.step_time(self.step) <= stop):
            i = self.step
            rec = self.pending = self._record(i)
            self.step += 1
            counts["steps"] += 1
            counts["rows"] += len(rec) if isinstance(rec, pd.DataFrame) else 1
            alarm = False
            if self.step % self.monitor_every == 0:  # the step's targets / labels have arrived
                m = self._monitor(i)
                self.counts["checks"] += 1
                alarm = bool(m["alarm"])
                ps = [s.get("p_value") for s in m["signals"].values() if s.get("p_value") is not None]
                rec["alarm"], rec["monitor_p_min"] = alarm, (min(ps) if ps else np.nan)
                if "cusum" in m:
                    rec["cusum"], rec["cusum_alarm"] = m["cusum"]["statistic"], m["cusum"]["alarm"]
                if "coverage" in m:
                    rec["coverage_alarm"] = bool(m["coverage"]["alarm"])
                if alarm:
                    counts["alarms"] += 1
                    (self.warn or self.log)(f"step {i} (data through {self._show(self.step_time(i))}): {m['verdict']}")
            if self._retrains_at(i, alarm):
                counts["retrains"] += 1
                t = self.step_time(i)
                challenger = self._train(t, self.champion if self.warm_start else None)
                decision = self._decide(challenger)
                rec["retrained"], rec["promoted"] = True, decision["promoted"]
                counts["promotions"] += int(decision["promoted"])
                self.events.append({"date": self._json(t), "step": i, "trigger": "alarm" if alarm else
                                    ("policy" if callable(self.retrain_policy) else "schedule"),
                                    "promoted": decision["promoted"], "reason": decision["reason"],
                                    "window": decision["window"], "p_value": decision["test"]["p_value"],
                                    "champion_train_end": self._json(self.champion.train_end),
                                    "champion_holdout_start": self.champion.meta.cuts["test_start"],
                                    "challenger_holdout_start": challenger.meta.cuts["test_start"]})
                self.latest = challenger
                if decision["promoted"]:
                    self.champion = challenger
            self.rows.append(rec)
        for k in ("alarms", "retrains", "promotions"):
            self.counts[k] += counts[k]
        return counts

    def period_ends(self) -> list[str]:
        """The time (as ``_show`` writes it) closing each scheduled retrain period: the replay's sub-runs."""
        return [self._show(self.step_time(i)) for i in period_ends(list(range(self.n_steps)), self.retrain_every)]


class TradingDays:
    """The time axis of the price kinds' replays: a step is a trading date of ``self.calendar``; the data known at a
    date's close is the validated rows (``self.source``) through it, what ingest keeps with ``data.until``."""

    def step_time(self, i: int) -> pd.Timestamp:
        return self.calendar[i]

    def _parse(self, until) -> pd.Timestamp:
        return pd.Timestamp(until)

    def _show(self, t) -> str:
        return str(pd.Timestamp(t).date())

    def _known_source(self, t) -> pd.DataFrame:
        return self.source[self.source["date"] <= pd.Timestamp(t)]  # = ingest with data.until=t (validated rows)


def promotion_gate_scores(rp: ReplaySchedule, challenger: Deployed, champion: Deployed, window: dict) -> dict:
    """What `r2n2 retrain` scores (``case.promotion_scores``) for both models on the challenger's windows
    (``challenger.data``, released once decided): a kind's ``_gate_scores`` when its case scores the gate itself."""
    cfg, data = rp._cfg_at(challenger.train_end), challenger.data
    chal = rp.case.promotion_scores(cfg, data, challenger.model, challenger.ck, window)
    champ = rp.case.promotion_scores(cfg, data, champion.model, champion.ck, window)
    challenger.data = None  # decided: its windows are not needed any more
    return {"actual": chal["actual"], "champion": champ["pred"], "challenger": chal["pred"],
            "benchmark": chal["benchmark"], "benchmark_id": chal["benchmark_id"], "kind": chal["kind"],
            "n_classes": chal["n_classes"], "horizon": chal["horizon"]}


@dataclass
class SeriesReplay(TradingDays, ReplaySchedule):
    """The simulated calendar of one series case: a step is a trading day ``d``; the data known at ``d``'s
    close is every row whose target was realised by then (what ingest gives with ``data.until = d``)."""

    cusum_arl: float = 1000.0               # the sequential detector's in-control average run length (steps)

    def __post_init__(self):
        if self.case.kind != "series":  # one series of trading days
            raise DataError(f"this replay covers series cases (trading days); {self.case_name} is a "
                            f"{self.case.kind or 'other'} case.")
        self._begin()
        self.source = read_parquet(self.paths.validated, f"validated {self.case_name} data")
        w = self.cfg.window
        entity = w.pretrain_entity if w.pretrain_entity in set(self.source["entity"]) else \
            str(self.source["entity"].iloc[0])
        # every day's features and target through the case's own windowing (the splits are not used here)
        self.case.build_windows(self._cfg_at(None), self.source, self.work.data / "replay-table", _quiet)
        full = self.case.load(self._cfg_at(None), self.work.data / "replay-table").table
        self.table = full[full["entity"] == entity].sort_values("date").reset_index(drop=True)
        meta = self.case.load(self._cfg_at(None), self.work.data / "replay-table").meta
        self.bench = pd.Series(self.case.naive_forecast(self.table, meta), index=self.table["date"])  # the naive line
        self.entity = entity
        dates = self.table["date"]
        self.calendar = list(dates[(dates >= pd.Timestamp(self.start)) & (dates <= pd.Timestamp(self.end))])
        self.n_steps = len(self.calendar)
        if len(self.calendar) < 2 * self.retrain_every:
            raise DataError(f"the replay period {self.start} .. {self.end} holds {len(self.calendar)} trading days of "
                            f"{entity}; it needs at least 2 x --retrain-every = {2 * self.retrain_every}.")
        self.armed: dict[str, bool] = {}    # drift signal -> may alarm (re-armed by a calm check)
        first = self.calendar[0]
        before = dates[dates < first]
        if before.empty:
            raise DataError(f"the replay starts on the first day of the data ({first.date()}); start it later so a "
                            "first model can be trained on what came before.")
        self.log(f"replay {self.case_name} ({entity}) {first.date()} .. {self.calendar[-1].date()}: training the "
                 f"first model on data up to {before.iloc[-1].date()}")
        self._prefit(before.iloc[-1])
        self.champion = self._train(before.iloc[-1], None)
        self.never = self.champion
        self.latest = self.champion

    # -- the kind's answers (its time axis: TradingDays) ------------------------------------------------------
    def _known(self, day: pd.Timestamp) -> pd.DataFrame:
        """Windows whose target was realised by ``day``'s close."""
        return self.table[self.table["target_date"] <= day].reset_index(drop=True)

    def _deployed(self, model, ck: dict, t, data) -> Deployed:
        meta = window_meta_of(ck)
        frame = series_frame(model, meta, self.table, naive=self.case.naive_forecast)
        quants = calib = None
        if {"q0.05", "q0.95"} <= set(frame.columns):  # a distribution head: the coverage chart watches its VaR
            quants = frame.set_index("date")[["q0.05", "q0.95"]]
            val = frame[(frame["date"] >= pd.Timestamp(meta.cuts["val_start"])) &
                        (frame["date"] < pd.Timestamp(meta.cuts["test_start"]))]
            calib = (val[["q0.05", "q0.95"]].to_numpy(float), val["target"].to_numpy(float))
            if self.coverage_calib is None and len(calib[1]):
                self.coverage_calib = calib  # the first head's validation scores start the online adaptation
        return Deployed(model=model, ck=ck, meta=meta, train_end=pd.Timestamp(t), preds=frame.set_index("date")["pred"],
                        quants=quants, calib=calib)

    def _record(self, i: int) -> dict:
        day = self.calendar[i]
        row = self.table.loc[self.table["date"] == day].iloc[0]
        c = self.champion
        return {"date": day, "actual": float(row["target"]), "prediction": float(c.preds.get(day, np.nan)),
                "model_train_end": c.train_end, "never_retrained": float(self.never.preds.get(day, np.nan)),
                "always_retrained": float(self.latest.preds.get(day, np.nan)),
                "random_walk": float(self.bench.get(day, np.nan)),  # the naive benchmark's forecast
                "alarm": False, "retrained": False, "promoted": False, "monitor_p_min": np.nan,
                "cusum": np.nan, "cusum_alarm": False,
                "q_lo": float(c.quants["q0.05"].get(day, np.nan)) if c.quants is not None else np.nan,
                "q_hi": float(c.quants["q0.95"].get(day, np.nan)) if c.quants is not None else np.nan,
                "coverage_alarm": False}

    def _gate_scores(self, challenger: Deployed, champion: Deployed, window: dict) -> dict:
        known = self._known(self.step_time(self.step - 1))
        win = known[(known["date"] >= pd.Timestamp(window["start"])) & (known["date"] <= pd.Timestamp(window["end"]))]
        return {"actual": win["target"].to_numpy(), "champion": champion.preds.reindex(win["date"]).to_numpy(),
                "challenger": challenger.preds.reindex(win["date"]).to_numpy(),
                "benchmark": self.bench.reindex(win["date"]).to_numpy(), "benchmark_id": self.case.naive_name,
                "kind": "forecast", "n_classes": None, "horizon": self.cfg.window.horizon}

    # -- monitoring ---------------------------------------------------------------------------------
    def _monitor(self, i: int) -> dict:
        """The deployed monitor's drift checks on the champion's rows since it was deployed, and the CUSUM of the
        deployed process's loss differential against the random walk since the chart's last restart (a promotion
        does not reset it). Measured on the calm synthetic series of ``tests/test_ops.py`` (3 seeds, 237 checks):
        drift windows that included the champion's holdout raised 14 error-ratio alarms against 2 with the days
        after deployment only, and windows of the deployed forecasts across promotions 60 prediction alarms (the
        previous champion's forecasts are another distribution)."""
        t0 = _time.perf_counter()
        day = self.calendar[i]
        c = self.champion
        known = self._known(day)
        if c.monitor is None:
            frame = series_frame(c.model, c.meta, known, naive=self.case.naive_forecast)
            c.monitor, c.window = fit_frame_monitor(frame, c.meta, self.cfg.monitor, inputs=list(c.meta.features),
                                                    n_null=150, prediction_history=True)
            c.cusum = self._fit_cusum(frame, c.meta)
        # the drift tests judge the champion on the days after it was deployed (min_samples of them); the CUSUM
        # below watches the deployed process across promotions, so every check can alarm
        post = known[known["date"] > c.train_end].tail(c.window).copy()
        post["pred"] = c.preds.reindex(post["date"]).to_numpy()
        post["loss"] = (post["pred"] - post["target"]) ** 2
        post["bench_loss"] = (self.bench.reindex(post["date"]).to_numpy() - post["target"]) ** 2
        newest = known[known["date"] >= pd.Timestamp(c.meta.cuts["val_start"])].tail(c.window)  # after the inputs' reference
        out = check_window(c.monitor, post, c.meta, self.cfg.monitor, inputs=list(c.meta.features), input_rows=newest)
        # re-arm after clear: a drift signal that alarmed stays silent until a check finds it calm again, so one
        # episode (a volatile year that the training period never held) raises one alarm, not one a week
        fired = {n for n, r in out["signals"].items() if r.get("alarm")}
        counted = {n for n in fired if self.armed.get(n, True)}
        self.armed.update({n: n not in fired for n in out["signals"]})
        out["suppressed"] = sorted(fired - counted)
        out["reasons"] = [r for r in out["reasons"] if r.split(":", 1)[0] in counted]
        out["cusum"] = self._check_cusum(c)
        if out["cusum"]["alarm"]:
            out["reasons"] = [*out["reasons"], out["cusum"]["reason"]]
        out["coverage"] = self._check_coverage(c)
        if out["coverage"]["alarm"]:
            out["reasons"] = [*out["reasons"], out["coverage"]["reason"]]
        out["alarm"] = bool(out["reasons"])
        out["verdict"] = ("ALARM: " + "; ".join(out["reasons"])) if out["alarm"] else \
            (out["verdict"] if not out["suppressed"] else f"no new alarm (still drifting: {', '.join(out['suppressed'])})")
        self.seconds["monitor"] += _time.perf_counter() - t0
        return out

    def _check_coverage(self, c: Deployed) -> dict:
        """A model with a distribution head: the deployed process's 90 % intervals (each day's from the champion
        deployed then) adapted online by adaptive conformal inference, started from the first head's validation
        scores and never reset by a promotion, and a Bernoulli CUSUM of the days below the adapted 5 % quantile
        (nominal 5 % against 10 %, in-control ARL ``cusum_arl`` days), restarted after it alarms."""
        if c.calib is None or not len(c.calib[1]):
            return {"alarm": False, "reason": None, "note": "no distribution head"}
        if self.cfg.window.horizon != 1:
            return {"alarm": False, "reason": None, "note": "horizon > 1: the online adaptation needs next-day targets"}
        recs = [*self.rows, self.pending][:self._realised()]
        q = np.array([[r["q_lo"], r["q_hi"]] for r in recs], dtype=float).reshape(-1, 2)
        y = np.array([r["actual"] for r in recs], dtype=float)
        keep = np.isfinite(q).all(1) & np.isfinite(y)
        q, y = q[keep], y[keep]
        if not len(y):
            return {"alarm": False, "reason": None, "note": "no realised day yet"}
        adj, state = adaptive_conformal(q, y, (0.05, 0.95), *self.coverage_calib)
        hits = y < adj[:, 0]
        chart = bernoulli_cusum(0.05, 0.10, arl0=self.cusum_arl)
        path = bernoulli_path(hits[self.coverage_restart:], chart)
        crossed = bool(len(path) and path.max() > chart["h"])
        stat = float(path[-1]) if len(path) else 0.0
        since = len(hits) - self.coverage_restart
        if crossed:
            self.coverage_restart = len(hits)
        cover = float(np.mean((y >= adj[:, 0]) & (y <= adj[:, 1])))
        return {"alarm": crossed, "statistic": stat, "h": chart["h"], "coverage_90_adaptive": cover,
                "var_rate": float(hits.mean()), "alpha_now": state["0.9"]["alpha_end"],
                "reason": (f"coverage: {int(hits[-since:].sum())} of the last {since} days below the adaptive 5 % "
                           f"VaR; Bernoulli CUSUM crossed {chart['h']:.2f} (in-control ARL {self.cusum_arl:.0f} days)")
                if crossed else None}

    # the sequential charts: the loss differential of the deployed forecasts against the random walk (the
    # model got worse than the benchmark), and the random walk's own squared error (the market's variance moved)
    CHARTS = {"differential": ("live loss differential vs the naive benchmark",
                               lambda pred, bench, y: (pred - y) ** 2 - (bench - y) ** 2),
              "variance": ("naive benchmark's squared error (the market's variance, for returns)",
                           lambda pred, bench, y: (bench - y) ** 2)}

    def _fit_cusum(self, frame: pd.DataFrame, meta) -> dict:
        """Each chart calibrated on the champion's validation and holdout rows (out of sample for its weights; the
        newest rows before every day it is then charted on: with a year's holdout, the validation rows alone ended
        a year before deployment, and the 2008-2018 S&P replay raised 2.0 alarms per calm year against them)."""
        ref = frame[(frame["date"] >= pd.Timestamp(meta.cuts["val_start"])) &
                    (frame["date"] <= pd.Timestamp(meta.cuts["end"]))]
        return self._calibrate(ref["pred"].to_numpy(), ref["bench"].to_numpy(), ref["target"].to_numpy(),
                               arl0=self.cusum_arl)

    def _realised(self) -> int:
        """Timeline rows whose target is realised (``horizon`` days after their date)."""
        return max(0, len(self.rows) - (self.cfg.window.horizon - 1))

    def _chart_arrays(self, recs: list) -> tuple:
        return tuple(np.array([r[k] for r in recs], dtype=float) for k in ("prediction", "random_walk", "actual"))

    def timeline(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def write_report(self, out_dir: Path, *, seconds: float) -> dict:
        """timeline.parquet, replay.md, live_error.png and summary.json under ``out_dir``."""
        return write_replay_report(self, out_dir, seconds=seconds)


# -- the calendar of sub-runs every replay shares (the reports are in r2n2.ops.reports) -------------------------
def period_ends(steps: list, every: int) -> list:
    """The steps that close each scheduled retrain period of ``every`` steps, the last step always included."""
    ends = list(steps[every - 1::every])
    return ends if ends and ends[-1] == steps[-1] else [*ends, steps[-1]]
