"""Training stages under OpenMP wait policies and thread counts, quiet and beside a busy core, side by side.

Each row runs the real stage command (``r2n2 train <case>``) in a scratch project that reads this checkout's
windows (``data/windows/<case>``, from ``dvc repro`` or ``make run``) and writes its models elsewhere, so the
workspace's outputs are never touched. Training is cut to ``--batches`` batches of one epoch. The time reported
is the epoch's own (training plus its validation pass, from the stage's log file ``data/logs/...``), so the
command's start-up (imports, loading windows) does not dilute the ratios; the whole command's seconds are kept
in the JSON.

Settings (torch's OpenMP runtime is GNU libgomp; each is set in the stage's environment before torch loads):

- ``libgomp default``: ``OMP_WAIT_POLICY`` empty, which the `r2n2` command reads as "leave libgomp's default"
  (a thread that finds no work spins up to 300,000 times before it sleeps).
- ``PASSIVE``: ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once).
- ``spin 10k``, ``spin 1k``, ``spin 100``: ``GOMP_SPINCOUNT`` 10000, 1000 or 100 (spin briefly, then sleep).
- ``r2n2 (auto)``: nothing set, the `r2n2` command decides as it starts: PASSIVE when a 0.1 s sample finds half a
  core or more busy, else libgomp's default (``flows/cli.py``, the default since 2026-12-07).
- ``1 thread``: ``train.threads=1``, the old remedy; float sums can split differently, so its bytes may differ
  (sentiment's do; the stocks model's did not on 2026-12-08).
- ``pinned PASSIVE``: ``OMP_WAIT_POLICY=PASSIVE``, and the stage's process (both its threads) held to the first
  CPU it may use (``sched_setaffinity``); the scheduler then moves the (unpinned) busy loop to the other core. The
  two threads take turns on one core, with the same split of the work (same bytes). Opt-in, like the spin counts.

Torch's inter-op pool is not a lever here: eager training never uses it (it serves ``torch.jit`` fork/wait).

"Beside a busy core" starts one pure-Python busy loop (``while True: pass``) before the stage and stops it
after: the 2-core machine then has one core left for the stage's 2 threads. The settings run interleaved,
``--repeats`` times; medians are reported, so machine noise hits every column alike. For every 2-thread
setting the trained model.pt is compared with the default's: the wait policy must not change the bytes.

Goal (issue 40): a setting whose quiet epoch costs <= 5 % more than libgomp's default, and whose epoch beside a
busy core is <= 1.5 x its own quiet epoch and <= 1.5 x libgomp's default quiet epoch (the "÷ base quiet" column).

    python benchmarks/threads.py                                      # stocks and sentiment, 3 repeats
    python benchmarks/threads.py --cases sentiment --batches 60 --repeats 5 --json threads.json
"""

from __future__ import annotations

import argparse
import hashlib
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

BUSY_LOOP = "while True:\n    pass\n"

# name -> (environment set before torch loads, train.threads)
SETTINGS: dict[str, tuple[dict[str, str], int]] = {
    "libgomp default": ({"OMP_WAIT_POLICY": ""}, 2),
    "PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "spin 10k": ({"GOMP_SPINCOUNT": "10000"}, 2),
    "spin 1k": ({"GOMP_SPINCOUNT": "1000"}, 2),
    "spin 100": ({"GOMP_SPINCOUNT": "100"}, 2),
    "r2n2 (auto)": ({}, 2),
    "1 thread": ({"OMP_WAIT_POLICY": ""}, 1),
    "pinned PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
}
PINNED = {"pinned PASSIVE"}  # settings whose stage runs on CPU 0 only
DEFAULT_SETTINGS = ["libgomp default", "PASSIVE", "spin 10k", "r2n2 (auto)", "1 thread"]
OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PREFECT_API_URL")


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


def run_stage(root: Path, case: str, setting: str, batches: int) -> dict:
    """One training stage: the epoch's seconds, the command's seconds and the model's sha256."""
    extra, threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(extra, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "flows.cli", "train", case, "--set", f"{case}.train.threads={threads}",
           "--set", f"{case}.train.epochs=1", "--set", f"{case}.train.max_batches_per_epoch={batches}"]
    t0 = time.perf_counter()
    pin = (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if setting in PINNED else None
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, preexec_fn=pin)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if f"{threads} torch threads (train.threads)" not in proc.stdout + proc.stderr:
        raise SystemExit(f"the stage did not train with {threads} threads:\n{proc.stdout[-1000:]}")
    log = json.loads((root / "data" / "logs" / case / f"data_models_{case}.json").read_text())
    model = root / "data" / "models" / case / "model.pt"
    return {"epoch": log["epoch_seconds"][0], "command": seconds,
            "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}


def measure(root: Path, case: str, setting: str, beside: bool, batches: int) -> dict:
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if beside else None
    try:
        if busy is not None:
            time.sleep(1)
        return run_stage(root, case, setting, batches)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["stocks", "sentiment"])
    ap.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    ap.add_argument("--batches", type=int, default=40, help="training batches per row (one epoch, cut)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write every run here")
    args = ap.parse_args()
    root = _scratch(args.cases)
    rows = [(s, b) for s in args.settings for b in (False, True)]
    runs: dict[str, dict[tuple[str, bool], list[dict]]] = {}
    try:
        for case in args.cases:
            runs[case] = {r: [] for r in rows}
            for _ in range(args.repeats):
                for setting, beside in rows:
                    runs[case][(setting, beside)].append(measure(root, case, setting, beside, args.batches))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    base = args.settings[0]
    header = (f"{'stage (' + str(args.batches) + ' batches)':22s} {'setting':16s} {'quiet':>8s} {'beside':>8s} "
              f"{'beside/quiet':>12s} {'÷ base quiet':>12s} {'quiet cost':>10s} {'same bytes':>10s}  goal")
    print(header)
    print("-" * len(header))
    for case, by in runs.items():
        med = {r: statistics.median(x["epoch"] for x in v) for r, v in by.items()}
        ref_sha = by[(base, False)][0]["sha256"]
        for setting in args.settings:
            q, b = med[(setting, False)], med[(setting, True)]
            shas = {x["sha256"] for x in by[(setting, False)] + by[(setting, True)]}
            same = "yes" if shas == {ref_sha} else "no"
            cost = q / med[(base, False)] - 1
            vs_base = b / med[(base, False)]
            goal = "met" if cost <= 0.05 and max(b / q, vs_base) <= 1.5 and same == "yes" else "missed"
            print(f"{'train ' + case:22s} {setting:16s} {q:7.2f}s {b:7.2f}s {b / q:12.2f} {vs_base:12.2f} "
                  f"{cost:+10.1%} {same:>10s}  {goal}")
    print(f"\nseconds: median over {args.repeats} interleaved runs of the epoch ({args.batches} training batches and "
          f"the validation pass); beside/quiet: against the setting's own quiet run; ÷ base quiet and quiet cost: "
          f"against '{base}' quiet; same bytes: model.pt equals '{base}''s; goal: quiet cost <= 5 %, both ratios "
          "<= 1.5, same bytes.")
    if args.json:
        args.json.write_text(json.dumps({
            "batches": args.batches, "repeats": args.repeats,
            "runs": {case: {f"{s} | {'beside' if b else 'quiet'}": v for (s, b), v in by.items()}
                     for case, by in runs.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
