"""Use case ``volatility``: the next-day (``window.horizon: 1``) or h-day log realised variance of the S&P 500
from daily OHLC (the built-in ``arch`` data of ``stocks``, or a user's file with open/high/low/close), with
transfer to NASDAQ. A thin series case: monitor, promotion gate and replay are the series kind's, judged against
this case's naive forecast (``naive_forecast``).

**Range estimator: Garman–Klass with the overnight term** (Garman & Klass 1980, eq. for σ̂²₅ plus the squared
opening gap; the one-day form of Yang & Zhang 2000's decomposition), one value per day::

    v_t = ln(O_t / C_{t-1})^2 + 0.5 ln(H_t / L_t)^2 - (2 ln 2 - 1) ln(C_t / O_t)^2

Why not Yang–Zhang: YZ is a *multi-day* estimator. Its overnight and open-to-close parts are sample variances
over a window of n days, weighted by a k chosen for n; it has no one-day form. A window estimate as the target of
a next-day forecast would share n - 1 days with the proxy known on the forecast's date (the target overlaps the
features) and smooth away the day-to-day variation the forecast is about. GK plus the squared gap uses the same
two parts (the overnight jump and the intraday range) for one day. YZ's other advantage, independence from the
drift, matters for trending prices over long windows; the daily drift of an index (about 3e-4) is tiny against its
range (about 1e-2). The GK intraday part is at least 0.114 ln(H/L)^2 >= 0 (because |ln C/O| <= ln H/L), so the
proxy is never negative. It is 0 only when H = L and the open did not gap, so the log is floored at
``window.floor``. Data note: in the built-in S&P 500 the open equals the previous close on about 97 % of days
1999-2005 (from 2006 on almost never), so there the gap term is 0 and the range starts at the previous close. With
the gap term the proxy estimates the close-to-close variance in both eras; an intraday-only estimator (Parkinson,
Rogers–Satchell) would change meaning in 2006.

Target: ``y_t = ln(mean(v_{t+1..t+h}))``. Features at t (known at t's close): ``ln v_t`` and the logs of the 5-
and 22-day means of v (the HAR aggregates), the close-to-close and overnight log returns. **Naive**: the log of
the mean proxy of the last h days, ``ln(mean(v_{t-h+1..t}))`` (h = 1: yesterday's log proxy, the random walk of
the log variance), used by monitor, gate and replay.

Baselines on the same days, refitted every ``evaluate.refit_every`` trading days on an expanding window that
ends the day before the block's first forecast date: never fitted on a day at or after a forecast's date, and
filtered through each forecast's date only. They are HAR on the log proxy (``arch`` HARX, lags 1, 5, 22; mean of
its 1..h-step forecasts), GARCH(1,1) and GJR-GARCH(1,1,1) with Student-t errors on percent close-to-close
returns (mean of the 1..h-step variance forecasts), and EWMA RiskMetrics λ = 0.94 (zero mean, flat forecast).

**Log vs level, the same rule for every forecaster** (neural or not): take each forecaster's raw forecast on the
log scale, g (the log of the variance for GARCH/GJR/EWMA). The log forecast is ``g + a`` with
``a = mean(y - g)`` and the variance forecast is ``b exp(g)`` with ``b = mean(exp(y - g))`` (QLIKE's in-sample
optimal scale), both fitted on the validation period's out-of-sample forecasts, never on test. This matters
because the log of a mean variance forecast overstates E[ln v] (Jensen: about s^2 / 2 for a log-normal proxy), the
exponential of a log forecast understates E[v], and GARCH models the variance of close-to-close returns while
the range proxy is a different, downward-biased measure of it. Uncalibrated scores (a = 0, b = 1) are reported
beside them (``*_raw``).

Scores: MSE of the log variance and QLIKE on the level, ``L = v / f - ln(v / f) - 1`` (Patton 2011). QLIKE is
robust to the noise of the proxy: it ranks forecasts as the true variance would. MSE on logs is not, so with a
noisy range proxy its ranking can differ. Diebold–Mariano on each loss, and the model confidence set
(``arch.bootstrap.MCS``) over every forecaster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.window import window_splits
from ..errors import ConfigError, DataError
from ..evaluate.engine import (ablation_check, ablation_lines, across_seeds, adjust_families, comparison_table,
                               comparison_text, evaluate_heads, families_lines, head_table, seed_rows, seed_table)
from ..evaluate.plots import plot_forecast, plot_learning_curves, write_csv
from ..evaluate.report import fmt, history
from ..evaluate.stats import diebold_mariano, mde_block, verdict
from ..evaluate.econometric import calibrate, econometric_forecasts, model_confidence_set, qlike
from ..io import write_json_atomic, write_text_atomic
from .base import Log, check_range, window_meta_of, write_predict_calibration
from .series import (SeriesCase, SeriesConfig, SeriesMeta, SeriesWindowConfig, check_calendar, check_series_window,
                     load_builtin_stocks, series_frame)

__all__ = ["VolatilityCase", "VolatilityConfig", "garman_klass", "volatility_features"]

FEATURES = ["logvar_1d", "logvar_5d", "logvar_22d", "ret_close", "ret_overnight"]
HISTORY = 22                 # days of proxies behind the first usable row (the 22-day HAR aggregate)
GK_C = 2 * math.log(2) - 1   # 0.386: Garman–Klass's weight of the squared open-to-close return
OHLC = ("open", "high", "low", "close")


@dataclass
class VolatilityWindowConfig(SeriesWindowConfig):
    lookback: int = 22                   # trading days per window (a month: the longest HAR aggregate)
    horizon: int = 1                     # target: log mean variance proxy over the next `horizon` days (1 or 5)
    floor: float = 1e-8                  # daily variance floor before the log (1 bp daily volatility squared)
    pretrain_entity: str = "sp500"       # the main model's series (default: the first entity)
    finetune_entity: str | None = "nasdaq"  # transfer target (null: no fine-tuning)


@dataclass
class VolatilityEvaluateConfig:
    seeds: int = 1                       # models and neural baselines trained with train.seed + 0..seeds-1
    plots: bool = True
    refit_every: int = 21                # trading days between refits of HAR / GARCH / GJR (expanding window)
    mcs_size: float = 0.1                # model confidence set: holds the best forecaster with prob. 1 - size
    bootstrap: int = 2000                # MCS bootstrap resamples (stationary bootstrap)
    seed: int = 0                        # MCS bootstrap seed
    periods_per_year: int = 252          # this calendar's trading days a year (annualised volatility in plots)


@dataclass
class VolatilityConfig(SeriesConfig):
    window: VolatilityWindowConfig = field(default_factory=VolatilityWindowConfig)
    evaluate: VolatilityEvaluateConfig = field(default_factory=VolatilityEvaluateConfig)


@dataclass
class VolatilityMeta(SeriesMeta):
    estimator: str = "garman_klass_overnight"
    floor: float = 1e-8

    kind = "volatility"


# ---------------------------------------------------------------------------------------------- features
def garman_klass(open_, high, low, close, prev_close) -> np.ndarray:
    """Daily variance proxy: squared overnight log return + Garman–Klass on the day's range (module docstring)."""
    o, h, lo, c, p = (np.asarray(x, dtype=float) for x in (open_, high, low, close, prev_close))
    return np.log(o / p) ** 2 + 0.5 * np.log(h / lo) ** 2 - GK_C * np.log(c / o) ** 2


def volatility_features(df: pd.DataFrame, *, horizon: int, floor: float) -> pd.DataFrame:
    """One entity's OHLC prices (sorted by date) -> per day: the proxy ``v``, the features, the target
    ``ln mean(v_{t+1..t+h})``, the naive forecast ``ln mean(v_{t-h+1..t})`` and the target's date. The first
    ``HISTORY`` rows lack a 22-day aggregate and the last ``horizon`` a target (NaN; the caller drops them)."""
    close = df["close"].to_numpy(float)
    prev = np.concatenate([[np.nan], close[:-1]])
    v = pd.Series(np.maximum(garman_klass(df["open"], df["high"], df["low"], close, prev), floor))
    dates = pd.Series(df["date"].to_numpy())
    out = pd.DataFrame({"date": dates, "proxy": v.to_numpy()})
    out["logvar_1d"] = np.log(v.to_numpy())
    out["logvar_5d"] = np.log(v.rolling(5).mean().to_numpy())
    out["logvar_22d"] = np.log(v.rolling(HISTORY).mean().to_numpy())
    out["ret_close"] = np.log(close / prev)
    out["ret_overnight"] = np.log(df["open"].to_numpy(float) / prev)
    out["target"] = np.log(v.rolling(horizon).mean().shift(-horizon).to_numpy())  # mean of t+1 .. t+h
    out["naive"] = np.log(v.rolling(horizon).mean().to_numpy())                    # mean of t-h+1 .. t
    out["target_date"] = dates.shift(-horizon).to_numpy()
    return out


def _require_ohlc(df: pd.DataFrame, name: str) -> None:
    missing = [c for c in OHLC if c not in df]
    if missing:
        raise DataError(f"the {name} case needs daily open, high, low and close; the data lacks "
                        f"{', '.join(missing)}. Map them with {name}.data.columns, e.g. {{open: Open, high: High}}.")


def volatility_table(df: pd.DataFrame, *, lookback: int, horizon: int, floor: float, cuts: dict) -> pd.DataFrame:
    """Long OHLC prices -> one row per entity and day with features, target and the split of the window ending
    there (the same calendar rule as ``r2n2.data.window.series_table``)."""
    frames = []
    for entity, part in df.groupby("entity", sort=False):
        f = volatility_features(part.sort_values("date").reset_index(drop=True), horizon=horizon, floor=floor)
        f = f.iloc[HISTORY:len(f) - horizon].reset_index(drop=True)
        if len(f) < lookback:
            continue
        bad = f[FEATURES + ["target"]].isna().any(axis=1) | ~np.isfinite(f[FEATURES + ["target"]]).all(axis=1)
        if bad.any():
            raise DataError(f"entity {str(entity)[:80]!r}: non-finite volatility features at "
                            f"{pd.Timestamp(f.loc[bad, 'date'].iloc[0]).date()} (a zero or missing price?).")
        dt = f["date"].to_numpy().dtype
        first = pd.Series(f["date"].to_numpy()).shift(lookback - 1).to_numpy()
        cv = {k: np.datetime64(pd.Timestamp(v), "us").astype(dt) for k, v in cuts.items()}
        split = window_splits(first, f["target_date"].to_numpy(), cv)
        split[:lookback - 1] = ""
        f["split"] = split
        f.insert(0, "entity", str(entity))
        frames.append(f)
    if not frames:
        raise DataError(f"no entity has enough rows for one window ({HISTORY} days of history + lookback).")
    return pd.concat(frames, ignore_index=True)


def _sq(y, f):
    return (np.asarray(y, dtype=float) - np.asarray(f, dtype=float)) ** 2


def _score(y, g, cal) -> dict:
    v = np.exp(y)
    return {"mse_log": float(np.mean(_sq(y, g + cal["a"]))), "qlike": float(np.mean(qlike(v, cal["b"] * np.exp(g)))),
            "mse_log_raw": float(np.mean(_sq(y, g))), "qlike_raw": float(np.mean(qlike(v, np.exp(g)))),
            "log_intercept": cal["a"], "level_factor": cal["b"], "n": int(len(y))}


def _losses(y, g, cal) -> dict[str, np.ndarray]:
    return {"mse_log": _sq(y, g + cal["a"]), "qlike": qlike(np.exp(y), cal["b"] * np.exp(g))}


# ---------------------------------------------------------------------------------------------- the case
class VolatilityCase(SeriesCase):
    name = "volatility"
    config_cls = VolatilityConfig
    meta_cls = VolatilityMeta
    builtin = load_builtin_stocks
    naive_name = "naive (last days' log variance proxy)"
    headline_metrics = ("mse_log", "qlike", "mse_log_raw", "qlike_raw")
    main_baseline = "har"
    benchmark = ("naive", "qlike", False)  # the last days' log proxy
    plots = (("forecast.csv", "linear", "date", ["actual", "forecast", "har"]),)
    predict_warmup = HISTORY  # rows 0 .. 21 have no 22-day mean of the proxy (row 0's proxy needs the close before it)
    predict_warmup_why = (f"the first {HISTORY} rows have no {HISTORY}-day mean of the Garman-Klass variance yet, "
                          "and the first proxy needs the close before it")

    def check_config(self, cfg: VolatilityConfig, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        if not cfg.window.floor > 0:
            raise ConfigError(f"{prefix}.window.floor must be > 0, got {cfg.window.floor}.")
        if cfg.model.entities:
            raise ConfigError(f"{prefix}.model.entities must be false: the volatility case forecasts one series "
                              "at a time.")
        if cfg.evaluate.refit_every < 1 or cfg.evaluate.bootstrap < 1:
            raise ConfigError(f"{prefix}.evaluate.refit_every and bootstrap must be >= 1.")
        check_range(prefix, "evaluate.mcs_size", cfg.evaluate.mcs_size, 0, 1, lo_open=True)
        check_calendar(cfg.evaluate, prefix)

    def naive_forecast(self, rows: pd.DataFrame, meta=None) -> np.ndarray:
        """The log of the mean proxy of the last h days (h = 1: yesterday's log variance proxy), known at t."""
        return rows["naive"].to_numpy(float)

    def read_source(self, cfg: VolatilityConfig) -> pd.DataFrame:
        df = super().read_source(cfg)
        _require_ohlc(df, self.name)
        return df

    # -- windows: the kind's, on this case's table ------------------------------------------------
    def window_table(self, cfg: VolatilityConfig, df: pd.DataFrame, cuts: dict) -> tuple[pd.DataFrame, list[str]]:
        _require_ohlc(df, self.name)
        w = cfg.window
        return volatility_table(df, lookback=w.lookback, horizon=w.horizon, floor=w.floor, cuts=cuts), list(FEATURES)

    def meta_fields(self, cfg: VolatilityConfig) -> dict:
        return {"target": "logvar", "floor": cfg.window.floor}

    # -- evaluate --------------------------------------------------------------------------------
    def evaluate(self, cfg: VolatilityConfig, data, models: dict, paths, log: Log) -> dict:
        e, h = cfg.evaluate, data.meta.horizon
        main = _role(cfg, data, "pretrain", {"model": models["model"], **models.get("baselines", {})}, log)
        m = {"estimator": data.meta.estimator, "horizon": h, "model": main["scores"]["model"],
             "baselines": {k: v for k, v in main["scores"].items() if k != "model"},
             "test_period": main["period"], "refits": main["refits"],
             "mcs": _mcs(main["losses"], e), "calibration_period": main["calibration_period"]}
        comps = _compare(main, "model", [k for k in main["scores"] if k != "model"], h)
        m["seeds"], sc = _seed_table(models.get("seeds", {}), main, "model", ["no_relational"])
        comps += sc
        if "finetuned" in models and "scratch" in models:
            tgt = _role(cfg, data, "target", {"finetuned": models["finetuned"], "scratch": models["scratch"]}, log)
            m["finetuned"], m["scratch"] = tgt["scores"]["finetuned"], tgt["scores"]["scratch"]
            m["target_baselines"] = {k: v for k, v in tgt["scores"].items() if k not in ("finetuned", "scratch")}
            m["target_period"], m["target_mcs"] = tgt["period"], _mcs(tgt["losses"], e)
            comps += _compare(tgt, "finetuned", [k for k in tgt["scores"] if k != "finetuned"], h)
            m["transfer_seeds"], sc = _seed_table(models.get("transfer_seeds", {}), tgt, "finetuned", ["scratch"])
            comps += sc
        if models["model"][0].config.distribution != "none":  # quantiles of the log variance, conformal on val
            block, m["distribution_baselines"], dc = _distribution(main, models, h)
            m["model"].update(block)
            comps += dc
        m["comparisons"] = comps
        m["families"] = adjust_families(comps, m["baselines"])
        m["ablations"] = ablation_check(m, models.get("baselines", {}), self.benchmark)
        m["power"] = {"alpha": 0.05, "power": 0.8, **{k: mde_block(comps, k) for k in ("mse_log", "qlike", "crps")
                                                      if k != "crps" or "crps" in m["model"]}}
        write_json_atomic(m, paths.reports / "metrics.json")
        write_predict_calibration(paths, None)  # point forecasts: predict applies nothing
        if e.plots:
            _plots(main, data, models, paths, e.periods_per_year)
        write_text_atomic(_report(m, data), paths.reports / "report.md")
        return m

    def predict(self, model, meta: VolatilityMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        """Log variance forecasts (``forecast_logvar_<h>d``, uncalibrated: exp of it is a median-type variance
        forecast; the report's ``level_factor`` turns it into a mean one) and the naive forecast, for every day
        with 22 days of proxies and a full window behind it (N rows of an entity give N - 21 - lookback
        forecasts). Each row: ``origin_date`` (the last input day), ``target_date`` (the last of the h days it
        forecasts: the input's h-th next trading day, business days past its end) and ``horizon_days``; a model
        with a distribution head adds its log-variance quantiles ``q<level>`` (before the report's conformal
        offsets)."""
        prices = self.read_input(cfg, input_path)
        _require_ohlc(prices, self.name)
        frames = []
        for entity, part in prices.groupby("entity", sort=False):
            f = volatility_features(part.sort_values("date").reset_index(drop=True), horizon=meta.horizon,
                                    floor=meta.floor).iloc[HISTORY:].reset_index(drop=True)
            if len(f) < meta.lookback:
                raise DataError(f"entity {str(entity)[:80]!r} has {len(part)} rows; a forecast needs at least "
                                f"{HISTORY + meta.lookback}.")
            out = series_frame(model, meta, f, naive=self.naive_forecast)
            frames.append(pd.DataFrame({"entity": str(entity), "origin_date": out["date"],
                                        "target_date": _target_dates(pd.DatetimeIndex(f["date"]), out["date"],
                                                                     meta.horizon),
                                        "horizon_days": meta.horizon,
                                        f"forecast_logvar_{meta.horizon}d": out["pred"],
                                        f"naive_logvar_{meta.horizon}d": out["bench"],
                                        **{c: out[c] for c in out.columns if c.startswith("q")}}))
        return pd.concat(frames, ignore_index=True)


def _target_dates(calendar: pd.DatetimeIndex, origin, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon``-th trading day after each origin in the input's own calendar; business days past its end."""
    pos = calendar.get_indexer(pd.DatetimeIndex(origin)) + horizon
    last = len(calendar) - 1
    return pd.DatetimeIndex([calendar[p] if p <= last else calendar[-1] + pd.offsets.BDay(int(p - last))
                             for p in pos])


# ---------------------------------------------------------------------------------------------- scoring
def _rows(data, role: str) -> pd.DataFrame:
    t = data.table
    return t[t["entity"] == data.key(role)].sort_values("date").reset_index(drop=True)


def _neural(model, ck: dict, rows: pd.DataFrame, dates: dict) -> dict[str, np.ndarray]:
    """The kind's scorer (``series_frame``) -> the model's log forecasts on each split's dates."""
    pred = series_frame(model, window_meta_of(ck), rows).set_index("date")["pred"]
    return {s: pred.reindex(d).to_numpy(float) for s, d in dates.items()}


def _role(cfg, data, role: str, neural: dict, log: Log) -> dict:
    """Every forecaster's raw log forecasts on one entity's validation and test days, calibrated on validation
    and scored on test: {"y", "raw", "cal", "scores", "losses", "period", "refits", "rows", "dates"}."""
    rows = _rows(data, role)
    split = rows["split"].to_numpy()
    idx = {s: np.flatnonzero(split == s) for s in ("val", "test")}
    dates = {s: rows["date"].to_numpy()[i] for s, i in idx.items()}
    y = {s: rows["target"].to_numpy(float)[i] for s, i in idx.items()}
    first, last = int(idx["val"][0]), int(idx["test"][-1])
    log(f"{data.key(role)}: HAR / GARCH-t / GJR-t refits every {cfg.evaluate.refit_every} days, "
        f"{rows['date'].iloc[first].date()} .. {rows['date'].iloc[last].date()}")
    econ = econometric_forecasts(rows, first, last, horizon=data.meta.horizon, refit_every=cfg.evaluate.refit_every,
                                history=HISTORY)
    raw = {name: _neural(mdl, ck, rows, dates) for name, (mdl, ck) in neural.items()}
    raw["naive"] = {s: rows["naive"].to_numpy(float)[i] for s, i in idx.items()}
    for name in ("har", "garch_t", "gjr_garch_t", "ewma"):
        col = econ[name].to_numpy(float)
        raw[name] = {s: col[i - first] for s, i in idx.items()}
    cal = {k: calibrate(y["val"], g["val"]) for k, g in raw.items()}
    scores = {k: _score(y["test"], g["test"], cal[k]) for k, g in raw.items()}
    losses = {k: _losses(y["test"], g["test"], cal[k]) for k, g in raw.items()}
    ahead = int((econ["fit_through"].to_numpy() >= econ["date"].to_numpy()).sum())
    td = pd.DatetimeIndex(dates["test"])
    vd = pd.DatetimeIndex(dates["val"])
    return {"y": y, "raw": raw, "cal": cal, "scores": scores, "losses": losses, "rows": rows, "dates": dates,
            "period": {"entity": data.key(role), "start": str(td.min().date()), "end": str(td.max().date()),
                       "n": int(len(td))},
            "calibration_period": {"start": str(vd.min().date()), "end": str(vd.max().date()), "n": int(len(vd))},
            "refits": {"every": cfg.evaluate.refit_every, "n": int(math.ceil((last - first + 1) /
                                                                            cfg.evaluate.refit_every)),
                       "look_ahead_rows": ahead}}


DIST_BASELINES = ("har", "gjr_garch_t", "naive")  # point forecasts made distributions by their own val residuals


def _quantile_frames(model, ck: dict, r: dict) -> dict[str, np.ndarray]:
    """A distribution head's log-variance quantiles (n, K) on each split's days (``series_frame``'s q<level>)."""
    frame = series_frame(model, window_meta_of(ck), r["rows"]).set_index("date")
    cols = [f"q{t:g}" for t in model.config.quantiles]
    return {s: frame[cols].reindex(d).to_numpy(float) for s, d in r["dates"].items()}


def _distribution(r: dict, models: dict, horizon: int) -> tuple[dict, dict, list[dict]]:
    """The forecast distribution of the log variance, when ``model.distribution`` is quantile or student_t: the
    engine's :func:`r2n2.evaluate.engine.evaluate_heads` on the test days: each head's quantiles (the model's,
    and the ablation's when it has one) widened by a split-conformal offset fitted on the validation days (never
    test), adaptive conformal for next-day targets; beside HAR, GJR-GARCH-t and the naive forecast (calibrated
    log forecasts) plus the empirical quantiles of their own validation residuals. Diebold–Mariano on CRPS
    against each. (No VaR backtests: a quantile of the variance is no Value-at-Risk.)"""
    model = models["model"][0]
    levels = list(model.config.quantiles)
    y_val, y = r["y"]["val"], r["y"]["test"]
    heads = {}
    for name, (mdl, c) in {"model": models["model"], **models.get("baselines", {})}.items():
        if mdl.config.distribution != "none":
            q = _quantile_frames(mdl, c, r)
            heads[name] = (q["val"], y_val, q["test"])
    points = {}
    for name in DIST_BASELINES:
        f_val, f_test = (r["raw"][name][s] + r["cal"][name]["a"] for s in ("val", "test"))
        points[name] = f_test[:, None] + np.quantile(y_val - f_val, levels)[None, :]
    out = evaluate_heads(y, levels, heads, points, horizon=horizon, online=True)
    cp = r["calibration_period"]
    block = {**out["block"], "distribution": model.config.distribution}
    block["conformal"] |= {"start": cp["start"], "end": cp["end"]}
    return block, out["scores"], out["comparisons"]


def _distribution_report(m: dict) -> list[str]:
    d = m["model"]
    rows = {f"model ({d['distribution']}, split conformal)": d, "model (adaptive conformal)": d.get("aci"),
            "model (before conformal)": d["uncalibrated"],
            **{NAMES.get(k, k) + ("" if k in m["baselines"] and k not in DIST_BASELINES else
                                   " + its validation residuals' quantiles"): v
               for k, v in m.get("distribution_baselines", {}).items()}}
    crps = [c for c in m["comparisons"] if c["metric"] == "crps" and c["a"] == "model"]
    return ["## Forecast distribution of the log variance", "",
            f"Quantiles at {', '.join(f'{t:g}' for t in d['levels'])} of the log proxy; the model's central "
            "intervals widened by a split-conformal offset fitted on the validation days only "
            f"({d['conformal']['start']} to {d['conformal']['end']}, {d['conformal']['n']} days; the ablation's "
            "likewise). CRPS: scoringrules' quantile CRPS over these levels. The point forecasters become "
            "distributions by adding the empirical quantiles of their own validation residuals (calibrated log "
            "forecasts).", "", *head_table(rows), "",
            "The model minus each, CRPS (Diebold–Mariano, HAC, two-sided; negative favours the model):", "",
            comparison_table(crps, names=NAMES, note=False), ""]


def _compare(r: dict, a: str, others: list[str], horizon: int) -> list[dict]:
    """``a`` vs each of ``others`` on the test days: Diebold–Mariano on the calibrated MSE-log and QLIKE."""
    y, raw, cal = r["y"]["test"], r["raw"], r["cal"]
    out = []
    for b in others:
        fa, fb = raw[a]["test"] + cal[a]["a"], raw[b]["test"] + cal[b]["a"]
        c = diebold_mariano(y, fa, fb, a=a, b=b, horizon=horizon, metric="mse_log")
        q = diebold_mariano(np.exp(y), cal[a]["b"] * np.exp(raw[a]["test"]), cal[b]["b"] * np.exp(raw[b]["test"]),
                            a=a, b=b, criterion=qlike, metric="qlike", horizon=horizon)
        for x in (c, q):
            x["verdict"] = verdict(x, higher_is_better=False)
            out.append(x)
    return out


def _mcs(losses: dict[str, dict[str, np.ndarray]], e) -> dict:
    return model_confidence_set(losses, ("mse_log", "qlike"), size=e.mcs_size, reps=e.bootstrap, seed=e.seed)


def _seed_table(families: dict, r: dict, a: str, others: list[str]) -> tuple[dict, list]:
    """Per neural family: mean, sd, n over seeds of the calibrated MSE-log and QLIKE (each seed calibrated on
    validation); ``a`` vs each of ``others`` on both losses, paired by seed (the engine's across-seed tests; test
    days in blocks of 10)."""
    per, daily = {}, {}
    for name, fam in families.items():
        per[name], daily[name] = [], []
        for mdl, ck in fam:
            g = _neural(mdl, ck, r["rows"], r["dates"])
            cal = calibrate(r["y"]["val"], g["val"])
            per[name].append(_score(r["y"]["test"], g["test"], cal))
            daily[name].append(_losses(r["y"]["test"], g["test"], cal))
    comps = []
    for k in ("mse_log", "qlike"):
        losses = {n: np.stack([x[k] for x in v]) for n, v in daily.items() if v}  # (seeds, days)
        comps += across_seeds(losses, lambda d, ii: d[:, ii].mean(1), a=a, others=others, metric=k,
                              higher_is_better=False, block=10.0)
    return seed_rows(per, ("mse_log", "qlike")), comps


def _plots(r: dict, data, models: dict, paths, ppy: int) -> None:
    plots = paths.reports / "plots"
    cal, raw = r["cal"], r["raw"]
    d = pd.DatetimeIndex(r["dates"]["test"])
    fc = raw["model"]["test"] + cal["model"]["a"]
    har = raw["har"]["test"] + cal["har"]["a"]
    write_csv(pd.DataFrame({"date": d.strftime("%Y-%m-%d"), "actual": r["y"]["test"], "forecast": fc, "har": har}),
              plots / "forecast.csv")
    # annualised volatility in %, the variance forecast on its calibrated level (b exp(raw)): the kind's plot
    # draws a zero line, right for returns, a floor here (on the log variance scale it squashed the axis)
    def vol(var):
        return 100 * np.sqrt(ppy * var)

    plot_forecast(d, vol(np.exp(r["y"]["test"])), vol(cal["model"]["b"] * np.exp(raw["model"]["test"])),
                  plots / "forecast.png", ylabel=f"annualised volatility, %, {data.meta.horizon} d ahead",
                  title=f"{data.key('pretrain')}: test-period volatility forecast vs the range proxy")
    histories = {k: history(models[k][1]) for k in ("model", "finetuned", "scratch") if k in models}
    histories.update({k: history(v[1]) for k, v in models.get("baselines", {}).items()})
    write_json_atomic([{"model": k, **x} for k, h in histories.items() for x in h], plots / "learning_curves.json")
    plot_learning_curves(histories, plots / "learning_curves.png", title="volatility: learning curves (scaled MSE)")


# ---------------------------------------------------------------------------------------------- report
NAMES = {"model": "model (RNN + relational)", "no_relational": "same model, no relational module",
         "naive": "naive: last days' log proxy", "har": "HAR (HARX 1, 5, 22 on the log proxy)",
         "garch_t": "GARCH(1,1)-t", "gjr_garch_t": "GJR-GARCH(1,1,1)-t", "ewma": "EWMA RiskMetrics 0.94",
         "finetuned": "fine-tuned from the S&P 500 model", "scratch": "same architecture from scratch"}


def _table(scores: dict, mcs: dict, comps: list[dict], a: str, ablations: dict | None = None) -> list[str]:
    """The scores (and the model confidence sets), then the tests of ``a`` against each forecaster (the
    engine's comparison table: Diebold–Mariano on MSE-log and on QLIKE)."""
    lines = ["| forecaster | MSE-log | QLIKE | in MCS (MSE-log / QLIKE) | MSE-log raw | QLIKE raw |", "|---" * 6 + "|"]
    for k, s in scores.items():
        inc = " / ".join("yes" if k in mcs[x]["included"] else "no" for x in ("mse_log", "qlike"))
        lines.append(f"| {NAMES.get(k, k)} | {fmt(s['mse_log'])} | {fmt(s['qlike'])} | {inc} | "
                     f"{fmt(s['mse_log_raw'])} | {fmt(s['qlike_raw'])} |")
    tests = [c for c in comps if c["a"] == a and c["test"] == "diebold_mariano" and c["metric"] in ("mse_log", "qlike")]
    return lines + ["", comparison_table(tests, names=NAMES, ablations=ablations, note=False)]


_SEED_COLUMNS = [("mse_log", "MSE-log"), ("qlike", "QLIKE")]


def _verdicts(comps: list[dict], a: str, b: str, test: str = "diebold_mariano") -> str:
    v = {c["metric"]: c for c in comps if c["a"] == a and c["b"] == b and c["test"] == test}
    return "; ".join(f"{k}: {comparison_text(c)}" for k, c in v.items()) or "n/a"


def _report(m: dict, data) -> str:
    meta, tp = data.meta, m["test_period"]
    cp = m["calibration_period"]
    lines = [f"# Volatility report (log variance {meta.horizon} d ahead, lookback {meta.lookback})", "",
             f"Test period of **{tp['entity']}**: {tp['start']} to {tp['end']} ({tp['n']} days after the cut date "
             f"{meta.cuts['test_start']}); every row is scored on the same days. Proxy: Garman–Klass with the "
             f"overnight term (floor {meta.floor:g}). HAR / GARCH / GJR refitted every {m['refits']['every']} days on "
             f"an expanding window ending before each block ({m['refits']['n']} refits from the validation period "
             f"on; {m['refits']['look_ahead_rows']} forecasts fitted on a day at or after their date).", "",
             f"Scale rule for every forecaster: log forecast = raw + a, variance = b × exp(raw), a and b fitted on "
             f"the validation days {cp['start']} to {cp['end']} ({cp['n']}); `raw` columns: a = 0, b = 1. "
             "Differences are the model's loss minus the forecaster's (negative favours the model), Diebold–Mariano "
             "with a 95 % interval (two-sided); **tie** whenever it covers 0 or the p adjusted within its family "
             "(Holm) exceeds 0.05, and then no difference larger than its MDE (80 % power at α = 0.05, in loss "
             "units) was there to be seen. QLIKE is the loss robust to "
             "the proxy's noise "
             "(Patton 2011); MSE-log can rank forecasts differently with a noisy proxy.", ""]
    lines += _table({"model": m["model"], **m["baselines"]}, m["mcs"], m["comparisons"], "model", m.get("ablations"))
    mc = m["mcs"]
    lines += ["", f"Model confidence set at {1 - mc['qlike']['size']:.0%} (range statistic, stationary bootstrap): "
              f"MSE-log {{{', '.join(mc['mse_log']['included'])}}}; QLIKE {{{', '.join(mc['qlike']['included'])}}}.",
              "", "Relational module (model vs its ablation, seed 0): "
              f"{_verdicts(m['comparisons'], 'model', 'no_relational')}.", "", *ablation_lines(m), *families_lines(m)]
    if "crps" in m["model"]:
        lines += _distribution_report(m)
    lines += seed_table("Across seeds (mean ± sd, each seed calibrated on validation):", m.get("seeds", {}),
                        _SEED_COLUMNS, "volatility", names=NAMES)
    sv = _verdicts(m["comparisons"], "model", "no_relational", "two_way_bootstrap_seeds_items")
    if sv != "n/a":
        lines += [f"Relational module across seeds (two-way bootstrap over seeds and test days): {sv}.", ""]
    if "finetuned" in m:
        tt = m["target_period"]
        lines += [f"## Transfer to {tt['entity']}", "",
                  f"{tt['start']} to {tt['end']} ({tt['n']} days): the S&P 500 model fine-tuned on "
                  f"{tt['entity']}'s recent training windows vs the same architecture trained from scratch on the "
                  "same windows; the econometric baselines refitted on the target series.", ""]
        lines += _table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]},
                        m["target_mcs"], m["comparisons"], "finetuned")
        lines += [""] + seed_table("Transfer across seeds (mean ± sd):", m.get("transfer_seeds", {}), _SEED_COLUMNS,
                                   "volatility", names=NAMES)
        sv = _verdicts(m["comparisons"], "finetuned", "scratch", "two_way_bootstrap_seeds_items")
        if sv != "n/a":
            lines += [f"Fine-tuned vs scratch across seeds (two-way bootstrap over seeds and test days): {sv}.", ""]
    lines += ["Plots: `plots/forecast.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)
