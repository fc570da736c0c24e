"""Scale-out on this machine, measured side by side in one run on the built-in stocks data:

- Optuna trials per hour of the stocks study with 1 vs 2 concurrent workers (Prefect thread pool);
- DDP training throughput (training windows per second) with 1 vs 2 CPU processes (torchrun, gloo).

    python benchmarks/scale.py [--trials 4] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
