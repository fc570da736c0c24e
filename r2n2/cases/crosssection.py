"""Scoring, reporting and prediction of the ``panel`` case: score matrices (dates x stocks) judged by the daily
rank IC and a long-short portfolio. Evaluation loads checkpoints and scores them; it never trains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ..evaluate.baselines import equal_weight_returns, momentum_scores, reversal_scores
from ..evaluate.metrics import daily_rank_ic, rank_ic_summary
from ..evaluate.plots import plot_lines, write_csv
from ..evaluate.report import fmt, history, md_table, seed_section
from ..evaluate.stats import rank_ic_difference, seed_difference, seed_summary, verdict
from ..evaluate.trading import long_short_portfolio, performance
from ..io import write_json_atomic, write_text_atomic
from ..train import predict_batches

__all__ = ["evaluate_panel", "score_matrix", "predict_panel", "window_scores"]

_SEED_KEYS = ("rank_ic", "rank_ic_tstat", "long_short_sharpe")


def score_matrix(model, data, split: str | None) -> pd.DataFrame:
    """The model's scores (dates x entities) on every window of ``split``."""
    from .panel import pooled_windows

    if model.config.entities:
        b = data.batches("pretrain", split, batch_size=256, entities=True)
        out = predict_batches(model, b)[:, :, 0]  # (n, E, 1) -> (n, E)
        w = b.windows
        return pd.DataFrame(out, index=pd.DatetimeIndex(w.dates[w.ends], name="date"),
                            columns=pd.Index(w.entities, name="entity"))
    windows = pooled_windows(data.table, data.meta, split)
    from ..data.window import StockBatches

    out = predict_batches(model, StockBatches(windows, 1024)).reshape(-1)
    rows = data.table.iloc[windows.ends]
    return pd.DataFrame({"date": rows["date"].to_numpy(), "entity": rows["entity"].to_numpy(), "s": out}) \
        .pivot(index="date", columns="entity", values="s")


def _matrices(data) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    t = data.table
    close = t.pivot(index="date", columns="entity", values="close").sort_index()
    fwd = t.pivot(index="date", columns="entity", values="fwd_return").sort_index()
    next_day = np.log(close).shift(-1) - np.log(close)  # what a portfolio formed at t's close earns on t+1
    return close, fwd, next_day


def _signal_metrics(scores: pd.DataFrame, fwd: pd.DataFrame, next_day: pd.DataFrame, cfg, horizon: int):
    ic = daily_rank_ic(scores, fwd)
    s = rank_ic_summary(ic, horizon=horizon, lags=cfg.evaluate.nw_lags)
    ls = long_short_portfolio(scores, next_day.reindex(scores.index), k=cfg.evaluate.top_k,
                              cost_bps=cfg.evaluate.cost_bps)
    return ic, ls["returns"], {
        "rank_ic": s["mean"], "rank_ic_tstat": s["tstat"], "rank_ic_pvalue": s["p_value"],
        "rank_ic_hit_rate": s["hit_rate"], "long_short_annual_return": ls["annual_return"],
        "long_short_sharpe": ls["sharpe"], "long_short_max_drawdown": ls["max_drawdown"],
        "turnover": ls["turnover"], "n_days": s["n"]}


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
    fwd_t = fwd.reindex(dates)
    ics, rets, rows = {}, {}, {}
    for name, scores in scorers.items():
        ics[name], rets[name], rows[name] = _signal_metrics(scores, fwd_t, next_day, cfg, meta.horizon)
    ew = equal_weight_returns(close.loc[close.index >= dates[0]]).reindex(dates).fillna(0.0)
    p = performance(ew.to_numpy())
    rows["equal_weight"] = {"rank_ic": None, "rank_ic_tstat": None, "rank_ic_pvalue": None, "rank_ic_hit_rate": None,
                            "long_short_annual_return": None, "long_short_sharpe": None,
                            "long_short_max_drawdown": None, "turnover": 0.0, "n_days": p["n_days"],
                            "annual_return": p["annual_return"], "sharpe": p["sharpe"],
                            "max_drawdown": p["max_drawdown"]}
    rets["equal_weight"] = ew
    comparisons = [rank_ic_difference(ics["model"], ics[b], a="model", b=b, horizon=meta.horizon,
                                      lags=cfg.evaluate.nw_lags) for b in scorers if b != "model"]
    for c in comparisons:
        c["verdict"] = verdict(c, higher_is_better=True)
    seed_rows, per_seed = {}, {}
    for name, family in models.get("seeds", {}).items():
        if len(family) > 1:
            per_seed[name] = [_signal_metrics(score_matrix(m, data, "test").reindex(dates), fwd_t, next_day, cfg,
                                              meta.horizon)[2] for m, _ in family]
            seed_rows[name] = {k: seed_summary([r[k] for r in per_seed[name]]) for k in _SEED_KEYS}
    for name in per_seed:
        if name != "model" and "model" in per_seed:
            c = seed_difference([r["rank_ic"] for r in per_seed["model"]], [r["rank_ic"] for r in per_seed[name]],
                                a="model", b=name, metric="rank_ic")
            if c is not None:
                c["verdict"] = verdict(c, higher_is_better=True)
                comparisons.append(c)
    metrics = {"model": rows["model"], "baselines": {k: v for k, v in rows.items() if k != "model"},
               "tests": {f"model_vs_{c['b']}": c for c in comparisons}, "comparisons": comparisons,
               "seeds": seed_rows,
               "test_period": {"entity": f"{len(meta.entities)} stocks", "start": str(dates[0].date()),
                               "end": str(dates[-1].date()), "n": int(len(dates))},
               "settings": {"top_k": cfg.evaluate.top_k, "cost_bps": cfg.evaluate.cost_bps, "horizon": meta.horizon}}
    write_json_atomic(metrics, paths.reports / "metrics.json")
    if cfg.evaluate.plots:
        cum = pd.DataFrame({k: np.cumsum(np.log1p(rets[k].reindex(dates).fillna(0.0).to_numpy()))
                            for k in ("model", "reversal_1d", "momentum_12_1", "equal_weight")}, index=dates)
        write_csv(cum.reset_index().assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d")),
                  paths.reports / "plots" / "cumulative.csv")
        plot_lines(dates, {k: cum[k].to_numpy() for k in cum}, paths.reports / "plots" / "cumulative.png",
                   title=f"panel: top-{cfg.evaluate.top_k} minus bottom-{cfg.evaluate.top_k}, net of "
                         f"{cfg.evaluate.cost_bps:g} bp (test period; equal weight is long only)",
                   ylabel="cumulative log return")
        from ..evaluate.plots import plot_learning_curves

        histories = {"model": history(model_meta), **{n: history(m[1]) for n, m in models.get("baselines", {}).items()}}
        plot_learning_curves(histories, paths.reports / "plots" / "learning_curves.png",
                             title="panel: learning curves (scaled MSE)")
    write_text_atomic(_report(metrics, data, cfg), paths.reports / "report.md")
    return metrics


def _report(m: dict, data, cfg) -> str:
    tp = m["test_period"]
    cols = ["rank_ic", "rank_ic_tstat", "rank_ic_hit_rate", "long_short_annual_return", "long_short_sharpe",
            "long_short_max_drawdown", "turnover"]
    lines = [f"# Panel report (rank by the next {data.meta.horizon}-day return, lookback {data.meta.lookback})", "",
             f"Test period {tp['start']} to {tp['end']} ({tp['n']} dates, after the cut date "
             f"{data.meta.cuts['test_start']}), {tp['entity']}; long-short = top {cfg.evaluate.top_k} minus bottom "
             f"{cfg.evaluate.top_k}, rebalanced daily, net of {cfg.evaluate.cost_bps:g} bp per unit turnover.", "",
             md_table({"model (cross-entity relational)": m["model"], **m["baselines"]}, cols), "",
             "Mean daily rank-IC difference, model minus each alternative (seed 0; Newey–West over test dates, or a "
             "paired t over seeds; 95 % interval):", "",
             "| vs | test | diff | 95 % CI | p | verdict |", "|---|---|---|---|---|---|"]
    for c in m["comparisons"]:
        lines.append(f"| {c['b']} | {c['test']} | {fmt(c['diff'])} | [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}] | "
                     f"{fmt(c['p_value'])} | {c['verdict']} |")
    lines += ["", *seed_section("Across seeds (mean ± sd):", "| model | rank IC | NW t | long-short Sharpe | seeds |",
                                m.get("seeds", {}), lambda n, s: f"| {n} | " + " | ".join(
                                    f"{fmt(s[k]['mean'])} ± {fmt(s[k]['sd'])}" for k in _SEED_KEYS)
                                + f" | {s['rank_ic']['n']} |", "panel")]
    by = {c["b"]: c["verdict"] for c in m["comparisons"] if c["test"] == "newey_west"}
    plain = {"better": "beats", "worse": "is beaten by", "tie": "does not beat (a tie: the interval covers 0)"}
    lines += ["", f"**Verdict:** the model {plain[by['reversal_1d']]} 1-day reversal, {plain[by['reversal_5d']]} "
              f"5-day reversal and {plain[by['momentum_12_1']]} 12-1 momentum, judged by the rank-IC difference.", "",
              "Plots: `plots/cumulative.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)


class _View:
    """A windows table seen through a model's own window metadata (its scalers, entities and lookback)."""

    def __init__(self, table: pd.DataFrame, meta):
        self.table, self.meta = table, meta

    def batches(self, role, split, *, batch_size, entities=True, **_):
        from ..data.window import StockBatches, load_entity_split
        from .panel import pooled_windows

        w = load_entity_split(self.table, self.meta, split) if entities else pooled_windows(self.table, self.meta, split)
        return StockBatches(w, batch_size)


def model_view(table: pd.DataFrame, meta) -> _View:
    return _View(table[table["entity"].isin(meta.entities)].reset_index(drop=True), meta)


def predict_panel(model, meta, prices: pd.DataFrame) -> pd.DataFrame:
    """Scores of every full window of a price panel (one row per date and stock; higher = expected to do
    better than the cross-section), with the same features and scaling as training."""
    from .panel import panel_table

    missing = sorted(set(meta.entities) - set(prices["entity"].astype(str)))
    if model.config.entities and missing:
        raise DataError(f"the model relates the {len(meta.entities)} stocks it was trained on; the file lacks "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.")
    far = "2262-01-01"
    table = panel_table(prices, lookback=meta.lookback, horizon=1, keep_unlabelled=True,
                        cuts={"start": "1900-01-01", "val_start": far, "test_start": far, "end": far})
    table["split"] = np.where(table.groupby("entity").cumcount() >= meta.lookback - 1, "all", "")
    scores = score_matrix(model, model_view(table, meta), None)
    return scores.stack().rename("score").reset_index()[["date", "entity", "score"]]


def window_scores(data, model, mmeta, window: dict) -> dict:
    """Scores and cross-sectional targets of every (date, stock) in ``window``, flattened (for promotion:
    squared error on the cross-sectional z-score of the forward return)."""
    scores = score_matrix(model, model_view(data.table, mmeta), None)
    scores = scores.loc[(scores.index >= pd.Timestamp(window["start"])) & (scores.index <= pd.Timestamp(window["end"]))]
    target = data.table.pivot(index="date", columns="entity", values="target").reindex_like(scores)
    ok = np.isfinite(scores.to_numpy()) & np.isfinite(target.to_numpy())
    return {"actual": target.to_numpy()[ok], "pred": scores.to_numpy()[ok], "kind": "forecast", "n_classes": None,
            "horizon": mmeta.horizon}
