"""Batch prediction from a checkpoint for a new CSV / Parquet file of the training data's schema.

The checkpoint carries everything needed (model config, scalers or tokenizer, window settings), so a
prediction needs no access to the training data. Output: Parquet with one row per window (stocks: entity,
date of the window's last day, forecast) or per text (sentiment: label and class probabilities).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import load_checkpoint
from .config import CaseConfig
from .data.sources import _ingest_stocks, _map_columns, clean_text, read_user_file, write_parquet_atomic
from .data.window import stock_features
from .errors import DataError

__all__ = ["predict_file", "predict_stocks_frame", "predict_texts"]


def _batched(model, xs_iter, total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    outs = []
    with torch.no_grad(), tqdm(total=total, desc=desc, unit="row", disable=not progress or None) as bar:
        for args in xs_iter:
            outs.append(model(*args).float())
            bar.update(len(args[0]))
    return torch.cat(outs).numpy() if outs else np.zeros((0, model.config.output_size), dtype=np.float32)


def predict_stocks_frame(model, meta: dict, prices: pd.DataFrame, *, batch_size: int = 4096,
                         progress: bool = False) -> pd.DataFrame:
    """Canonical long-form prices -> one forecast per window (every day with a full lookback behind it)."""
    L, feats = meta["lookback"], meta["features"]
    missing = [f for f in feats if f.replace("ret_", "").replace("dlog_", "") not in prices]
    if missing:
        raise DataError(f"the model was trained on {', '.join(feats)} but the file lacks the columns for "
                        f"{', '.join(missing)}.")
    mean, scale = np.asarray(meta["scaler"]["mean"]), np.asarray(meta["scaler"]["scale"])
    ts = meta["target_scaler"]
    frames = []
    for entity, part in prices.groupby("entity", sort=False):
        part = part.sort_values("date").reset_index(drop=True)
        f = stock_features(part, horizon=meta["horizon"], target=meta["target"]).iloc[1:].reset_index(drop=True)
        if len(f) < L:
            raise DataError(f"entity {entity!r} has {len(part)} rows; a forecast needs at least {L + 1}.")
        x = ((f[feats].to_numpy(float) - mean) / scale).astype(np.float32)  # (N, F)
        ends = np.arange(L - 1, len(f))
        rows = ends[:, None] + np.arange(-L + 1, 1)  # (W, L) row indices of each window
        xt = torch.from_numpy(x)

        def batches():
            for i in range(0, len(ends), batch_size):
                yield (xt[torch.from_numpy(rows[i:i + batch_size])],)  # (b, L, F)

        pred = _batched(model, batches(), len(ends), progress, f"forecasting {entity}").reshape(-1)
        pred = pred * ts["scale"] + ts["mean"]
        if meta["target"] == "close":
            pred = pred - f["base_log_close"].to_numpy(float)[ends]
        frames.append(pd.DataFrame({"entity": str(entity), "date": f["date"].to_numpy()[ends],
                                    f"forecast_{meta['target']}_{meta['horizon']}d": pred}))
    return pd.concat(frames, ignore_index=True)


def predict_texts(model, tokenizer_json: str, meta: dict, texts: list[str], *, batch_size: int = 512,
                  progress: bool = False) -> pd.DataFrame:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    cleaned = [clean_text(t) for t in texts]
    ids = [e.ids[:meta["max_tokens"]] or [1] for e in tok.encode_batch(cleaned)]
    lengths = np.array([len(i) for i in ids])
    order = np.argsort(lengths, kind="stable")  # length buckets: little padding

    def batches():
        for s in range(0, len(order), batch_size):
            b = order[s:s + batch_size]
            out = np.zeros((len(b), int(lengths[b].max())), dtype=np.int64)
            for r, i in enumerate(b):
                out[r, :lengths[i]] = ids[i]
            yield torch.from_numpy(out), torch.from_numpy(lengths[b])

    logits = _batched(model, batches(), len(order), progress, "classifying")
    probs = np.empty_like(logits)
    probs[order] = torch.softmax(torch.from_numpy(logits), -1).numpy()
    labels = meta["labels"]
    out = pd.DataFrame({"text": texts, "predicted": [labels[i] for i in probs.argmax(1)]})
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def predict_file(checkpoint: str | Path, input_path: str | Path, output_path: str | Path, cfg: CaseConfig, *,
                 progress: bool = True) -> pd.DataFrame:
    """Load ``checkpoint``, read ``input_path`` with the case's column mapping, write predictions Parquet."""
    model, meta = load_checkpoint(checkpoint)
    case = meta.get("case")
    if case not in ("stocks", "sentiment"):
        raise DataError(f"checkpoint {checkpoint} has no case metadata; use a model written by `r2n2 train`.")
    wmeta = json.loads(meta["window_meta"])
    data_cfg = replace(cfg.data, source=str(input_path))
    if case == "stocks":
        prices = _ingest_stocks(replace(cfg, data=data_cfg))
        out = predict_stocks_frame(model, wmeta, prices, progress=progress)
    else:
        df = read_user_file(input_path, na_values=data_cfg.na_values, encoding=data_cfg.encoding)
        text_only = {k: v for k, v in data_cfg.columns.items() if k == "text"}  # labels are not needed here
        df = _map_columns(df, text_only, ("text",), ("text",), str(input_path), "sentiment")
        out = predict_texts(model, meta["tokenizer"], wmeta, df["text"].fillna("").astype(str).tolist(),
                            progress=progress)
    write_parquet_atomic(out, output_path)
    return out
