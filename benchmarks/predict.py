"""Batch-prediction throughput on CPU, feature preparation included.

stocks:    windows/s of the default stocks model (params.yaml) over the built-in S&P 500 + NASDAQ prices:
           log-return features, scaling, lazy windowing and the forward pass (target >= 10,000 windows/s).
sentiment: texts/s of the default sentiment model over the 38k built-in tweets: cleaning, BPE tokenisation,
           length-bucketed batching and the forward pass.

Uses the trained checkpoints under data/models/ when they exist, else freshly initialised models of the
same configuration (throughput does not depend on the weights).

    python benchmarks/predict.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _best_of(fn, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    import torch

    from r2n2.registry import get_case
    from r2n2.cases.base import WindowMeta
    from r2n2.cases.classify import predict_texts
    from r2n2.cases.forecast import predict_prices
    from r2n2.checkpoint import load_checkpoint
    from r2n2.registry import load_params
    from r2n2.cases.sentiment import load_builtin_sentiment
    from r2n2.cases.series import load_builtin_stocks
    from r2n2.models.core import build_model

    params = load_params(ROOT / "params.yaml")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    rows = []
    # -- stocks
    prices = load_builtin_stocks()
    ckpt = ROOT / "data/models/stocks/model.pt"
    if ckpt.is_file():
        model, meta = load_checkpoint(ckpt)
        wmeta, source = WindowMeta.from_dict(json.loads(meta["window_meta"])), "trained checkpoint"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            case, cfg = get_case("stocks"), params.case("stocks")
            wmeta = case.build_windows(cfg, prices, Path(tmp), lambda m: None)
            model = build_model(case.load(cfg, Path(tmp)).model_config()).eval()
        source = "untrained model, default config"
    seconds, out = _best_of(lambda: predict_prices(model, wmeta, prices))
    rows.append(("stocks", source, len(out), "windows", seconds))
    # -- sentiment
    texts = load_builtin_sentiment()["text"].tolist()
    ckpt = ROOT / "data/models/sentiment/model.pt"
    if not ckpt.is_file():
        raise SystemExit("train the sentiment model first (r2n2 train sentiment): its tokenizer is needed")
    model, meta = load_checkpoint(ckpt)
    wmeta, tok = WindowMeta.from_dict(json.loads(meta["window_meta"])), meta["tokenizer"]
    texts = [t for t in texts if t.strip()]
    seconds, out = _best_of(lambda: predict_texts(model, tok, wmeta, texts), reps=2)
    rows.append(("sentiment", "trained checkpoint", len(out), "texts", seconds))

    print(f"{'case':10s} {'model':32s} {'items':>8s} {'seconds':>8s} {'throughput':>16s}")
    for case, source, n, unit, s in rows:
        print(f"{case:10s} {source:32s} {n:8d} {s:8.2f} {n / s:10.0f} {unit}/s")
    w = rows[0][2] / rows[0][4]
    print(f"\nstocks target >= 10,000 windows/s: {'met' if w >= 10_000 else 'NOT met'} ({w:,.0f} windows/s)")


if __name__ == "__main__":
    main()
