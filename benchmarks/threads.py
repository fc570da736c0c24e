"""Training stages with 1 and 2 torch threads, quiet and beside a second job, side by side in one run.

Each row runs the real stage command (``r2n2 train <case>``) in a scratch project that reads this checkout's
windows (``data/windows/<case>``, from ``dvc repro`` or ``make run``) and writes its models elsewhere, so the
workspace's outputs are never touched. Training is cut to ``--batches`` batches of one epoch so a row takes
seconds, not minutes; the stage's start-up (imports, loading the windows), the epoch's full validation pass and
saving are included, as a user waits for them too. Per-step costs: subtract two runs with different ``--batches``.
"Beside" starts one single-threaded training job (a GRU's train step in a loop) before the stage and stops it
after: the 2-core machine then has one core free for the stage (nothing pins either process to a core).

The configurations of a case run interleaved, ``--repeats`` times, and the median is reported, so machine noise
hits every column alike. Ratios: 2 threads / 1 thread, quiet and beside.

    python benchmarks/threads.py                                    # 4 cases, 2 repeats (about 6 minutes)
    python benchmarks/threads.py --cases sentiment --batches 60 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One single-threaded training job: what "beside another job" means here.
COMPETITOR = """
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
rnn = torch.nn.GRU(32, 128, batch_first=True)
opt = torch.optim.Adam(rnn.parameters())
x = torch.randn(64, 60, 32)
while True:
    opt.zero_grad()
    rnn(x)[0].pow(2).mean().backward()
    opt.step()
"""


def _scratch(cases: list[str]) -> Path:
    """A project folder with this checkout's params.yaml and (linked) windows of ``cases``."""
    root = Path(tempfile.mkdtemp(prefix="r2n2-threads-"))
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    (root / "data" / "windows").mkdir(parents=True)
    for case in cases:
        src = ROOT / "data" / "windows" / case
        if not src.is_dir():
            raise SystemExit(f"no windows for {case} under {src}: run `dvc repro window-{case}` (or make run) first.")
        (root / "data" / "windows" / case).symlink_to(src)
    return root


def stage_seconds(root: Path, case: str, threads: int, batches: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PREFECT_API_URL")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "flows.cli", "train", case, "--set", f"{case}.train.threads={threads}",
           "--set", f"{case}.train.epochs=1", "--set", f"{case}.train.max_batches_per_epoch={batches}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if f"{threads} torch threads (train.threads)" not in proc.stdout + proc.stderr:
        raise SystemExit(f"the stage did not train with {threads} threads:\n{proc.stdout[-1000:]}")
    return seconds


def measure(root: Path, case: str, threads: int, beside: bool, batches: int) -> float:
    competitor = None
    if beside:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
        time.sleep(3)  # let it reach its loop
    try:
        return stage_seconds(root, case, threads, batches)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["stocks", "volatility", "panel", "sentiment"])
    ap.add_argument("--batches", type=int, default=40, help="training batches per row (one epoch, cut)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the medians here")
    args = ap.parse_args()
    root = _scratch(args.cases)
    configs = [(1, False), (2, False), (1, True), (2, True)]
    results = {}
    try:
        for case in args.cases:
            runs = {c: [] for c in configs}
            for _ in range(args.repeats):
                for threads, beside in configs:
                    runs[(threads, beside)].append(measure(root, case, threads, beside, args.batches))
            results[case] = {f"{t} thread{'s' * (t > 1)}, {'beside a job' if b else 'quiet'}": statistics.median(v)
                             for (t, b), v in runs.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    header = (f"{'stage (train, ' + str(args.batches) + ' batches)':28s} {'1 quiet':>9s} {'2 quiet':>9s} "
              f"{'2/1 quiet':>9s} | {'1 beside':>9s} {'2 beside':>9s} {'2/1 beside':>10s}")
    print(header)
    print("-" * len(header))
    for case, r in results.items():
        q1, q2, b1, b2 = r.values()
        print(f"{'train ' + case:28s} {q1:8.1f}s {q2:8.1f}s {q2 / q1:9.2f} | {b1:8.1f}s {b2:8.1f}s {b2 / b1:10.2f}")
    print(f"\nseconds: median of {args.repeats} runs of the whole stage command (start-up included); a ratio < 1 "
          "means 2 threads are faster. 'beside a job': one single-threaded training loop runs on the other core.")
    if args.json:
        args.json.write_text(json.dumps({"batches": args.batches, "repeats": args.repeats, "seconds": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
