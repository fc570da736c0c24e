"""Is the stocks monitor's alarm real? The false-alarm rate of the deployed checks on calm stretches of the same
series (docs/operations.md, "Is the Q4 2018 stocks alarm real?").

Run in a project whose stocks model is trained (`r2n2 ingest|validate|window|train stocks`); reads the model and
its windows (the champion, else the latest trained model, as `r2n2 monitor` does) and writes nothing. Prints:

- the check `r2n2 monitor stocks` makes (its newest post-cut-off window), and the market over that window;
- the error signal (the model's squared error over 60 days as a ratio to the random walk's) with the deployed,
  validation-calibrated threshold, applied to every 60-day window of the whole series: the share of windows
  above it by year, the runs of alarming windows (episodes), the rate over calm years, and the same quantile
  computed over the whole pre-cut-off history instead of the validation period;
- every check (all signals and the CUSUM) the monitor would have made weekly since the cut-off, and how many
  alarmed inside a calm stretch;
- a scale-free reading of the same 60 days: the Diebold-Mariano t of the loss differential (Newey-West).

    OMP_NUM_THREADS=1 python benchmarks/monitor_calm.py [--calm 2016-03-01 2018-09-28] [--every 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

CALM_YEARS = (2003, 2004, 2005, 2006, 2007, 2009, 2010, 2012, 2013, 2014, 2016, 2017)  # no known break


def _newey_west_t(d: np.ndarray, lags: int = 5) -> float:
    dm, n = d - d.mean(), len(d)
    var = dm @ dm / n + 2 * sum((1 - k / (lags + 1)) * (dm[k:] @ dm[:-k]) / n for k in range(1, lags + 1))
    return float(d.mean() / np.sqrt(var / n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calm", nargs=2, default=("2016-03-01", "2018-09-28"), metavar=("START", "END"),
                    help="a calm stretch after the cut-off: checks whose window lies inside it are counted")
    ap.add_argument("--every", type=int, default=5, help="days between the replayed checks (the serve cadence: 5)")
    args = ap.parse_args()

    from r2n2.ops.monitoring import check_signals, check_window, deployed_model, fit_frame_monitor, periods
    from r2n2.ops.workspace import trained
    from r2n2.paths import CasePaths
    from r2n2.registry import get_case, load_params

    case, cfg = get_case("stocks"), load_params("params.yaml", None).case("stocks")
    model, ck, mmeta, which = deployed_model(CasePaths("stocks").operations())
    frame, signals = case.monitor_frame(cfg, case.load(cfg, trained("stocks").windows), model, ck)
    out = check_signals(frame, mmeta, cfg.monitor, signals)
    err, w = out["signals"]["error"], out["window"]
    thr, n = err["threshold"], w["n"]
    print(f"## The check ({which})\n\nwindow {w['start']}..{w['end']} ({n} days): error ratio "
          f"{err['statistic']:.4f}, threshold {thr:.4f}, p {err['p_value']:.3g}; alarm {out['alarm']} "
          f"({', '.join(k for k, s in out['signals'].items() if s['alarm']) or 'none'})")
    last = frame.tail(n)
    val = periods(frame, mmeta)[1]
    print(f"market over it: {np.expm1(last['target'].sum()):+.1%}, mean log return {last['target'].mean():.5f}, "
          f"daily sd {last['target'].std():.4f}; the model's mean forecast {last['pred'].mean():.5f} "
          f"(validation period {val['pred'].mean():.5f}); DM t of loss minus the random walk's (Newey-West, 5 lags) "
          f"{_newey_west_t((last['loss'] - last['bench_loss']).to_numpy()):.2f}")

    f = frame.reset_index(drop=True)
    f["ratio"] = f["loss"].rolling(n).sum() / f["bench_loss"].rolling(n).sum()
    f["window_mean"], f["window_sd"] = f["target"].rolling(n).mean(), f["target"].rolling(n).std()
    g = f.dropna(subset=["ratio"]).copy()
    g["alarm"], g["year"] = g["ratio"] > thr, g["date"].dt.year
    cut = pd.Timestamp(mmeta.cuts["test_start"])
    hist = g[g["date"] < cut]
    q = out["per_signal_quantile"]
    print(f"\n## The error ratio over every {n}-day window, the deployed threshold {thr:.4f}\n\n"
          f"all windows: {int(g['alarm'].sum())} of {len(g)} above ({g['alarm'].mean():.2%}; nominal per signal "
          f"{1 - q:.2%}); calm years {CALM_YEARS[0]}..{CALM_YEARS[-1]} ({len(CALM_YEARS)} years): "
          f"{int(g[g['year'].isin(CALM_YEARS)]['alarm'].sum())} of {int(g['year'].isin(CALM_YEARS).sum())}\n"
          f"pre-cut-off history ({len(hist)} windows from {hist['date'].min().date()}): {q:.2%} point "
          f"{np.quantile(hist['ratio'], q):.4f}; share at or above this check's ratio "
          f"{(hist['ratio'] >= err['statistic']).mean():.2%}\n"
          f"correlation of the ratio with the window's mean return {np.corrcoef(g['ratio'], g['window_mean'])[0, 1]:.2f}, "
          f"with its daily sd {np.corrcoef(g['ratio'], g['window_sd'])[0, 1]:.2f}\n")
    by_year = g.groupby("year").agg(windows=("alarm", "size"), above=("alarm", "sum"), max_ratio=("ratio", "max"),
                                    sd=("window_sd", "mean"))
    print(by_year.round(4).to_markdown())
    a = g[g["alarm"]]
    runs = (a.index.to_series().diff() > 5).cumsum().to_numpy()
    print("\nepisodes (windows ending within 5 days of each other):")
    for _, run in a.groupby(runs):
        print(f"  {run['date'].min().date()}..{run['date'].max().date()}: {len(run)} windows, max {run['ratio'].max():.3f}")

    mon, window = fit_frame_monitor(f, mmeta, cfg.monitor, inputs=list(signals.inputs),
                                    prediction_history=signals.prediction_history)
    post = periods(f, mmeta)[2].reset_index(drop=True)
    rows = []
    for end in range(window, len(post) + 1, args.every):
        part = post.iloc[end - window:end]
        res = check_window(mon, part, mmeta, cfg.monitor, inputs=list(signals.inputs))
        rows.append({"start": part["date"].iloc[0], "end": part["date"].iloc[-1], "alarm": res["alarm"],
                     "signals": ",".join(k for k, s in res["signals"].items() if s["alarm"])})
    r = pd.DataFrame(rows)
    calm = r[(r["start"] >= args.calm[0]) & (r["end"] <= args.calm[1])]
    print(f"\n## Every {args.every}th-day check since the cut-off (all windowed signals)\n\n{len(r)} checks, "
          f"{int(r['alarm'].sum())} alarms ({'; '.join(f'{e.date()} {s}' for e, s in zip(r[r.alarm]['end'], r[r.alarm]['signals']))}); "
          f"inside the calm stretch {args.calm[0]}..{args.calm[1]}: {int(calm['alarm'].sum())} of {len(calm)}")


if __name__ == "__main__":
    from r2n2.errors import R2N2Error

    try:
        main()
    except R2N2Error as e:  # e.g. no trained stocks model yet: one paragraph, no traceback
        raise SystemExit(f"monitor_calm: {e} Train the stocks model first (make run, or r2n2 train stocks).")
