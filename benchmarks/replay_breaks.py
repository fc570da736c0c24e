"""Detection delay of planted breaks inside the replay of the deployed loop, under monthly retraining (issue #20
item 3): the real stages (ingest, validate, window, train) on synthetic daily prices, `SeriesReplay` with
retraining every 21 days and a weekly monitor, the tiny model settings of tests/test_ops.py.

Series: 1,300 business days of calm Student-t(5) log returns (daily sd 0.8 %) with an AR(1) coefficient of 0.5
(a learnable structure); from day 1,000 one break:
- ``vol4``: the volatility x 4;
- ``mean1sd``: the returns' mean shifts up by one daily sd;
- ``arflip``: the AR coefficient flips to -0.5 (a model that learnt +0.5 now forecasts the wrong sign; its MSE
  against the realised return grows about 2.3 x while the random walk's grows about 1.3 x);
- ``calm``: no break (false alarms).
Replay of days 900..1,299; printed: first alarm (trading days after day 1,000) and alarms among the checks
before it, per seed, as markdown.

    OMP_NUM_THREADS=1 python benchmarks/replay_breaks.py [--seeds 3 4 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BREAK_AT, N, START = 1000, 1300, 900
TINY = {"validate.min_rows": 50, "window.lookback": 10, "window.val_start": None, "window.test_start": None,
        "model.hidden_size": 8, "train.epochs": 2, "data.columns": {"close": "Price"}}


def prices(kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    eps = rng.standard_t(5, N) / np.sqrt(5 / 3) * 0.008
    phi = np.full(N, 0.5)
    sd = np.full(N, 1.0)
    mu = np.zeros(N)
    if kind == "vol4":
        sd[BREAK_AT:] = 4.0
    elif kind == "mean1sd":
        mu[BREAK_AT:] = 0.008 * np.sqrt(1 / (1 - 0.25))  # one sd of the AR(1) returns
    elif kind == "arflip":
        phi[BREAK_AT:] = -0.5
    r = np.zeros(N)
    for t in range(1, N):
        r[t] = mu[t] + phi[t] * (r[t - 1] - mu[t - 1]) + sd[t] * eps[t]
    dates = pd.bdate_range("2010-01-01", periods=N)
    return pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Price": 100 * np.exp(np.cumsum(r))}), dates


def replay(kind: str, seed: int) -> dict:
    from r2n2.config import with_values
    from r2n2.ops.replay import SeriesReplay
    from r2n2.registry import get_case, load_params, run_stage

    df, dates = prices(kind, seed)
    df.to_csv("prices.csv", index=False)
    cfg = with_values(load_params(ROOT / "params.yaml").case("stocks"), {**TINY, "data.source": "prices.csv"})
    for stage in ("ingest", "validate"):
        run_stage(stage, "stocks", cfg)
    rp = SeriesReplay(get_case("stocks"), cfg, Path("."), str(dates[START].date()), str(dates[-1].date()),
                      retrain_every=21, monitor_every=5, log=lambda m: None)
    rp.run_until()
    tl = rp.timeline()
    pos = np.searchsorted(np.asarray(dates), tl["date"].to_numpy())
    after = tl[(pos >= BREAK_AT) & tl["alarm"].to_numpy()]
    before = tl[pos < BREAK_AT]
    return {"delay": None if after.empty else int(np.searchsorted(np.asarray(dates), after["date"].iloc[0]) - BREAK_AT),
            "chart": None if after.empty else bool(after["cusum_alarm"].iloc[0]),
            "alarms_before": int(before["alarm"].sum()), "checks_before": int(len(before) // 5),
            "alarms_after": int(tl.loc[pos >= BREAK_AT, "alarm"].sum()), "checks_after": int((pos >= BREAK_AT).sum() // 5)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--kinds", nargs="+", default=["calm", "vol4", "mean1sd", "arflip"])
    args = ap.parse_args()
    print("| series | seed | first alarm after day 1,000 (trading days) | by the CUSUM | alarms / checks before | "
          "alarms / checks after |")
    print("|---|---|---|---|---|---|")
    for kind in args.kinds:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as d:
                os.chdir(d)
                t0 = time.perf_counter()
                r = replay(kind, seed)
                os.chdir(ROOT)
            delay = "none" if r["delay"] is None else str(r["delay"])
            print(f"| {kind} | {seed} | {delay if kind != 'calm' else '-'} | {r['chart'] if kind != 'calm' else '-'} | "
                  f"{r['alarms_before']} / {r['checks_before']} | {r['alarms_after']} / {r['checks_after']} |  "
                  f"<!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
