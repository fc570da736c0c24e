"""Evaluation of both use cases: every number beside its baselines, from the same run and test split.

Writes ``metrics.json`` (``{"model", "finetuned", "scratch", "baselines", "target_baselines", "tests"}``),
``report.md`` and ``plots/`` (PNG + the CSV/JSON data `dvc plots` reads) under data/reports/<case>/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..checkpoint import load_checkpoint
from ..data.validate import write_json_atomic
from ..paths import CasePaths
from ..train import predict_batches, seed_everything
from .baselines import garch_volatility, majority_baseline, tfidf_logreg_baseline
from .metrics import classification_metrics, forecast_tests, regression_metrics
from .plots import plot_confusion, plot_cumulative, plot_forecast, plot_learning_curves, write_csv

__all__ = ["evaluate_stocks", "evaluate_sentiment"]


def _write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load(path: Path):
    model, meta = load_checkpoint(path)
    return model, meta


def _history(meta: dict) -> list[dict]:
    return json.loads(meta.get("history", "[]"))


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: dict[str, dict], cols: list[str]) -> str:
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- stocks
def _stock_predictions(model, data, role: str, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(actual, forecast) on the evaluation scale (returns; volatility for a volatility target) + rows."""
    batches = data.batches(role, split, batch_size=512)
    ts = data.meta["target_scaler"]
    out = predict_batches(model, batches)
    rows = data.rows(role, split)
    if model.config.entities:  # (n, E, 1) aligned windows: keep this role's entity, matched by date
        w = batches.windows
        col = w.entities.index(data.key(role))
        by_date = pd.Series(out[:, col, 0], index=pd.DatetimeIndex(w.dates[w.ends]))
        rows = rows[rows["date"].isin(by_date.index)].reset_index(drop=True)
        out = by_date.loc[rows["date"]].to_numpy()
    pred = out.reshape(-1) * ts["scale"] + ts["mean"]
    actual = rows["target"].to_numpy(float)
    if data.meta["target"] == "close":  # a log-price forecast, evaluated as the return it implies
        pred = pred - rows["base_log_close"].to_numpy(float)
        actual = actual - rows["base_log_close"].to_numpy(float)
    return actual, pred, rows


def _stock_baselines(data, role: str, split: str, actual: np.ndarray, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    target = data.meta["target"]
    train_rows = data.rows(role, "train")
    train_actual = train_rows["target"].to_numpy(float)
    if target == "close":
        train_actual = train_actual - train_rows["base_log_close"].to_numpy(float)
    out = {"historical_mean": np.full_like(actual, train_actual.mean())}
    if target == "volatility":
        h = data.meta["horizon"]
        # Random walk for volatility: the realised volatility of the last `horizon` days, known at t.
        t = data.table[data.table["entity"] == data.key(role)].reset_index(drop=True)
        r = t["ret_close"].to_numpy(float)
        rv = np.sqrt(pd.Series(r ** 2).rolling(h, min_periods=1).mean().to_numpy())
        ends = np.flatnonzero(t["split"].to_numpy() == split)
        out["random_walk"] = rv[ends]
        train_end = int(np.flatnonzero(t["split"].to_numpy() == "train")[-1]) + 1
        out["garch_1_1"] = garch_volatility(r, train_end, ends, h)
    else:
        out["random_walk"] = np.zeros_like(actual)  # no change in (log) price
    return out


def evaluate_stocks(cfg, data, paths: CasePaths, *, log) -> dict:
    from ..stages import ablation_model, fit

    target = data.meta["target"]
    directional = target != "volatility"
    role = "pretrain"
    model, model_meta = _load(paths.model_dir / "model.pt")
    y, pred, rows = _stock_predictions(model, data, role, "test")
    train_rows = data.rows(role, "train")
    train_y = train_rows["target"].to_numpy(float)
    base = _stock_baselines(data, role, "test", y, rows)
    hist_mean = float(base["historical_mean"][0])

    def score(p, yy=y, rw=None):
        return regression_metrics(yy, p, train_y=train_y, directional=directional,
                                  random_walk=base["random_walk"] if rw is None else rw, hist_mean=hist_mean)

    metrics = {"model": score(pred), "baselines": {name: score(p) for name, p in base.items()}}
    histories = {"model": _history(model_meta)}
    if cfg.evaluate.ablation:
        log("training the ablation baseline: GRU without the relational module, same budget")
        seed_everything(cfg.train.seed)
        abl = ablation_model(cfg, data)
        r = fit("stocks", cfg, data, abl, role, "ablation", paths, log=log)
        _, abl_pred, _ = _stock_predictions(abl, data, role, "test")
        metrics["baselines"]["gru_no_relational"] = score(abl_pred)
        histories["gru_no_relational"] = r.history
    tests = forecast_tests(y, pred, base["random_walk"], horizon=data.meta["horizon"], directional=directional)
    metrics["tests"] = tests

    plots = paths.reports / "plots"
    ent = data.key(role)
    if data.has_target() and (paths.finetuned_dir / "model.pt").is_file():
        ft, ft_meta = _load(paths.finetuned_dir / "model.pt")
        sc, sc_meta = _load(paths.root / "data" / "models" / "stocks-scratch" / "model.pt")
        ty, tpred, trows = _stock_predictions(ft, data, "target", "test")
        _, spred, _ = _stock_predictions(sc, data, "target", "test")
        tbase = _stock_baselines(data, "target", "test", ty, trows)
        ttrain = data.rows("target", "train")["target"].to_numpy(float)

        def tscore(p):
            return regression_metrics(ty, p, train_y=ttrain, directional=directional,
                                      random_walk=tbase["random_walk"], hist_mean=float(tbase["historical_mean"][0]))

        metrics["finetuned"], metrics["scratch"] = tscore(tpred), tscore(spred)
        metrics["target_baselines"] = {name: tscore(p) for name, p in tbase.items()}
        ft_tests = forecast_tests(ty, tpred, tbase["random_walk"], horizon=data.meta["horizon"], directional=directional)
        tests.update({f"finetuned_{k}": v for k, v in ft_tests.items()})
        histories["finetuned"], histories["scratch"] = _history(ft_meta), _history(sc_meta)

    write_json_atomic(metrics, paths.reports / "metrics.json")
    if cfg.evaluate.plots:
        ylabel = {"return": "log return", "close": "log return implied", "volatility": "volatility"}[target]
        write_csv(pd.DataFrame({"date": rows["date"].dt.strftime("%Y-%m-%d"), "actual": y, "forecast": pred}),
                  plots / "forecast.csv")
        plot_forecast(rows["date"], y, pred, plots / "forecast.png", title=f"{ent}: test-period forecast vs actual",
                      ylabel=ylabel)
        if directional:
            write_csv(pd.DataFrame({"date": rows["date"].dt.strftime("%Y-%m-%d"),
                                    "buy_and_hold": np.cumsum(y), "sign_strategy": np.cumsum(np.sign(pred) * y)}),
                      plots / "cumulative.csv")
            plot_cumulative(rows["date"], y, pred, plots / "cumulative.png",
                            title=f"{ent}: trading the forecast's sign vs buy-and-hold (test period)")
        write_json_atomic([{"model": k, **r} for k, h in histories.items() for r in h], plots / "learning_curves.json")
        plot_learning_curves(histories, plots / "learning_curves.png", title="stocks: learning curves (scaled MSE)")
    _write_text(_stocks_report(metrics, data, ent), paths.reports / "report.md")
    return metrics


def _stocks_report(m: dict, data, ent: str) -> str:
    cols = ["mae", "rmse", "mase", "rel_rmse_random_walk", "rel_rmse_historical_mean", "directional_accuracy",
            "up_rate"]
    t = m["tests"]
    p = t.get("diebold_mariano_pvalue")
    beats = m["model"]["rel_rmse_random_walk"] is not None and m["model"]["rel_rmse_random_walk"] < 1
    if p is not None and p < 0.05 and beats:
        verdict = f"The model's squared errors are significantly lower than the random walk's (DM p = {p:.3g})."
    else:
        verdict = (f"The model does **not** beat the random walk with statistical significance (Diebold–Mariano "
                   f"p = {_fmt(p)}); treat its forecasts as no better than 'no change'.")
    lines = [f"# Stocks report ({data.meta['target']}, horizon {data.meta['horizon']}, lookback "
             f"{data.meta['lookback']})", "", f"Test period of **{ent}** — every row on the same windows:", "",
             _table({"model": m["model"], **m["baselines"]}, cols), "", verdict,
             f"Pesaran–Timmermann sign test p = {_fmt(t.get('pesaran_timmermann_pvalue'))}.", ""]
    if "finetuned" in m:
        lines += [f"Transfer to **{data.key('target')}** (test period): fine-tuned from {ent} vs trained from "
                  "scratch on the same target data and budget:", "",
                  _table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols), ""]
    lines += ["Plots: `plots/forecast.png`, `plots/cumulative.png`, `plots/learning_curves.png`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- text
def evaluate_sentiment(cfg, data, paths: CasePaths, *, log) -> dict:
    from ..models.presets import visualize_attention
    from ..stages import ablation_model, fit

    labels = data.meta["labels"]
    model, model_meta = _load(paths.model_dir / "model.pt")

    def preds(m, role):
        b = data.batches(role, "test", batch_size=256)
        out = predict_batches(m, b).argmax(1)
        return b.targets(), out, b

    y, pred, test_b = preds(model, "pretrain")
    train_rows, test_rows = data.rows("pretrain", "train"), data.rows("pretrain", "test")
    test_texts = test_rows["text"].to_numpy()[test_b.order()]
    metrics = {"model": classification_metrics(y, pred, labels), "baselines": {
        "majority": classification_metrics(y, majority_baseline(train_rows["label_id"].to_numpy(), len(y)), labels),
        "tfidf_logreg": classification_metrics(y, tfidf_logreg_baseline(
            train_rows["text"], train_rows["label_id"], test_texts, seed=cfg.train.seed), labels)}}
    histories = {"model": _history(model_meta)}
    if cfg.evaluate.ablation:
        log("training the ablation baseline: GRU without the relational module, same budget")
        seed_everything(cfg.train.seed)
        abl = ablation_model(cfg, data)
        r = fit("sentiment", cfg, data, abl, "pretrain", "ablation", paths, log=log)
        metrics["baselines"]["gru_no_relational"] = classification_metrics(y, preds(abl, "pretrain")[1], labels)
        histories["gru_no_relational"] = r.history
    if data.has_target() and (paths.finetuned_dir / "model.pt").is_file():
        ft, ft_meta = _load(paths.finetuned_dir / "model.pt")
        sc, sc_meta = _load(paths.root / "data" / "models" / "sentiment-scratch" / "model.pt")
        ty, tpred, tb = preds(ft, "target")
        metrics["finetuned"] = classification_metrics(ty, tpred, labels)
        metrics["scratch"] = classification_metrics(ty, preds(sc, "target")[1], labels)
        ttrain, ttest = data.rows("target", "train"), data.rows("target", "test")
        metrics["target_baselines"] = {
            "majority": classification_metrics(ty, majority_baseline(ttrain["label_id"].to_numpy(), len(ty)), labels),
            "tfidf_logreg": classification_metrics(ty, tfidf_logreg_baseline(
                ttrain["text"], ttrain["label_id"], ttest["text"].to_numpy()[tb.order()], seed=cfg.train.seed),
                labels)}
        histories["finetuned"], histories["scratch"] = _history(ft_meta), _history(sc_meta)
    m, b = metrics["model"]["macro_f1"], metrics["baselines"]["tfidf_logreg"]["macro_f1"]
    metrics["tests"] = {"model_minus_tfidf_macro_f1": m - b}
    write_json_atomic(metrics, paths.reports / "metrics.json")

    plots = paths.reports / "plots"
    if cfg.evaluate.plots:
        plot_confusion(metrics["model"]["confusion_matrix"], labels, plots / "confusion.png",
                       title="sentiment: model confusion matrix (test)")
        write_csv(pd.DataFrame({"actual": [labels[i] for i in y], "predicted": [labels[i] for i in pred]}),
                  plots / "confusion.csv")
        write_json_atomic([{"model": k, **r} for k, h in histories.items() for r in h], plots / "learning_curves.json")
        plot_learning_curves(histories, plots / "learning_curves.png", title="sentiment: learning curves (CE loss)")
        if model.has_focus:
            from ..data.window import TextBatches

            order = test_b.order()  # 24 test tweets spread over the whole length range
            pick = order[np.linspace(0, len(order) - 1, 24).round().astype(int)]
            sample = TextBatches([test_b.ids[i] for i in pick], test_b.labels[pick], 24)
            x, lengths, _ = next(iter(sample.iter_epoch(0)))
            w, kind = model.focus(x, lengths)
            visualize_attention(x, w, plots / "attention.png", title=f"{kind} over tokens (24 test tweets)")
    _write_text(_sentiment_report(metrics, data), paths.reports / "report.md")
    return metrics


def _sentiment_report(m: dict, data) -> str:
    cols = ["accuracy", "macro_f1", "macro_recall"]
    diff = m["tests"]["model_minus_tfidf_macro_f1"]
    verdict = (f"The model's macro-F1 is {abs(diff):.3f} {'above' if diff >= 0 else 'below'} the TF-IDF + "
               "logistic-regression baseline on the same test split.")
    lines = ["# Sentiment report", "", "Test split of the pretraining domain (tweets not about Apple):", "",
             _table({"model": m["model"], **m["baselines"]}, cols), "", verdict, ""]
    if "finetuned" in m:
        lines += ["Transfer to Apple tweets (held-out Apple test set): fine-tuned vs trained from scratch on the "
                  "same Apple training data and budget:", "",
                  _table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols), ""]
    lines += ["Plots: `plots/confusion.png`, `plots/learning_curves.png`, `plots/attention.png`.", ""]
    return "\n".join(lines)
