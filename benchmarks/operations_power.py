"""Power of the operations loop's two statistical blocks (issue #20 items 3 and 4), printed as markdown tables.

1. The CUSUM on the loss differential (r2n2.ops.sequential): false alarms per year on calm GARCH-t markets
   (GARCH(1,1), Student-t(5), arch's simulator; the model forecasts noise of 0.3 x the conditional volatility,
   MSE ~1.09 x the random walk's), raw and EWMA-scaled differential, references of 500 and 1,000 days; and the
   delay to planted breaks at live step 250: volatility x 4, a one-sd shift of the returns' mean, a one-sd shift
   of the differential itself, the model's MSE x 2.
2. The promotion gate (r2n2.ops.promotion.gate_power) on the committed research champion's test forecasts
   (data/reports/stocks/plots/forecast.csv, random walk as benchmark) and the sentiment model's test predictions
   (data/reports/sentiment/plots/confusion.csv, majority class as benchmark), slices of 21, 63, 126, 252 rows.

    OMP_NUM_THREADS=1 python benchmarks/operations_power.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r2n2.ops.promotion import gate_power  # noqa: E402
from r2n2.ops.sequential import fit_cusum, scaled_differential  # noqa: E402

LIVE, SEEDS, T0 = 5000, 10, 250


def market(n, seed, noise=0.3):
    from arch.univariate import GARCH, StudentsT, ZeroMean

    am = ZeroMean(None, volatility=GARCH(1, 0, 1), distribution=StudentsT(seed=np.random.default_rng(seed)))
    sim = am.simulate([1e-6, 0.08, 0.9, 5.0], n, burn=500)
    y, sig = sim["data"].to_numpy(), sim["volatility"].to_numpy()
    return y, sig, noise * sig * np.random.default_rng(seed + 10_000).standard_normal(n)


def alarms(chart, d):
    return chart.count_alarms(d)


def diff(y, pred, scaled):
    loss, bench = (y - pred) ** 2, y ** 2
    return scaled_differential(loss, bench) if scaled else loss - bench


def calm_table():
    print("| reference (days) | differential | seeds | live steps | false alarms | ARL (steps) | false alarms / year |")
    print("|---|---|---|---|---|---|---|")
    for ref in (500, 1000):
        for scaled in (False, True):
            n = 0
            for seed in range(SEEDS):
                y, _, p = market(ref + LIVE, seed)
                d = diff(y, p, scaled)
                n += alarms(fit_cusum(d[:ref], seed=0), d[ref:])
            steps = SEEDS * LIVE
            print(f"| {ref} | {'EWMA-scaled' if scaled else 'raw'} | {SEEDS} | {steps:,} | {n} | "
                  f"{steps / max(n, 1):,.0f} | {252 * n / steps:.2f} |")


def broken(kind, seed, ref):
    y, sig, p = market(ref + 600, seed)
    t0 = ref + T0
    y, p = y.copy(), p.copy()
    rng = np.random.default_rng(seed)
    if kind == "volatility x 4":
        y[t0:] *= 4
        p[t0:] *= 4  # the model's noise follows the (new) volatility
    elif kind == "returns' mean + 1 sd":
        y[t0:] += y[:ref].std()
    elif kind == "model MSE x 2":
        p[t0:] += np.sqrt(1 + 0.3 ** 2) * sig[t0:] * rng.standard_normal(len(y) - t0)
    return y, p, t0


def break_table():
    print("| break (from live step 250) | differential | seeds | alarmed before the break | detected within 60 | "
          "median delay (steps) | delays |")
    print("|---|---|---|---|---|---|---|")
    ref = 1000
    for kind in ("volatility x 4", "returns' mean + 1 sd", "differential + 1 sd", "model MSE x 2"):
        for scaled in (False, True):
            before, delays = 0, []
            for seed in range(SEEDS):
                y, p, t0 = broken(kind, 200 + seed, ref)
                d = diff(y, p, scaled)
                if kind == "differential + 1 sd":
                    d = d.copy()
                    d[t0:] += d[:ref].std(ddof=1)
                chart = fit_cusum(d[:ref], seed=0)
                pre = chart.run(d[ref:t0])
                before += pre.alarm is not None
                r = chart.run(d[t0:])  # the chart restarted at the break (after any earlier false alarm)
                delays.append(r.alarm if r.alarm is not None else None)
            found = [x for x in delays if x is not None]
            within = sum(x <= 60 for x in found)
            med = f"{np.median(found):.0f}" if found else "-"
            print(f"| {kind} | {'EWMA-scaled' if scaled else 'raw'} | {SEEDS} | {before} | {within}/{SEEDS} | {med} | "
                  f"{', '.join('-' if x is None else str(x) for x in delays)} |")


def gate_table(kind, y, f, b, n_sim):
    print("| slice rows | equal: promoted (refused by champion leg / by benchmark leg) | 5 % worse: refused | 10 % worse: refused | 20 % worse: refused | "
          "20 %: by champion leg / by benchmark leg | rows for 10 % at 80 % (formula) |")
    print("|---|---|---|---|---|---|---|")
    for L in (21, 63, 126, 252):
        r = gate_power(y, f, b, kind=kind, slice_len=L, n_sim=n_sim, seed=0)
        w = {x["worse"]: x for x in r["worse"]}
        e = r["equal"]
        print(f"| {L} | {e['promoted']:.2f} ({e['refused_by_champion_leg']:.2f} / {e['refused_by_benchmark_leg']:.2f}) | {w[0.05]['refused']:.2f} | {w[0.1]['refused']:.2f} | "
              f"{w[0.2]['refused']:.2f} ± {w[0.2]['se']:.2f} | {w[0.2]['refused_by_champion_leg']:.2f} / "
              f"{w[0.2]['refused_by_benchmark_leg']:.2f} | {r['required_slice_len']['n']} |")
    return r


def main():
    import pandas as pd

    t = time.perf_counter()
    print("## CUSUM: calm GARCH-t markets (arl0 = 1,000, k = 0.5, clip = 3, n_boot = 400)\n")
    calm_table()
    print("\n## CUSUM: planted breaks (reference 1,000 days)\n")
    break_table()
    stocks = pd.read_csv(ROOT / "data/reports/stocks/plots/forecast.csv")
    y, f = stocks["actual"].to_numpy(), stocks["forecast"].to_numpy()
    print(f"\n## Gate power: stocks research champion, {len(y)} test days, random walk benchmark "
          f"(champion MSE / random walk MSE = {np.mean((y - f) ** 2) / np.mean(y ** 2):.3f}), n_sim = 400\n")
    gate_table("forecast", y, f, np.zeros_like(y), 400)
    sent = pd.read_csv(ROOT / "data/reports/sentiment/plots/confusion.csv")
    labels = sorted(set(sent["actual"]) | set(sent["predicted"]))
    ya = sent["actual"].map(labels.index).to_numpy()
    pa = sent["predicted"].map(labels.index).to_numpy()
    maj = np.full_like(ya, np.bincount(ya).argmax())
    print(f"\n## Gate power: sentiment model, {len(ya)} test texts, majority benchmark (accuracy "
          f"{np.mean(pa == ya):.3f} vs {np.mean(maj == ya):.3f}); 'w % worse' = w % of predictions flipped, "
          f"n_sim = 200\n")
    gate_table("classifier", ya, pa, maj, 200)
    print(f"\n(total {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
