"""Scale on this machine, two benchmarks:

``panel`` (issue 14): synthetic long-form price panels (fixed seed, business days, OHLCV) of 20, 200 and 500
entities go through every stage of the panel case with its default params (one training epoch): ingest,
validate, window, train, baselines, evaluate and predict, each stage in its own subprocess; it prints seconds,
peak resident memory and rows/s per stage and size, fits each stage's growth exponents of time and of peak memory
(slope of the log against log rows; 1 is linear), and compares training throughput with the built-in indices.
Targets: 500 x 5,000 rows through ingest + validate + window in <= 60 s, < 4 GB (issue 14); train and predict
<= 4 GB peak at 500 stocks (issue 26). ``--stages`` measures only some stages; the stages they need run once,
unmeasured (e.g. ``--stages train predict`` also runs ingest, validate and window).

``workers``, measured side by side on the built-in stocks data:
- Optuna trials per hour of the stocks study with 1 vs 2 concurrent workers (Prefect thread pool);
- DDP training throughput (training windows per second) with 1 vs 2 CPU processes (torchrun, gloo).

    python benchmarks/scale.py panel [--sizes 20 200 500] [--days 5000] [--repeat 2] [--stages train predict]
    python benchmarks/scale.py [workers] [--trials 4] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return proc


PANEL_STAGES = ("ingest", "validate", "window", "train", "baselines", "evaluate", "predict")
_NEEDS = {"validate": ("ingest",), "window": ("validate",), "train": ("window",), "baselines": ("window",),
          "evaluate": ("train", "baselines"), "predict": ("train",)}  # what each stage reads from another


def _with_prerequisites(stages) -> list[str]:
    """``stages`` and every stage they read from, in pipeline order."""
    todo, seen = list(stages), set()
    while todo:
        stage = todo.pop()
        if stage not in seen:
            seen.add(stage)
            todo.extend(_NEEDS.get(stage, ()))
    return [s for s in PANEL_STAGES if s in seen]


def make_panel(entities: int, days: int, path: Path, *, seed: int = 0) -> int:
    """Write a synthetic long-form OHLCV panel (random walks, consistent OHLC) to Parquet; return its rows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=days)
    close = 50 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, (entities, days)), axis=1))  # (E, T)
    spread = np.abs(rng.normal(0, 0.005, (2, entities, days)))
    open_ = close * np.exp(rng.normal(0, 0.005, (entities, days)))
    high = np.maximum(open_, close) * (1 + spread[0])
    low = np.minimum(open_, close) * (1 - spread[1])
    df = pd.DataFrame({"date": np.tile(dates.to_numpy(), entities),
                       "entity": np.repeat([f"S{i:03d}" for i in range(entities)], days),
                       "open": open_.ravel(), "high": high.ravel(), "low": low.ravel(), "close": close.ravel(),
                       "volume": rng.integers(10_000, 5_000_000, entities * days).astype(float)})
    df.to_parquet(path, index=False)
    return len(df)


def _panel_params(folder: Path):
    from r2n2.registry import load_params

    overrides = [f"panel.data.source={folder / 'panel.parquet'}", "panel.window.val_start=null",
                 "panel.window.test_start=null", "panel.train.epochs=1", "panel.train.patience=1"]
    return load_params(ROOT / "params.yaml", overrides).case("panel")


def run_stage(stage: str, folder: Path) -> None:
    """Child process: run one stage of the panel case (default params, one training epoch) on ``folder``'s panel
    and print its seconds, peak RSS and, for training, windows per second as JSON."""
    cfg = _panel_params(folder)
    t0 = time.perf_counter()
    extra = {}
    if stage == "predict":
        import json as _json

        from r2n2.registry import get_case
        from r2n2.cases.base import WindowMeta
        from r2n2.checkpoint import load_checkpoint

        model, ck = load_checkpoint(folder / "data/models/panel/model.pt")
        out = get_case("panel").predict(model, WindowMeta.from_dict(_json.loads(ck["window_meta"])), ck,
                                        str(folder / "panel.parquet"), cfg)
        extra["rows_out"] = len(out)
    else:
        from r2n2.registry import run_stage as run

        run(stage, "panel", cfg, folder)
        if stage == "train":
            meta = _json_load(folder / "data/windows/panel/meta.json")
            train_windows = max(v["train"]["n"] for v in meta["splits"].values())  # dates with a full window
            extra["windows_per_s"] = train_windows / (time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, **extra}))


def _json_load(path: Path) -> dict:
    return json.loads(path.read_text())


def indices_throughput() -> float:
    """Training windows per second of the stocks case (built-in S&P 500) for one epoch, for comparison."""
    from r2n2.registry import load_params
    from r2n2.registry import run_stage as run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_params(ROOT / "params.yaml", ["stocks.train.epochs=1"]).case("stocks")
        for st in ("ingest", "validate", "window"):
            run(st, "stocks", cfg, tmp)
        meta = _json_load(Path(tmp) / "data/windows/stocks/meta.json")
        t0 = time.perf_counter()
        run("train", "stocks", cfg, tmp)
        return meta["splits"][meta["pretrain_entity"]]["train"]["n"] / (time.perf_counter() - t0)


def panel(sizes: list[int], days: int, repeat: int, stages=PANEL_STAGES) -> None:
    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"}
    table, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for entities in sizes:
            folder = Path(tmp) / str(entities)
            folder.mkdir()
            rows = make_panel(entities, days, folder / "panel.parquet")
            for stage in _with_prerequisites(stages):
                runs = []
                # the fastest of a few runs: the machine is shared, noise only adds time
                for _ in range(repeat if stage in stages else 1):
                    if stage == "ingest":  # a held snapshot would make a repeat an (instant) empty increment
                        (folder / "data/raw/panel.parquet").unlink(missing_ok=True)
                    proc = sh([sys.executable, __file__, "_stage", stage, str(folder)], ROOT, env)
                    runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                if stage not in stages:  # run for the stages after it, not measured
                    continue
                seconds, peak = min(m["seconds"] for m in runs), max(m["peak_bytes"] for m in runs)
                table.append((entities, rows, stage, seconds, peak))
                if stage == "train":
                    rates.append((entities, max(m.get("windows_per_s", 0) for m in runs)))
                print(f"{entities:>4d} entities {stage:<9s} {seconds:7.1f} s", file=sys.stderr, flush=True)
    print(f"{'entities':>8s} {'rows':>10s} {'stage':<9s} {'seconds':>8s} {'peak MB':>8s} {'rows/s':>12s}")
    for entities, rows, stage, seconds, peak in table:
        print(f"{entities:8d} {rows:10,d} {stage:<9s} {seconds:8.1f} {peak / 2**20:8.0f} {rows / seconds:12,.0f}")
    print("\ngrowth exponents (slope of log seconds, and of log peak MB, vs log rows; 1 = linear):")
    for stage in PANEL_STAGES:
        pts = [(rows, seconds, peak) for _, rows, s, seconds, peak in table if s == stage]
        if len(pts) > 1:
            logr = np.log([r for r, _, _ in pts])
            time_slope = np.polyfit(logr, np.log([t for _, t, _ in pts]), 1)[0]
            mem_slope = np.polyfit(logr, np.log([m for _, _, m in pts]), 1)[0]
            print(f"  {stage:<9s} time {time_slope:5.2f}   peak memory {mem_slope:5.2f}")
    if rates:
        print("\ntraining throughput (one epoch; a panel window is one date with every stock's lookback):")
        for entities, rate in rates:
            print(f"  panel {entities:>4d} entities: {rate:8.1f} dates/s = {rate * entities:10.0f} stock-windows/s")
        idx = indices_throughput()
        print(f"  stocks (built-in S&P 500, 2-layer RNN 64): {idx:8.1f} windows/s")
    big = max(sizes)
    print()
    early = [(t, p) for e, _, s, t, p in table if e == big and s in ("ingest", "validate", "window")]
    if len(early) == 3:
        print(f"{big} entities x {days} days: ingest + validate + window = {sum(t for t, _ in early):.1f} s "
              f"(target <= 60 s), peak {max(p for _, p in early) / 2**30:.2f} GB (target < 4 GB)")
    for stage in ("train", "predict"):
        peak = [p for e, _, s, _, p in table if e == big and s == stage]
        if peak:
            print(f"{big} entities x {days} days: {stage} peak {peak[0] / 2**30:.2f} GB (target <= 4 GB: "
                  f"{'met' if peak[0] <= 4 * 2**30 else 'missed'})")
    print(f"machine: {os.cpu_count()} CPU cores.")


def scale_out(args) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "GX_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    cli = [sys.executable, "-m", "flows.cli"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        shutil.copy(ROOT / "params.yaml", base / "params.yaml")
        for stage in ("ingest", "validate", "window"):
            sh([*cli, stage, "stocks"], base, env)
        rows = []
        for workers in (1, 2):
            d = Path(tmp) / f"tune-{workers}"
            shutil.copytree(base, d)
            t0 = time.perf_counter()
            sh([*cli, "tune", "stocks", "--set", f"tune.n_trials={args.trials}", "--set",
                f"tune.epochs={args.epochs}", "--set", f"tune.workers={workers}"], d, env)
            seconds = time.perf_counter() - t0
            rows.append((f"Optuna study, {workers} worker(s)", f"{args.trials * 3600 / seconds:,.0f} trials/h",
                         seconds))
        for procs in (1, 2):
            d = Path(tmp) / f"ddp-{procs}"
            shutil.copytree(base, d)
            train = ["train", "stocks", "--set", f"stocks.train.epochs={args.epochs}", "--set",
                     "stocks.train.patience=99"]
            penv = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs))}
            t0 = time.perf_counter()
            if procs == 1:
                sh([*cli, *train], d, penv)
            else:
                sh([torchrun, f"--nproc_per_node={procs}", "--master_addr=127.0.0.1", "--master_port=29533", "-m",
                    "flows.cli", *train], d, penv)
            wall = time.perf_counter() - t0
            from r2n2.checkpoint import load_checkpoint

            _, meta = load_checkpoint(d / "data/models/stocks/model.pt")
            secs = json.loads(meta["epoch_seconds"])
            rate = meta["train_examples"] * len(secs) / sum(secs)
            rows.append((f"DDP training, {procs} process(es)", f"{rate:,.0f} windows/s", wall))
    print(f"{'setup':36s} {'throughput':>18s} {'wall s':>8s}")
    for name, rate, secs in rows:
        print(f"{name:36s} {rate:>18s} {secs:8.1f}")
    print(f"\nmachine: {os.cpu_count()} CPU cores; the wall time of the Optuna rows includes Prefect's temporary "
          "server start, the DDP rows' throughput counts training epochs only.")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_stage":  # internal: one stage in a fresh process
        return run_stage(sys.argv[2], Path(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=("workers", "panel"), default="workers")
    ap.add_argument("--trials", type=int, default=4, help="workers: Optuna trials per study")
    ap.add_argument("--epochs", type=int, default=2, help="workers: epochs per trial / DDP run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 500], help="panel: entities per size")
    ap.add_argument("--days", type=int, default=5000, help="panel: business days per entity")
    ap.add_argument("--repeat", type=int, default=2, help="panel: runs per stage and size (the fastest counts)")
    ap.add_argument("--stages", nargs="+", choices=PANEL_STAGES, default=list(PANEL_STAGES),
                    help="panel: the stages to measure (the stages they need run once, unmeasured)")
    args = ap.parse_args()
    if args.what == "panel":
        panel(args.sizes, args.days, args.repeat, args.stages)
    else:
        scale_out(args)


if __name__ == "__main__":
    main()
