"""The cross-section kind, complete (the ``panel`` case is its name, built-in data and defaults): a panel of price
series ranked against each other at each date. Its config (``CrossSectionConfig``), its windows (``build_windows``
on ``panel_table``: cross-sectionally z-scored features, the forward return and its cross-sectional z-score), its
data, its one scorer (``score_matrix``: dates x stocks, used by evaluate, monitor and promotion), its monitor
signals, and its evaluation by the daily rank IC and a long-short portfolio (loads checkpoints, never trains).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from .base import (CaseConfig, CaseData, Log, MonitorSignals, check_choice, predict_batches, window_meta_of,
                   write_predict_calibration)
from ..config import TrainConfig
from ..data.validate import PriceChecks
from ..data.window import (EntityWindows, StockBatches, StockWindows, fit_scalers, load_entity_split, scale_features,
                           split_summary, window_splits)
from ..errors import ConfigError, DataError
from ..evaluate.baselines import equal_weight_returns, momentum_scores, reversal_scores
from ..evaluate.distribution import student_t_quantiles
from ..evaluate.engine import (
    ablation_check, ablation_lines, across_seeds, adjust_families, comparison_table, evaluate_heads, families_lines,
    head_table, p_text, seed_rows, seed_table,
)
from ..evaluate.linear import RIDGE_ALPHAS, cross_stock_ridge
from ..evaluate.metrics import daily_rank_ic, rank_ic_summary
from ..evaluate.plots import plot_learning_curves, plot_lines, write_csv
from ..evaluate.report import fmt, history, md_table
from ..evaluate.stats import mde_block, minimum_detectable_effect, rank_ic_difference, verdict
from ..evaluate.trading import long_short_portfolio, performance, sharpe_difference
from ..io import write_json_atomic, write_parquet_atomic, write_text_atomic
from ..models.config import ModelConfig
from .prices import PriceCase, SeriesMeta, SeriesWindowConfig, calendar_cuts, check_calendar, check_series_window

__all__ = ["CrossSectionCase", "CrossSectionConfig", "CrossSectionWindowConfig", "CrossSectionEvaluateConfig",
           "PanelMeta", "PanelData", "PANEL_FEATURES", "panel_table", "pooled_windows", "evaluate_panel", "score_matrix", "predict_panel", "window_scores", "panel_monitor_frame"]

PANEL_FEATURES = ("ret_1d", "ret_5d", "ret_20d", "vol_20d")
RIDGE = "ridge_cross_stock"  # the linear competitor: each stock's ridge on every stock's lagged features

_SEED_KEYS = ("rank_ic", "rank_ic_tstat", "long_short_sharpe")
_SEED_COLUMNS = [("rank_ic", "rank IC"), ("rank_ic_tstat", "NW t"), ("long_short_sharpe", "long-short Sharpe")]

# Stock-windows per unshuffled (scoring) batch: validation, evaluation, monitoring and predict score many dates at
# once, and one batch of 256 dates x 500 stocks is 128,000 sequences, whose GRU working set alone is about 1.5 GB
# (input projections of every step). A memory knob only: at up to 32 stocks the 256 dates stay one batch, so the
# built-in 20-stock panel scores exactly as before; at 500 stocks a batch is 16 dates.
SCORING_WINDOWS = 8192


@dataclass
class PanelMeta(SeriesMeta):
    kind = "panel"


def panel_table(df: pd.DataFrame, *, lookback: int, horizon: int, cuts: dict,
                keep_unlabelled: bool = False) -> pd.DataFrame:
    """Long prices -> per entity and date: cross-sectionally z-scored features, the forward return, its
    cross-sectional z-score (the training target) and the calendar split of the window ending there."""
    wide = df.pivot(index="date", columns="entity", values="close").sort_index()
    logc = np.log(wide)
    feats = {"ret_1d": logc.diff(1), "ret_5d": logc.diff(5), "ret_20d": logc.diff(20),
             "vol_20d": logc.diff(1).rolling(20).std()}
    fwd = logc.shift(-horizon) - logc  # (T, N) log return over the next `horizon` days

    def cs_z(x: pd.DataFrame) -> pd.DataFrame:  # per date across stocks
        return x.sub(x.mean(axis=1), axis=0).div(x.std(axis=1).replace(0, np.nan), axis=0)

    long = {name: cs_z(x).stack(future_stack=True) for name, x in feats.items()}
    long["target"] = cs_z(fwd).stack(future_stack=True)
    long["fwd_return"] = fwd.stack(future_stack=True)
    long["close"] = wide.stack(future_stack=True)
    t = pd.DataFrame(long).reset_index()
    dates = wide.index.to_numpy()
    t["target_date"] = pd.Series(dates).shift(-horizon).to_numpy()[np.searchsorted(dates, t["date"].to_numpy())]
    t = t.dropna(subset=[*PANEL_FEATURES, "close", *([] if keep_unlabelled else ["target"])]).sort_values(["entity", "date"]).reset_index(drop=True)
    parts = []
    cut_values = {k: np.datetime64(pd.Timestamp(v), "us").astype(dates.dtype) for k, v in cuts.items()}
    for _, part in t.groupby("entity", sort=False):
        first = pd.Series(part["date"].to_numpy()).shift(lookback - 1).to_numpy()
        split = window_splits(first, part["target_date"].to_numpy(), cut_values)
        split[:lookback - 1] = ""
        parts.append(split)
    t["split"] = np.concatenate(parts) if parts else []
    return t[["entity", "date", *PANEL_FEATURES, "target", "fwd_return", "close", "target_date", "split"]]


class PanelData(CaseData):
    table_file = "features.parquet"

    def key(self, role: str) -> str | None:
        return "all" if role == "pretrain" else None  # no transfer target

    def rows(self, role: str, split: str) -> pd.DataFrame:
        return self.table[self.table["split"] == split].reset_index(drop=True)

    def batches(self, role: str, split: str | None, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0, entities: bool | None = None):
        entities = self.cfg.model.entities if entities is None else entities
        if entities:
            windows = load_entity_split(self.table, self.meta, split)
        else:  # each stock alone: one step sees as many stock-windows as a cross-sectional step (the same budget)
            windows = pooled_windows(self.table, self.meta, split)
            batch_size *= len(self.meta.entities)
        if len(windows) == 0:
            raise DataError(f"no {self.case.name} windows in the {split} split.")
        return panel_batches(windows, batch_size, shuffle=shuffle, seed=seed)

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        base = base or self.cfg.model
        return replace(base, input_size=len(self.meta.features), vocab_size=None, output_size=1, task="regression",
                       num_entities=len(self.meta.entities) if base.identity or base.entity_mixing else 0)


def panel_batches(windows, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> StockBatches:
    """Batches of ``batch_size`` windows (dates, for entity windows); unshuffled ones, which only score, hold at
    most ``SCORING_WINDOWS`` stock-windows. Training batches (shuffled) keep ``batch_size``: it is a
    hyperparameter there."""
    if not shuffle:
        width = len(windows.entities) if isinstance(windows, EntityWindows) else 1  # stock-windows per window
        batch_size = max(1, min(batch_size, SCORING_WINDOWS // width))
    return StockBatches(windows, batch_size, shuffle, seed)


def pooled_windows(table: pd.DataFrame, meta, split: str | None) -> StockWindows:
    """Every stock's windows in one pool (each stock alone): rows are entity-contiguous and the first
    ``lookback - 1`` rows of each stock belong to no split, so no window crosses two stocks."""
    labels = table["split"].to_numpy()
    ends = np.flatnonzero(labels == split) if split is not None else np.flatnonzero(labels != "")
    y = (table["target"].to_numpy(float) - meta.target_scaler["mean"]) / meta.target_scaler["scale"]
    return StockWindows(scale_features(table, meta), y, ends, meta.lookback)


def score_matrix(model, data, split: str | None) -> pd.DataFrame:
    """The model's scores (dates x entities) on every window of ``split``."""
    if model.config.entities:
        b = data.batches("pretrain", split, batch_size=256, entities=True)
        out = predict_batches(model, b)[:, :, 0]  # (n, E, 1) -> (n, E)
        w = b.windows
        return pd.DataFrame(out, index=pd.DatetimeIndex(w.dates[w.ends], name="date"),
                            columns=pd.Index(w.entities, name="entity"))
    windows = pooled_windows(data.table, data.meta, split)
    out = predict_batches(model, panel_batches(windows, 1024)).reshape(-1)
    rows = data.table.iloc[windows.ends]
    return pd.DataFrame({"date": rows["date"].to_numpy(), "entity": rows["entity"].to_numpy(), "s": out}) \
        .pivot(index="date", columns="entity", values="s")


def quantile_frame(model, data, split: str | None, *, labelled: bool = True) -> pd.DataFrame:
    """A distribution head's quantiles (``q<level>`` columns, on the target's scale: the cross-sectional z-score
    of the forward return) and the target, one row per (date, stock) of ``split`` (``labelled``: only rows with
    a finite target)."""
    cfg = model.config
    if cfg.entities:
        b = data.batches("pretrain", split, batch_size=256, entities=True)
        raw = predict_batches(model, b, distribution=True)[:, :, 0, :]  # (n, E, 1, P) -> (n, E, P)
        w = b.windows
        dates = np.repeat(w.dates[w.ends], len(w.entities))
        entities = np.tile(np.asarray(w.entities), len(w.ends))
        raw = raw.reshape(-1, raw.shape[-1])
    else:
        windows = pooled_windows(data.table, data.meta, split)
        raw = predict_batches(model, panel_batches(windows, 1024), distribution=True)[:, 0, :]  # (m, P)
        rows = data.table.iloc[windows.ends]
        dates, entities = rows["date"].to_numpy(), rows["entity"].to_numpy()
    q = student_t_quantiles(raw, cfg.quantiles) if cfg.distribution == "student_t" else raw
    ts = data.meta.target_scaler
    frame = pd.DataFrame(q * ts["scale"] + ts["mean"], columns=[f"q{t:g}" for t in cfg.quantiles])
    frame.insert(0, "entity", entities)
    frame.insert(0, "date", pd.DatetimeIndex(dates))
    target = data.table.set_index(["date", "entity"])["target"]
    frame["target"] = target.reindex(pd.MultiIndex.from_frame(frame[["date", "entity"]])).to_numpy(float)
    return frame[np.isfinite(frame["target"].to_numpy())].reset_index(drop=True) if labelled else frame


def _distribution(data, models: dict, horizon: int) -> tuple[dict, dict, list[dict]]:
    """The forecast distribution of each stock's cross-sectional z-score, when ``model.distribution`` is quantile
    or student_t: the engine's :func:`r2n2.evaluate.engine.evaluate_heads` on the (date, stock) test rows every
    forecaster shares: each head's intervals widened by a split-conformal offset fitted on its validation rows
    (never test), beside every neural baseline with a head and the training targets' empirical quantiles (the
    forecast that knows nothing of the stock or the day). Diebold–Mariano on CRPS over test dates (each date's
    mean over its stocks)."""
    model = models["model"][0]
    levels = list(model.config.quantiles)
    cols = [f"q{t:g}" for t in levels]
    heads = {"model": model, **{k: m for k, (m, _) in models.get("baselines", {}).items()
                                if m.config.distribution != "none"}}
    frames = {name: (quantile_frame(mdl, data, "val"), quantile_frame(mdl, data, "test")) for name, mdl in heads.items()}
    key = ["date", "entity"]
    common = frames["model"][1][key]
    for _, test in frames.values():  # every forecaster on the same (date, stock) rows
        common = common.merge(test[key], on=key)
    tests = {name: common.merge(test, on=key) for name, (_, test) in frames.items()}
    y = tests["model"]["target"].to_numpy()
    t = data.table
    train_targets = t.loc[t["split"] == "train", "target"].to_numpy(float)
    climate = np.quantile(train_targets[np.isfinite(train_targets)], levels)
    out = evaluate_heads(y, levels, {name: (val[cols].to_numpy(), val["target"].to_numpy(), tests[name][cols].to_numpy())
                                     for name, (val, _) in frames.items()},
                         {"unconditional": np.tile(climate, (len(y), 1))}, horizon=horizon,
                         groups=tests["model"]["date"].to_numpy())
    val_dates = frames["model"][0]["date"]
    block = {**out["block"], "distribution": model.config.distribution,
             "target": "cross-sectional z-score of the forward return", "n_rows": int(len(y))}
    block["conformal"] |= {"start": str(val_dates.min().date()), "end": str(val_dates.max().date())}
    return block, out["scores"], out["comparisons"]


def _distribution_report(m: dict) -> list[str]:
    d = m["model"]
    rows = {f"model ({d['distribution']}, split conformal)": d, "model (before conformal)": d["uncalibrated"],
            **{("training targets' empirical quantiles" if k == "unconditional" else k): v
               for k, v in m.get("distribution_baselines", {}).items()}}
    crps = [c for c in m["comparisons"] if c["metric"] == "crps"]
    return ["## Forecast distribution of each stock's cross-sectional z-score", "",
            f"Quantiles at {', '.join(f'{t:g}' for t in d['levels'])} of the training target (each stock's "
            f"forward return as a z-score across that date's stocks), {d['n_rows']} (date, stock) test rows; the "
            "central intervals widened by a split-conformal offset fitted on the validation rows only "
            f"({d['conformal']['start']} to {d['conformal']['end']}; each neural baseline likewise). CRPS: "
            "scoringrules' quantile CRPS over these levels.", "", *head_table(rows), "",
            "The model minus each, mean CRPS (Diebold–Mariano over test dates, each date's mean over its "
            "stocks; HAC, two-sided; negative favours the model):", "", comparison_table(crps, note=False), ""]


def _matrices(data) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    t = data.table
    close = t.pivot(index="date", columns="entity", values="close").sort_index()
    fwd = t.pivot(index="date", columns="entity", values="fwd_return").sort_index()
    next_day = np.log(close).shift(-1) - np.log(close)  # what a portfolio formed at t's close earns on t+1
    return close, fwd, next_day


def _signal_metrics(scores: pd.DataFrame, fwd: pd.DataFrame, next_day: pd.DataFrame, cfg, horizon: int):
    """(daily rank IC, {"net", "gross"} daily long-short returns, the row of scalar metrics) of one scorer. The
    portfolio trades ``evaluate.execution_lag`` days after the signal: with 1, scores known at t's close are
    traded at t+1's close and earn t+1 -> t+2 (no reversal at the signal's own close, where the bid-ask bounce
    flatters it). The rank IC is the signal's, unlagged."""
    ic = daily_rank_ic(scores, fwd)
    s = rank_ic_summary(ic, horizon=horizon, lags=cfg.evaluate.nw_lags)
    held = next_day.shift(-cfg.evaluate.execution_lag)  # (T, N) the return a portfolio formed from row t earns
    ppy = cfg.evaluate.periods_per_year
    ls = long_short_portfolio(scores, held.reindex(scores.index), k=cfg.evaluate.top_k,
                              cost_bps=cfg.evaluate.cost_bps, periods_per_year=ppy)
    gross = performance(ls["gross_returns"].to_numpy(), periods_per_year=ppy)
    return ic, {"net": ls["returns"], "gross": ls["gross_returns"]}, {
        "rank_ic": s["mean"], "rank_ic_tstat": s["tstat"], "rank_ic_pvalue": s["p_value"],
        "rank_ic_pvalue_sided": s["sided"], "rank_ic_mde": s["mde"],
        "rank_ic_hit_rate": s["hit_rate"], "long_short_annual_return": ls["annual_return"],
        "long_short_sharpe": ls["sharpe"], "long_short_sharpe_se": ls["sharpe_se"],
        "long_short_sharpe_gross": gross["sharpe"], "long_short_sharpe_gross_se": gross["sharpe_se"],
        "long_short_annual_return_gross": gross["annual_return"], "long_short_max_drawdown": ls["max_drawdown"],
        "turnover": ls["turnover"], "n_days": s["n"]}


def _sharpe_comparisons(rets: dict, a: str, others: list[str], ppy: int) -> list[dict]:
    """``a``'s long-short Sharpe ratio minus each of ``others``' (Ledoit–Wolf 2008 HAC test), net and gross,
    annualised with ``ppy`` periods a year."""
    out = []
    for b in others:
        for label in ("net", "gross"):
            c = sharpe_difference(rets[a][label].to_numpy(), rets[b][label].reindex(rets[a][label].index)
                                  .fillna(0.0).to_numpy(), a=a, b=b, metric=f"long_short_sharpe_{label}",
                                  periods_per_year=ppy)
            c["verdict"] = verdict(c, higher_is_better=True)
            out.append(c)
    return out


def _power(rows: dict, comparisons: list[dict], n: int) -> dict:
    """What each panel test could have seen (80 % power, alpha 0.05): the model's mean rank IC and long-short
    Sharpe ratio against 0 (Newey–West; Lo 2002 standard error) and every comparison's ``mde``."""
    mo = rows["model"]
    own = {"rank_ic": (mo["rank_ic_mde"], "newey_west"),
           "long_short_sharpe_net": (minimum_detectable_effect(mo["long_short_sharpe_se"]), "lo_2002"),
           "long_short_sharpe_gross": (minimum_detectable_effect(mo["long_short_sharpe_gross_se"]), "lo_2002")}
    out = {"alpha": 0.05, "power": 0.8, "n": n}
    for metric, (mde, test) in own.items():
        out[metric] = {"model vs 0": {"mde": mde, "sided": "two-sided", "test": test},
                       **mde_block(comparisons, metric)}
    return out


def _plots(cfg, rets: dict, dates, models: dict, plots, name: str) -> None:
    cum = pd.DataFrame({k: np.cumsum(np.log1p(rets[k]["net"].reindex(dates).fillna(0.0).to_numpy()))
                        for k in ("model", RIDGE, "reversal_1d", "momentum_12_1", "equal_weight")}, index=dates)
    write_csv(cum.reset_index().assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d")), plots / "cumulative.csv")
    plot_lines(dates, {k: cum[k].to_numpy() for k in cum}, plots / "cumulative.png",
               title=f"{name}: top-{cfg.evaluate.top_k} minus bottom-{cfg.evaluate.top_k}, net of "
                     f"{cfg.evaluate.cost_bps:g} bp (test period; equal weight is long only)",
               ylabel="cumulative log return")
    histories = {"model": history(models["model"][1]), **{n: history(m[1]) for n, m in models.get("baselines", {}).items()}}
    plot_learning_curves(histories, plots / "learning_curves.png", title=f"{name}: learning curves (scaled MSE)")


def _seeds(families: dict, data, fwd_t, next_day, cfg, dates, fixed: dict) -> tuple[dict, list[dict]]:
    """Per family with several seeds: mean, sd and n of the rank IC, its t and the long-short Sharpe ratio; and
    the model vs every other family by the mean daily rank IC, paired by seed (the engine's across-seed tests;
    test dates in blocks of 10). ``fixed``: name -> daily rank IC of a scorer with no seed (the ridge), compared
    with the model's seeds as a family whose every seed is the same."""
    table, ics = {}, {}
    for name, family in families.items():
        if len(family) > 1:
            runs = [_signal_metrics(score_matrix(m, data, "test").reindex(dates), fwd_t, next_day, cfg,
                                    data.meta.horizon) for m, _ in family]
            table[name] = seed_rows({name: [r[2] for r in runs]}, _SEED_KEYS)[name]
            ics[name] = np.stack([np.asarray(r[0].reindex(dates), float) for r in runs])  # (seeds, dates)

    if "model" in ics:
        for name, ic in fixed.items():
            ics[name] = np.tile(np.asarray(ic.reindex(dates), float), (len(ics["model"]), 1))

    def mean_ic(ic, ii):  # (k, dates) daily rank ICs -> (k,) mean IC on dates ii (NaN: too few stocks that day)
        return np.nanmean(ic[:, ii], axis=1)

    return table, across_seeds(ics, mean_ic, a="model", others=list(ics), metric="rank_ic", higher_is_better=True,
                               block=10.0)


def evaluate_panel(cfg, data, models: dict, paths, log) -> dict:
    meta = data.meta
    close, fwd, next_day = _matrices(data)
    model, model_meta = models["model"]
    main = score_matrix(model, data, "test")
    dates = main.index
    scorers = {"model": main}
    for name, (m, _) in models.get("baselines", {}).items():
        scorers[name] = score_matrix(m, data, "test").reindex(dates)
    scorers["reversal_1d"] = reversal_scores(close, days=1).reindex(dates)
    scorers["reversal_5d"] = reversal_scores(close, days=5).reindex(dates)
    scorers["momentum_12_1"] = momentum_scores(close).reindex(dates)
    ridge, ridge_choice = cross_stock_ridge(data.table, PANEL_FEATURES)  # penalty chosen on validation only
    scorers[RIDGE] = ridge.reindex(dates)
    fwd_t = fwd.reindex(dates)
    ics, rets, rows = {}, {}, {}
    for name, scores in scorers.items():
        ics[name], rets[name], rows[name] = _signal_metrics(scores, fwd_t, next_day, cfg, meta.horizon)
    ew = equal_weight_returns(close.loc[close.index >= dates[0]]).reindex(dates).fillna(0.0)
    p = performance(ew.to_numpy(), periods_per_year=cfg.evaluate.periods_per_year)
    rows["equal_weight"] = {"rank_ic": None, "rank_ic_tstat": None, "rank_ic_pvalue": None, "rank_ic_hit_rate": None,
                            "long_short_annual_return": None, "long_short_sharpe": None,
                            "long_short_max_drawdown": None, "turnover": 0.0, "n_days": p["n_days"],
                            "annual_return": p["annual_return"], "sharpe": p["sharpe"], "sharpe_se": p["sharpe_se"],
                            "max_drawdown": p["max_drawdown"]}
    rets["equal_weight"] = {"net": ew, "gross": ew}
    comparisons = [rank_ic_difference(ics["model"], ics[b], a="model", b=b, horizon=meta.horizon,
                                      lags=cfg.evaluate.nw_lags) for b in scorers if b != "model"]
    for c in comparisons:
        c["verdict"] = verdict(c, higher_is_better=True)
    seed_table_, seed_comps = _seeds(models.get("seeds", {}), data, fwd_t, next_day, cfg, dates, {RIDGE: ics[RIDGE]})
    comparisons += seed_comps
    tests = {f"model_vs_{c['b']}": c for c in comparisons}  # the rank-IC tests (the across-seeds one last)
    comparisons += _sharpe_comparisons(rets, "model", [b for b in scorers if b != "model"],
                                       cfg.evaluate.periods_per_year)
    dist = None
    if model.config.distribution != "none":
        dist = _distribution(data, models, meta.horizon)
        comparisons += dist[2]
    metrics = {"model": rows["model"], "baselines": {k: v for k, v in rows.items() if k != "model"},
               "tests": tests, "comparisons": comparisons, "seeds": seed_table_,
               "test_period": {"entity": f"{len(meta.entities)} stocks", "start": str(dates[0].date()),
                               "end": str(dates[-1].date()), "n": int(len(dates))},
               "settings": {"top_k": cfg.evaluate.top_k, "cost_bps": cfg.evaluate.cost_bps, "horizon": meta.horizon,
                            "execution_lag": cfg.evaluate.execution_lag, RIDGE: ridge_choice}}
    if dist is not None:
        metrics["model"].update(dist[0])
        metrics["distribution_baselines"] = dist[1]
    metrics["families"] = adjust_families(comparisons, metrics["baselines"])
    metrics["ablations"] = ablation_check(metrics, models.get("baselines", {}), data.case.benchmark)
    metrics["power"] = _power(rows, comparisons, len(dates))
    write_json_atomic(metrics, paths.reports / "metrics.json")
    write_predict_calibration(paths, None)  # point forecasts: predict applies nothing
    if cfg.evaluate.plots:
        _plots(cfg, rets, dates, models, paths.reports / "plots", data.meta.case)
    write_text_atomic(_report(metrics, data, cfg), paths.reports / "report.md")
    return metrics


def _report(m: dict, data, cfg) -> str:
    tp = m["test_period"]
    cols = ["rank_ic", "rank_ic_tstat", "rank_ic_mde", "rank_ic_hit_rate", "long_short_annual_return",
            "long_short_sharpe", "long_short_sharpe_se", "long_short_sharpe_gross", "long_short_max_drawdown",
            "turnover"]
    lag = m["settings"].get("execution_lag", 0)
    trade = ("traded at the close of the signal's own day" if lag == 0 else
             f"traded {lag} day after the signal (no reversal at the signal's own close)")
    pw = m["power"]
    ic = [c for c in m["comparisons"] if c["metric"] == "rank_ic"]
    sh = [c for c in m["comparisons"] if c["metric"].startswith("long_short_sharpe")]
    lines = [f"# Panel report (rank by the next {data.meta.horizon}-day return, lookback {data.meta.lookback})", "",
             f"Test period {tp['start']} to {tp['end']} ({tp['n']} dates, after the cut date "
             f"{data.meta.cuts['test_start']}), {tp['entity']}; long-short = top {cfg.evaluate.top_k} minus bottom "
             f"{cfg.evaluate.top_k}, rebalanced daily, {trade}, net of {cfg.evaluate.cost_bps:g} bp per unit "
             "turnover (`_gross`: before costs). `rank_ic_mde`: the smallest mean rank IC its Newey–West t-test "
             "detects with 80 % power at α = 0.05; `long_short_sharpe_se`: Lo (2002) standard error, Newey–West.",
             ""]
    if cfg.data.source == "builtin":
        lines += [("Survivorship: the built-in panel is 20 large caps chosen as they stand today (the skfolio "
                   "dataset), so every stock survived the sample; long-only and momentum results are flattered, and "
                   "a cross-section of 20 ranks coarsely."), ""]
    lines += [md_table({"model (cross-entity relational)": m["model"], **m["baselines"]}, cols), "",
              ("Mean daily rank-IC difference, model minus each alternative (seed 0; Newey–West over test dates; "
               "across seeds, a two-way bootstrap over seeds and test dates, with the paired t over seeds beside it; "
               "95 % interval):"), "", comparison_table(ic, ablations=m.get("ablations"), note=False), "",
              ("Long-short Sharpe ratio (annualised), model minus each alternative, net and gross (Ledoit–Wolf 2008 "
               "HAC test, two-sided):"), "", comparison_table(sh), "", *ablation_lines(m), *families_lines(m)]
    if "crps" in m["model"]:
        lines += _distribution_report(m)
    lines += seed_table("Across seeds (mean ± sd):", m.get("seeds", {}), _SEED_COLUMNS, data.meta.case)
    by = {c["b"]: c for c in ic if c["test"] == "newey_west"}

    def plain(c):
        if c["verdict"] == "tie":
            return f"ties with (differences under {fmt(c['mde'], 3)} could not have been seen; {p_text(c)})"
        return {"better": "beats", "worse": "is beaten by"}[c["verdict"]] + f" ({p_text(c)})"

    own = pw["rank_ic"]["model vs 0"]["mde"], pw["long_short_sharpe_net"]["model vs 0"]["mde"]
    rc = m["settings"][RIDGE]
    lines += ["", f"`{RIDGE}`: per stock, a ridge regression of its next return on all {len(data.meta.entities)} "
              f"stocks' features ({rc['columns']} columns: the four features, and `ret_1d` at the {rc['lags'] - 1} "
              f"dates before), fitted on the training split; penalty α = {rc['alpha']:g} chosen on the validation "
              "split by the mean daily rank IC (test dates never enter the choice)"
              + (": the grid's largest, where the slopes are about 0 and each stock is ranked by its mean training "
                 "target (the validation split found no linear cross-stock signal)." if rc["alpha"] >= max(RIDGE_ALPHAS)
                 else ".")]
    lines += ["", f"**Verdict:** the model {plain(by[RIDGE])} the linear cross-stock ridge, {plain(by['reversal_1d'])} "
              f"1-day reversal, {plain(by['reversal_5d'])} 5-day reversal and {plain(by['momentum_12_1'])} 12-1 "
              "momentum, judged by the rank-IC difference. "
              f"Power on these {pw['n']} dates: a mean rank IC under {fmt(own[0], 3)} or a net long-short Sharpe "
              f"ratio under {fmt(own[1], 3)} could not have been told from 0.", "",
              "Plots: `plots/cumulative.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)


class _View:
    """A windows table seen through a model's own window metadata (its scalers, entities and lookback)."""

    def __init__(self, table: pd.DataFrame, meta):
        self.table, self.meta = table, meta

    def batches(self, role, split, *, batch_size, entities=True, **_):
        w = load_entity_split(self.table, self.meta, split) if entities else pooled_windows(self.table, self.meta, split)
        return panel_batches(w, batch_size)


def model_view(table: pd.DataFrame, meta) -> _View:
    return _View(table[table["entity"].isin(meta.entities)].reset_index(drop=True), meta)


def predict_panel(model, meta, prices: pd.DataFrame) -> pd.DataFrame:
    """Scores of every full window of a price panel (one row per date and stock; higher = expected to do
    better than the cross-section), with the same features and scaling as training; a model with a distribution
    head adds its quantiles of the cross-sectional z-score, ``q<level>``."""
    missing = sorted(set(meta.entities) - set(prices["entity"].astype(str)))
    if model.config.entities and missing:
        raise DataError(f"the model relates the {len(meta.entities)} stocks it was trained on; the file lacks "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.")
    far = "2262-01-01"
    table = panel_table(prices, lookback=meta.lookback, horizon=1, keep_unlabelled=True,
                        cuts={"start": "1900-01-01", "val_start": far, "test_start": far, "end": far})
    table["split"] = np.where(table.groupby("entity").cumcount() >= meta.lookback - 1, "all", "")
    view = model_view(table, meta)
    scores = score_matrix(model, view, None)
    out = scores.stack().rename("score").reset_index()[["date", "entity", "score"]]
    if model.config.distribution != "none":  # the head's quantiles of the cross-sectional z-score, q<level>
        q = quantile_frame(model, view, None, labelled=False).drop(columns="target")
        out = out.merge(q.assign(entity=q["entity"].astype(out["entity"].dtype)), on=["date", "entity"], how="left")
    return out


def window_scores(data, model, mmeta, window: dict) -> dict:
    """Scores and cross-sectional targets of every (date, stock) in ``window``, flattened (for promotion:
    squared error on the cross-sectional z-score of the forward return)."""
    scores = score_matrix(model, model_view(data.table, mmeta), None)
    scores = scores.loc[(scores.index >= pd.Timestamp(window["start"])) & (scores.index <= pd.Timestamp(window["end"]))]
    target = data.table.pivot(index="date", columns="entity", values="target").reindex_like(scores)
    ok = np.isfinite(scores.to_numpy()) & np.isfinite(target.to_numpy())
    return {"actual": target.to_numpy()[ok], "pred": scores.to_numpy()[ok], "kind": "forecast", "n_classes": None,
            "horizon": mmeta.horizon, "benchmark": np.zeros(int(ok.sum())), "benchmark_id": "zero score"}


def panel_monitor_frame(data, model, mmeta) -> tuple[pd.DataFrame, MonitorSignals]:
    """One row per date: the market's own state (the cross-sectional means of each stock's raw 20-day
    volatility and 20-day log return: the table's features are z-scored per date, so their means are 0 by
    construction and could never move), the dispersion of the model's scores across stocks, and the mean
    squared error of the scores on the cross-sectional target beside the benchmark's (a zero score)."""
    view = model_view(data.table, mmeta)
    scores = score_matrix(model, view, None)
    t = data.table.set_index(["date", "entity"])
    frame = t.join(scores.stack().rename("pred"), how="inner").reset_index()
    frame["loss"] = (frame["pred"] - frame["target"]) ** 2
    frame["bench_loss"] = frame["target"] ** 2
    close = data.table.pivot(index="date", columns="entity", values="close").sort_index()
    r = np.log(close).diff()
    market = pd.DataFrame({"mkt_vol_20d": r.rolling(20).std().mean(axis=1),
                           "mkt_ret_20d": r.rolling(20).sum().mean(axis=1)})
    daily = frame.groupby("date")[["loss", "bench_loss"]].mean()
    daily["pred"] = frame.groupby("date")["pred"].std()  # dispersion of the scores
    daily = daily.join(market, how="left").dropna().reset_index()
    return daily, MonitorSignals(inputs=("mkt_vol_20d", "mkt_ret_20d"), prediction_history=True)


@dataclass
class CrossSectionWindowConfig(SeriesWindowConfig):
    lookback: int = 20                   # trading days of features per stock and window
    horizon: int = 1                     # rank by the return over the next 1 (or 5, ...) days


@dataclass
class CrossSectionEvaluateConfig:
    seeds: int = 1                       # models and neural baselines per seed (train.seed, +1, ...)
    plots: bool = True
    top_k: int = 4                       # stocks per leg of the long-short portfolio
    cost_bps: float = 5.0                # cost per unit of turnover, basis points
    nw_lags: int | None = None           # Newey–West lags of the IC tests (null: automatic, >= horizon - 1)
    execution_lag: int = 1               # days between a signal and its trade: 1 (default) or 0 (its own close)
    periods_per_year: int = 252          # this calendar's trading days a year (annualised Sharpe ratios)


def _kind_model() -> ModelConfig:
    return ModelConfig(cell="gru", hidden_size=32, num_layers=1, relational=True, pooling="last", entities=True,
                       identity=True, input_size=len(PANEL_FEATURES))


def _kind_train() -> TrainConfig:
    return TrainConfig(epochs=8, batch_size=32, lr=1e-3, patience=3)


@dataclass
class CrossSectionConfig(CaseConfig):
    """The cross-section kind's sections (``CaseConfig``'s, with its types); a case subclasses it to change
    defaults."""
    validate: PriceChecks = field(default_factory=PriceChecks)
    window: CrossSectionWindowConfig = field(default_factory=CrossSectionWindowConfig)
    model: ModelConfig = field(default_factory=_kind_model)
    train: TrainConfig = field(default_factory=_kind_train)
    evaluate: CrossSectionEvaluateConfig = field(default_factory=CrossSectionEvaluateConfig)


class CrossSectionCase(PriceCase):
    """A panel of price series ranked at each date, complete: a case on this kind is its name, its built-in data
    (``builtin``) and its defaults (``config_cls``, a ``CrossSectionConfig``); windows, baselines, evaluation,
    predict, monitor and promotion are this kind's."""

    kind = "crosssection"
    headline_metrics = ("rank_ic", "rank_ic_tstat", "long_short_sharpe", "turnover")
    main_baseline = "reversal_1d"
    benchmark = ("reversal_1d", "rank_ic", True)  # yesterday's losers first: the simplest signal, nothing fitted
    metric = ("val_mse", False)
    predict_warmup = 20  # ret_20d and vol_20d (panel_table) need 20 returns, 21 closes: rows 0 .. 19 have none
    predict_warmup_why = "the first 20 rows have no 20-day return and volatility yet"
    predict_rows = ("N dates (the dates every stock shares)", "dates of scores, one row per stock each")
    config_cls: ClassVar[type] = CrossSectionConfig
    plots = (("cumulative.csv", "linear", "date", ["model", "reversal_1d", "momentum_12_1", "equal_weight"]),)
    naive_name: ClassVar[str] = "zero score"  # the benchmark of monitor and gate: no view on any stock
    replay_naive_name: ClassVar[str] = "1-day reversal"  # the replay's naive line (``naive_scores``): reversal_1d

    def check_config(self, cfg, prefix: str) -> None:
        check_series_window(cfg.window, prefix)
        if cfg.evaluate.top_k < 1:
            raise ConfigError(f"{prefix}.evaluate.top_k must be >= 1, got {cfg.evaluate.top_k}.")
        if cfg.evaluate.cost_bps < 0:
            raise ConfigError(f"{prefix}.evaluate.cost_bps must be >= 0, got {cfg.evaluate.cost_bps}.")
        check_choice(prefix, "evaluate.execution_lag", cfg.evaluate.execution_lag, (0, 1))
        check_calendar(cfg.evaluate, prefix)
        if cfg.model.pooling == "concat" and cfg.model.entities:
            raise ConfigError(f"{prefix}.model.pooling concat is not available with entities; use last.")

    def build_windows(self, cfg, df: pd.DataFrame, out_dir: Path, log: Log) -> PanelMeta:
        w = cfg.window
        entities = sorted(df["entity"].astype(str).unique())
        if len(entities) < 2 * cfg.evaluate.top_k:
            raise DataError(f"the panel has {len(entities)} entities; a top-{cfg.evaluate.top_k} minus bottom-"
                            f"{cfg.evaluate.top_k} portfolio needs at least {2 * cfg.evaluate.top_k} (lower "
                            f"{self.name}.evaluate.top_k or add stocks).")
        cuts = calendar_cuts(df["date"], w)
        table = panel_table(df, lookback=w.lookback, horizon=w.horizon, cuts=cuts)
        splits = split_summary(table, "entity", "date")
        empty = [s for s in ("train", "val", "test") if not any(v[s]["n"] for v in splits.values())]
        if empty:
            raise DataError(f"the panel has no {'/'.join(empty)} windows between the cut dates {cuts['val_start']} "
                            f"and {cuts['test_start']} (data {cuts['start']} to {cuts['end']}); move "
                            f"{self.name}.window.val_start/test_start or lower {self.name}.window.lookback.")
        scaler, target_scaler = fit_scalers(table, list(PANEL_FEATURES), cuts["val_start"])
        write_parquet_atomic(table, out_dir / "features.parquet")
        meta = PanelMeta(case=self.name, time="date", cuts=cuts, splits=splits, cut_rule=w.cuts, lookback=w.lookback,
                         horizon=w.horizon, target="cs_zscore_forward_return", features=list(PANEL_FEATURES),
                         entities=entities, scaler=scaler, target_scaler=target_scaler, pretrain_entity="all",
                         finetune_entity=None)
        meta.save(out_dir / "meta.json")
        log(f"{len(entities)} entities, {len(table)} rows; splits per calendar cut dates {cuts}")
        return meta

    def neural_baselines(self, cfg) -> dict[str, ModelConfig]:
        alone = {"entities": False, "identity": False, "entity_mixing": False}
        return {"no_cross_entity": replace(cfg.model, **alone),  # the same encoder, each stock alone
                "gru_no_relational": replace(cfg.model, cell="gru", relational=False, **alone)}

    def predict(self, model, meta: PanelMeta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
        return self.predict_prices(model, meta, self.read_input(cfg, input_path))

    def load(self, cfg, windows_dir) -> PanelData:
        return PanelData(self, cfg, windows_dir)

    def example(self, folder, *, seed: int = 0) -> dict:
        """A long price panel (date, entity, close) of 8 geometric random walks with a common market factor."""
        rng = np.random.default_rng(seed)
        n, market = 400, rng.normal(0, 0.008, 400)
        dates = pd.bdate_range("2015-01-01", periods=n).strftime("%Y-%m-%d")
        frames = [pd.DataFrame({"date": dates, "entity": f"S{e:02d}",
                                "close": 50 * np.exp(np.cumsum(market + rng.normal(0, 0.01, n)))}) for e in range(8)]
        path = folder / f"example-{self.name}.csv"
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
        return {"data.source": str(path), "validate.min_rows": 100, "window.lookback": 10, "window.val_start": None,
                "window.test_start": None, "window.val_days": 60, "window.holdout_days": 30, "model.hidden_size": 8,
                "train.epochs": 2, "evaluate.top_k": 2}

    def naive_scores(self, close: pd.DataFrame) -> pd.DataFrame:
        """The naive benchmark's scores (dates x stocks) from the closes: yesterday's losers first (evaluate's
        ``reversal_1d``, the kind's ``benchmark``); nothing fitted, so the replay scores every day with it."""
        return reversal_scores(close, days=1)

    def replay_check(self, *, batch: int | None = None) -> None:
        if batch is not None:  # a step is one trading date of the whole cross-section: a batch would mean nothing
            raise ConfigError(f"--batch applies to texts only (a replay step of arrival batches); a {self.name} "
                              f"replay steps one trading date at a time (every stock scored at that date), so leave "
                              "--batch out.")

    def evaluate(self, cfg, data: PanelData, models: dict, paths, log) -> dict:
        return evaluate_panel(cfg, data, models, paths, log)

    def predict_prices(self, model, meta, prices: pd.DataFrame) -> pd.DataFrame:
        return predict_panel(model, meta, prices)

    def monitor_frame(self, cfg, data: PanelData, model, ck: dict) -> tuple[pd.DataFrame, MonitorSignals]:
        return panel_monitor_frame(data, model, window_meta_of(ck))

    def promotion_scores(self, cfg, data: PanelData, model, ck: dict, window: dict) -> dict:
        return window_scores(data, model, window_meta_of(ck), window)
