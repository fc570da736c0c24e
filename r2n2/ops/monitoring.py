"""Monitoring the deployed model on data after its training cut-off, with thresholds calibrated on its own
training history (``r2n2.ops.drift``). Each case's signals:

- stocks: the input features, the forecast, and the squared error as a ratio to the random walk's;
- sentiment: text length (words) and the share of words unseen in the training period, the predicted classes, and the error rate on texts whose
  labels have arrived;
- panel: the input features, the scores, and the squared error of the cross-sectional target vs zero.

References come from before the cut-off only: inputs from the training period; errors (and the predicted classes
of a classifier) from the validation period, out of sample for the model, so a calm deployment does not look like
a jump. A forecast's distribution is a function of its inputs, so the price cases take its reference from the
whole pre-cut-off history (``prediction_history``): a validation period of three calm years (2013-2015) made the
Q4-2018 sell-off's forecasts an alarm that the inputs, judged against 2000-2012, did not raise. Measured on the
calm synthetic replay (6 seeds, 474 checks): 2.3 % alarms with the history reference, 2.1 % with validation only. The checked
window is the newest ``monitor.window`` rows whose prediction date is at or after the cut-off (``test_start``
of the model's own window metadata): rows the model never trained on or was selected on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..cases import get_case
from ..cases.base import WindowMeta
from ..checkpoint import load_checkpoint
from ..errors import DataError
from ..io import write_json_atomic
from ..paths import CasePaths
from ..train import predict_batches
from .drift import fit_monitor

__all__ = ["deployed_model", "monitor_case", "series_frame", "check_frame", "fit_frame_monitor", "check_window",
           "periods", "monitor_series", "monitor_texts",
           "monitor_panel", "text_frame", "text_vocab", "text_words", "text_monitor_config", "TEXT_SIGNALS"]


def deployed_model(paths: CasePaths):
    """(model, checkpoint metadata, window meta, which): the champion, else the latest trained model."""
    path, which = paths.champion_dir / "model.pt", "champion"
    if not path.is_file():
        path, which = paths.model_dir / "model.pt", "latest model (no champion promoted yet)"
    model, ck = load_checkpoint(path)
    return model, ck, WindowMeta.from_dict(json.loads(ck["window_meta"])), which


def _ts(v):
    return pd.Timestamp(v)


def series_frame(model, mmeta, rows: pd.DataFrame) -> pd.DataFrame:
    """One entity's rows of a windows table (unscaled features, target) -> per date: features, the model's
    forecast (scaled with the model's own scalers), the actual target, the model's and the random walk's
    squared errors."""
    from ..data.window import StockBatches, StockWindows, scale_features

    rows = rows.sort_values("date").reset_index(drop=True)
    L = mmeta.lookback
    if len(rows) < L:
        raise DataError(f"monitoring needs at least {L} rows of {mmeta.pretrain_entity}, got {len(rows)}.")
    ts = mmeta.target_scaler
    ends = np.arange(L - 1, len(rows))
    w = StockWindows(scale_features(rows, mmeta), np.zeros(len(rows)), ends, L)
    pred = predict_batches(model, StockBatches(w, 1024)).reshape(-1) * ts["scale"] + ts["mean"]
    out = rows.iloc[ends][["date", *mmeta.features, "target"]].reset_index(drop=True)
    out["pred"] = pred
    out["loss"] = (out["pred"] - out["target"]) ** 2
    out["bench_loss"] = out["target"] ** 2  # random walk: no change
    return out


def periods(frame: pd.DataFrame, mmeta, time: str = "date"):
    """(training rows, validation rows, post-cut-off rows) of a frame, by the model's own cut dates."""
    conv = _ts if mmeta.time == "date" else int
    t = frame[time]
    val_start, test_start = conv(mmeta.cuts["val_start"]), conv(mmeta.cuts["test_start"])
    return frame[t < val_start], frame[(t >= val_start) & (t < test_start)], frame[t >= test_start]


def fit_frame_monitor(frame: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                      kinds: dict | None = None, n_classes: dict | None = None, bench: bool = True,
                      seed: int = 0, val_inputs: tuple[str, ...] = (), n_null: int = 300,
                      prediction_history: bool = False):
    """The calibrated monitor of a model, from its own pre-cut-off rows: inputs from the training period;
    signals the training period defines (e.g. words unseen in it) and the model's own outputs and errors from
    the validation period, out of sample like the post-cut-off window. Returns (monitor, window size)."""
    train, val, _ = periods(frame, mmeta, time)
    refs = {f: (val if f in val_inputs else train)[f].to_numpy() for f in inputs}
    refs["prediction"] = (pd.concat([train, val]) if prediction_history else val)["pred"].to_numpy()
    window = min(mcfg.window, max(mcfg.min_samples, len(val) // 4))
    mon = fit_monitor(refs, window=window, kinds=kinds, n_classes=n_classes, loss=val["loss"].to_numpy(),
                      benchmark_loss=val["bench_loss"].to_numpy() if bench else None,
                      family_rate=mcfg.family_rate, min_samples=mcfg.min_samples, seed=seed, n_null=n_null)
    return mon, window


def check_window(mon, post: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                 bench: bool = True) -> dict:
    """Check the newest post-cut-off rows with a fitted monitor; a JSON-ready result with a one-line verdict."""
    result = mon.check({**{f: post[f].to_numpy() for f in inputs}, "prediction": post["pred"].to_numpy()},
                       loss=post["loss"].to_numpy(), benchmark_loss=post["bench_loss"].to_numpy() if bench else None)
    if len(post) == 0:
        span = {"start": None, "end": None, "n": 0}
    elif mmeta.time == "date":
        span = {"start": str(post[time].min())[:10], "end": str(post[time].max())[:10], "n": int(len(post))}
    else:
        span = {"start": int(post[time].min()), "end": int(post[time].max()), "n": int(len(post))}
    return {"alarm": result["alarm"], "reasons": result["reasons"], "family_rate": result["family_rate"],
            "per_signal_quantile": result["quantile"], "window": span, "cutoff": mmeta.cuts["test_start"],
            "signals": result["signals"],
            "verdict": ("ALARM: " + "; ".join(result["reasons"])) if result["alarm"] else
                       (f"no drift ({len(post)} post-cut-off rows checked)" if len(post) >= mcfg.min_samples else
                        f"no verdict: {len(post)} rows after the cut-off {mmeta.cuts['test_start']}, fewer than "
                        f"monitor.min_samples {mcfg.min_samples}")}


def check_frame(frame: pd.DataFrame, mmeta, mcfg, *, inputs: list[str], time: str = "date",
                kinds: dict | None = None, n_classes: dict | None = None, bench: bool = True,
                seed: int = 0, val_inputs: tuple[str, ...] = (), prediction_history: bool = False) -> dict:
    """Fit the calibrated monitor on the frame's pre-cut-off rows; check its newest post-cut-off window."""
    try:
        mon, window = fit_frame_monitor(frame, mmeta, mcfg, inputs=inputs, time=time, kinds=kinds,
                                        n_classes=n_classes, bench=bench, seed=seed, val_inputs=val_inputs,
                                        prediction_history=prediction_history)
    except DataError as exc:  # too little history to calibrate: say so, never alarm on a guess
        return {"alarm": False, "reasons": [], "family_rate": mcfg.family_rate, "per_signal_quantile": None,
                "window": {"start": None, "end": None, "n": 0}, "cutoff": mmeta.cuts["test_start"], "signals": {},
                "verdict": f"no verdict: the model's history is too short to calibrate the monitor ({exc})"}
    post = periods(frame, mmeta, time)[2].tail(window)
    return check_window(mon, post, mmeta, mcfg, inputs=inputs, time=time, bench=bench)


def monitor_series(mcfg, data, model, mmeta, log) -> dict:
    rows = data.table[data.table["entity"] == mmeta.pretrain_entity]
    frame = series_frame(model, mmeta, rows)
    return check_frame(frame, mmeta, mcfg, inputs=list(mmeta.features), prediction_history=True)


_WORD = re.compile(r"\w+")
# The text signals, shared by the deployed monitor and the replay: inputs (length, share of unseen words), the
# predicted classes (chi-square) and the error rate on labelled texts (no benchmark). New-word rates are judged
# against the validation period: a training text's words are in the vocabulary by definition.
TEXT_SIGNALS = {"inputs": ["length", "new_word_rate"], "time": "time", "kinds": {"prediction": "categorical"},
                "bench": False, "val_inputs": ("new_word_rate",)}


def text_words(texts) -> list[list[str]]:
    """Lower-cased word tokens (regex ``\\w+``) of each text: the unit of the length and new-word signals."""
    return [_WORD.findall(str(x).lower()) for x in texts]


def text_vocab(texts) -> set[str]:
    """Every word of ``texts`` (a model's training period): the reference of the new-word rate."""
    return {w for ws in text_words(texts) for w in ws}


def text_frame(texts: pd.DataFrame, pred, vocab: set[str]) -> pd.DataFrame:
    """The monitor's per-text frame: ``time``, ``length`` (words), ``new_word_rate`` (share of words not in
    ``vocab``), ``pred`` (class id) and ``loss`` (0/1 error where the label has arrived, else NaN).

    ``texts`` has columns ``time``, ``text`` and ``label_id`` (NaN: not labelled yet); ``pred`` pairs with it row
    by row. The deployed monitor and the replay both build their frames here."""
    words = text_words(texts["text"])
    pred = np.asarray(pred)
    label = texts["label_id"].to_numpy(dtype=float)
    labelled = np.isfinite(label)  # accuracy only where the label has arrived
    return pd.DataFrame({"time": texts["time"].to_numpy(), "length": [len(ws) for ws in words],
                         "new_word_rate": [float(np.mean([w not in vocab for w in ws])) if ws else 0.0
                                           for ws in words],
                         "pred": pred, "loss": np.where(labelled, pred != np.nan_to_num(label, nan=-1), np.nan)})


def text_monitor_config(mcfg):
    """The text monitor's settings: ``monitor.window`` counts 30 texts per unit (a window of 60 is 1,800 texts)."""
    return dataclasses.replace(mcfg, window=mcfg.window * 30)


def monitor_texts(mcfg, data, model, mmeta, ck: dict, log) -> dict:
    from ..cases.classify import predict_texts

    t = data.table[(data.table["domain"] == "source") & (data.table["split"] != "excluded")].reset_index(drop=True)
    t = t.tail(60000)  # the newest texts are enough for the reference and the window
    probs = predict_texts(model, ck["tokenizer"], mmeta, t["text"].tolist())
    before = t["time"] < (_ts(mmeta.cuts["val_start"]) if mmeta.time == "date" else int(mmeta.cuts["val_start"]))
    frame = text_frame(t, probs[[f"prob_{l}" for l in mmeta.labels]].to_numpy().argmax(1),
                       text_vocab(t.loc[before, "text"]))
    frame = frame[frame["loss"].notna()].reset_index(drop=True)
    return check_frame(frame, mmeta, text_monitor_config(mcfg), n_classes={"prediction": len(mmeta.labels)},
                       **TEXT_SIGNALS)


def monitor_panel(mcfg, data, model, mmeta, log) -> dict:
    from ..cases.crosssection import model_view, score_matrix

    view = model_view(data.table, mmeta)
    scores = score_matrix(model, view, None)
    t = data.table.set_index(["date", "entity"])
    s = scores.stack().rename("pred")
    frame = t.join(s, how="inner").reset_index()
    frame["loss"] = (frame["pred"] - frame["target"]) ** 2
    frame["bench_loss"] = frame["target"] ** 2
    # one value per date: the cross-sectional means (dates are the unit of time, not stock-days)
    daily = frame.groupby("date")[[*mmeta.features, "pred", "loss", "bench_loss"]].mean().reset_index()
    daily["pred"] = frame.groupby("date")["pred"].std().to_numpy()  # dispersion of the scores
    return check_frame(daily, mmeta, mcfg, inputs=["vol_20d", "ret_20d"], prediction_history=True)


def monitor_case(case_name: str, cfg, root: str | Path = ".", *, log=None) -> dict:
    """Check the deployed model of a case on its post-cut-off data; writes data/reports/<case>/monitor.json."""
    paths = CasePaths(case_name, Path(root))
    case = get_case(case_name)
    model, ck, mmeta, which = deployed_model(paths)
    data = case.load(cfg, paths.windows)
    out = {"case": case_name, "scored": which, **case.monitor(cfg, data, model, ck, paths, log or (lambda m: None))}
    write_json_atomic(out, paths.reports / "monitor.json")
    return out
