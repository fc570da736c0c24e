"""Monitoring the champion on the most recent data: rolling error vs the random walk (stocks) and drift
(population stability index) of inputs, labels and predictions."""

from __future__ import annotations

import numpy as np

from .cases import CaseData
from .champion import champion_dir
from .checkpoint import load_checkpoint
from .config import CaseConfig
from .data.validate import write_json_atomic
from .paths import CasePaths
from .train import predict_batches

__all__ = ["psi", "monitor_case"]


def psi(expected, actual, bins: int = 10) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over quantile bins of ``expected``.

    No maintained library in the stack (scikit-learn, statsmodels, scipy) provides PSI, so it is written
    here; bins with no mass get a small floor so the log stays finite."""
    expected, actual = np.asarray(expected, float).ravel(), np.asarray(actual, float).ravel()
    if len(expected) == 0 or len(actual) == 0:
        return float("nan")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(actual, expected[0]) else float("inf")
    e = np.histogram(np.clip(expected, edges[0], edges[-1]), edges)[0] / len(expected)
    a = np.histogram(np.clip(actual, edges[0], edges[-1]), edges)[0] / len(actual)
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _categorical_psi(expected, actual, k: int) -> float:
    e = np.maximum(np.bincount(expected, minlength=k) / max(len(expected), 1), 1e-4)
    a = np.maximum(np.bincount(actual, minlength=k) / max(len(actual), 1), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def _model(paths: CasePaths):
    path = champion_dir(paths) / "model.pt"
    source = "champion"
    if not path.is_file():
        path, source = paths.model_dir / "model.pt", "latest model (no champion promoted yet)"
    model, _ = load_checkpoint(path)
    return model, source


def monitor_case(case: str, cfg: CaseConfig, root=".") -> dict:
    """Score the champion on the most recent data; ``result['drift']`` says whether to retrain."""
    from pathlib import Path

    paths = CasePaths(case, Path(root))
    data = CaseData(case, cfg, paths.windows)
    model, source = _model(paths)
    m = cfg.monitor
    out: dict = {"case": case, "scored": source, "thresholds": {"psi": m.psi_threshold}}
    if case == "stocks":
        from .data.window import StockBatches, load_stock_split

        ent = data.key("pretrain")
        train = load_stock_split(data.table, data.meta, ent, "train")
        recent = load_stock_split(data.table, data.meta, ent, "test")
        recent.ends = np.arange(len(recent.features))[-m.recent_days:]  # the newest windows, whatever split
        ts = data.meta["target_scaler"]
        pred = predict_batches(model, StockBatches(recent, 512)).ravel() * ts["scale"] + ts["mean"]
        y = recent.targets[recent.ends] * ts["scale"] + ts["mean"]
        val_pred = predict_batches(model, data.batches("pretrain", "val", batch_size=512)).ravel()
        rmse, rw = float(np.sqrt(np.mean((pred - y) ** 2))), float(np.sqrt(np.mean(y ** 2)))
        out["recent_windows"] = len(y)
        out["rmse"], out["random_walk_rmse"] = rmse, rw
        out["error_ratio"] = rmse / rw if rw > 0 else float("nan")
        out["thresholds"]["error_ratio"] = m.error_ratio_threshold
        rows = train.features[train.ends]
        newest = recent.features[recent.ends]
        out["feature_psi"] = {f: psi(rows[:, i], newest[:, i]) for i, f in enumerate(data.meta["features"])}
        out["prediction_psi"] = psi(val_pred * ts["scale"] + ts["mean"], pred)
        reasons = [f"input {f} PSI {v:.3f}" for f, v in out["feature_psi"].items() if v > m.psi_threshold]
        if out["error_ratio"] > m.error_ratio_threshold:
            reasons.append(f"error ratio vs random walk {out['error_ratio']:.3f} > {m.error_ratio_threshold}")
    else:
        t = data.table
        train = t[t["split"] == "train"]
        recent_rows = t.tail(m.recent_days * 30 if m.recent_days < 1000 else m.recent_days)  # newest texts
        from .data.window import TextBatches

        def batches(df):
            return TextBatches([np.asarray(i, dtype=np.int64) for i in df["ids"]], df["label_id"].to_numpy(), 256)

        rb = batches(recent_rows)
        pred = predict_batches(model, rb).argmax(1)
        val = t[t["split"] == "val"]
        val_pred = predict_batches(model, batches(val)).argmax(1)
        k = len(data.meta["labels"])
        out["recent_texts"] = len(recent_rows)
        out["label_psi"] = _categorical_psi(train["label_id"].to_numpy(), recent_rows["label_id"].to_numpy(), k)
        out["length_psi"] = psi(train["ids"].map(len), recent_rows["ids"].map(len))
        out["prediction_psi"] = _categorical_psi(val_pred, pred, k)
        out["recent_accuracy"] = float(np.mean(pred == rb.targets()))
        reasons = [f"{name} {out[name]:.3f}" for name in ("label_psi", "length_psi") if out[name] > m.psi_threshold]
    if out["prediction_psi"] > m.psi_threshold:
        reasons.append(f"prediction PSI {out['prediction_psi']:.3f}")
    out["drift"] = bool(reasons)
    out["reasons"] = reasons
    write_json_atomic(out, paths.reports / "monitor.json")
    return out
