"""Scoring, reporting, prediction and monitoring of the ``stocks`` case: forecasts of one series at a time.
Evaluation loads checkpoints and scores them; it never trains."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..data.window import StockBatches, StockWindows, scale_features, series_features
from ..errors import DataError
from ..evaluate.baselines import garch_volatility
from ..evaluate.metrics import forecast_tests, regression_metrics
from ..evaluate.plots import plot_cumulative, plot_forecast, plot_learning_curves, write_csv
from ..evaluate.report import fmt, history, md_table
from ..io import write_json_atomic, write_text_atomic
from ..train import predict_batches

__all__ = ["evaluate_forecasts", "predict_prices", "monitor_forecasts", "forecasts"]


def forecasts(model, data, role: str, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(actual, forecast, rows) on the evaluation scale: returns (volatility for a volatility target)."""
    entities = bool(model.config.entities)
    batches = data.batches(role, split, batch_size=512, entities=entities)
    ts = data.meta.target_scaler
    out = predict_batches(model, batches)
    rows = data.rows(role, split)
    if entities:  # (n, E, 1) aligned windows: keep this role's entity, matched by date
        w = batches.windows
        col = w.entities.index(data.key(role))
        by_date = pd.Series(out[:, col, 0], index=pd.DatetimeIndex(w.dates[w.ends]))
        rows = rows[rows["date"].isin(by_date.index)].reset_index(drop=True)
        out = by_date.loc[rows["date"]].to_numpy()
    pred = out.reshape(-1) * ts["scale"] + ts["mean"]
    actual = rows["target"].to_numpy(float)
    if data.meta.target == "close":  # a log-price forecast, scored as the return it implies
        pred = pred - rows["base_log_close"].to_numpy(float)
        actual = actual - rows["base_log_close"].to_numpy(float)
    return actual, pred, rows


def _train_actual(data, role: str) -> np.ndarray:
    rows = data.rows(role, "train")
    y = rows["target"].to_numpy(float)
    return y - rows["base_log_close"].to_numpy(float) if data.meta.target == "close" else y


def _benchmarks(data, role: str, split: str, actual: np.ndarray, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    meta = data.meta
    train_actual = _train_actual(data, role)
    out = {"historical_mean": np.full_like(actual, train_actual.mean())}
    if meta.target == "volatility":
        h = meta.horizon
        t = data.table[data.table["entity"] == data.key(role)].reset_index(drop=True)
        r = t["ret_close"].to_numpy(float)
        rv = np.sqrt(pd.Series(r ** 2).rolling(h, min_periods=1).mean().to_numpy())
        ends = np.flatnonzero(t["split"].to_numpy() == split)
        out["random_walk"] = rv[ends]  # realised volatility of the last `horizon` days, known at t
        train_end = int(np.flatnonzero(t["split"].to_numpy() == "train")[-1]) + 1
        out["garch_1_1"] = garch_volatility(r, train_end, ends, h)
    else:
        out["random_walk"] = np.zeros_like(actual)  # no change in (log) price
    return out


def _score(data, role, y, pred, bench) -> dict:
    directional = data.meta.target != "volatility"
    return regression_metrics(y, pred, train_y=_train_actual(data, role), directional=directional,
                              random_walk=bench["random_walk"], hist_mean=float(bench["historical_mean"][0]))


def evaluate_forecasts(cfg, data, models: dict, paths, log) -> dict:
    meta = data.meta
    directional = meta.target != "volatility"
    model, model_meta = models["model"]
    y, pred, rows = forecasts(model, data, "pretrain", "test")
    bench = _benchmarks(data, "pretrain", "test", y, rows)
    metrics = {"model": _score(data, "pretrain", y, pred, bench),
               "baselines": {name: _score(data, "pretrain", y, p, bench) for name, p in bench.items()},
               "test_period": {"entity": data.key("pretrain"), "start": str(rows["date"].min().date()),
                               "end": str(rows["date"].max().date()), "n": int(len(y))}}
    histories = {"model": history(model_meta)}
    for name, (m, m_meta) in models.get("baselines", {}).items():
        _, p, _ = forecasts(m, data, "pretrain", "test")
        metrics["baselines"][name] = _score(data, "pretrain", y, p, bench)
        histories[name] = history(m_meta)
    tests = forecast_tests(y, pred, bench["random_walk"], horizon=meta.horizon, directional=directional)
    metrics["tests"] = tests
    if "finetuned" in models and "scratch" in models:
        ft, ft_meta = models["finetuned"]
        sc, sc_meta = models["scratch"]
        ty, tpred, trows = forecasts(ft, data, "target", "test")
        _, spred, _ = forecasts(sc, data, "target", "test")
        tbench = _benchmarks(data, "target", "test", ty, trows)
        metrics["finetuned"] = _score(data, "target", ty, tpred, tbench)
        metrics["scratch"] = _score(data, "target", ty, spred, tbench)
        metrics["target_baselines"] = {name: _score(data, "target", ty, p, tbench) for name, p in tbench.items()}
        ft_tests = forecast_tests(ty, tpred, tbench["random_walk"], horizon=meta.horizon, directional=directional)
        tests.update({f"finetuned_{k}": v for k, v in ft_tests.items()})
        histories["finetuned"], histories["scratch"] = history(ft_meta), history(sc_meta)

    write_json_atomic(metrics, paths.reports / "metrics.json")
    ent = data.key("pretrain")
    plots = paths.reports / "plots"
    if cfg.evaluate.plots:
        ylabel = {"return": "log return", "close": "log return implied", "volatility": "volatility"}[meta.target]
        dates = rows["date"].dt.strftime("%Y-%m-%d")
        write_csv(pd.DataFrame({"date": dates, "actual": y, "forecast": pred}), plots / "forecast.csv")
        plot_forecast(rows["date"], y, pred, plots / "forecast.png", title=f"{ent}: test-period forecast vs actual",
                      ylabel=ylabel)
        if directional:
            write_csv(pd.DataFrame({"date": dates, "buy_and_hold": np.cumsum(y),
                                    "sign_strategy": np.cumsum(np.sign(pred) * y)}), plots / "cumulative.csv")
            plot_cumulative(rows["date"], y, pred, plots / "cumulative.png",
                            title=f"{ent}: trading the forecast's sign vs buy-and-hold (test period)")
        write_json_atomic([{"model": k, **r} for k, h in histories.items() for r in h], plots / "learning_curves.json")
        plot_learning_curves(histories, plots / "learning_curves.png", title="stocks: learning curves (scaled MSE)")
    write_text_atomic(_report(metrics, data), paths.reports / "report.md")
    return metrics


def _report(m: dict, data) -> str:
    meta = data.meta
    cols = ["mae", "rmse", "mase", "rel_rmse_random_walk", "rel_rmse_historical_mean", "directional_accuracy",
            "up_rate"]
    t = m["tests"]
    p = t.get("diebold_mariano_pvalue")
    beats = m["model"].get("rel_rmse_random_walk") is not None and m["model"]["rel_rmse_random_walk"] < 1
    if p is not None and p < 0.05 and beats:
        verdict = f"The model's squared errors are significantly lower than the random walk's (DM p = {p:.3g})."
    else:
        verdict = (f"The model does **not** beat the random walk with statistical significance (Diebold–Mariano "
                   f"p = {fmt(p)}); treat its forecasts as no better than 'no change'.")
    tp = m["test_period"]
    lines = [f"# Stocks report ({meta.target}, horizon {meta.horizon}, lookback {meta.lookback})", "",
             f"Test period of **{tp['entity']}**: {tp['start']} to {tp['end']} ({tp['n']} windows, after the cut "
             f"date {meta.cuts['test_start']}); every row is scored on the same windows:", "",
             md_table({"model": m["model"], **m["baselines"]}, cols), "", verdict,
             f"Pesaran–Timmermann sign test p = {fmt(t.get('pesaran_timmermann_pvalue'))}.", ""]
    if "finetuned" in m:
        lines += [f"Transfer to **{data.key('target')}** (test period): fine-tuned from {tp['entity']} vs trained "
                  "from scratch on the same target data and budget:", "",
                  md_table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols), ""]
    lines += ["Plots: `plots/forecast.png`, `plots/cumulative.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- predict
def predict_prices(model, meta, prices: pd.DataFrame, *, batch_size: int = 4096) -> pd.DataFrame:
    """Canonical long prices -> one forecast per window (every day with a full lookback behind it), with the
    same features and scaling as training."""
    import torch

    L, feats = meta.lookback, meta.features
    missing = [f for f in feats if f.replace("ret_", "").replace("dlog_", "") not in prices]
    if missing:
        raise DataError(f"the model was trained on {', '.join(feats)} but the file lacks the columns for "
                        f"{', '.join(missing)}.")
    ts = meta.target_scaler
    frames = []
    for entity, part in prices.groupby("entity", sort=False):
        part = part.sort_values("date").reset_index(drop=True)
        f = series_features(part, horizon=meta.horizon, target=meta.target).iloc[1:].reset_index(drop=True)
        if len(f) < L:
            raise DataError(f"entity {str(entity)[:80]!r} has {len(part)} rows; a forecast needs at least {L + 1}.")
        windows = StockWindows(scale_features(f, meta), np.zeros(len(f)), np.arange(L - 1, len(f)), L)
        pred = predict_batches(model, StockBatches(windows, batch_size)).reshape(-1) * ts["scale"] + ts["mean"]
        if meta.target == "close":
            pred = pred - f["base_log_close"].to_numpy(float)[windows.ends]
        frames.append(pd.DataFrame({"entity": str(entity), "date": f["date"].to_numpy()[windows.ends],
                                    f"forecast_{meta.target}_{meta.horizon}d": pred}))
    del torch
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------- monitor
def monitor_forecasts(cfg, data, model, ck: dict, log) -> dict:
    from ..cases.base import WindowMeta
    from ..ops.monitoring import monitor_series

    return monitor_series(cfg.monitor, data, model, WindowMeta.from_dict(json.loads(ck["window_meta"])), log)
