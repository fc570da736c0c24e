"""Prefect's overhead on the pipeline: `r2n2 pipeline all` (what `make run` runs: one flow run, a task per stage and
case, each reproduced by DVC) against `dvc repro` alone, side by side on the same machine in one run.

Both build the same 28 stages of a small project (tests/conftest.py's tiny data for the four cases, in git + DVC)
from nothing, in fresh copies of one template, in alternating order (A B, B A, ...); then each runs again on its
built copy, where every stage is up to date. The stage commands are the same processes in both (DVC runs
`r2n2 <stage> <case>`), so the difference is the orchestration: Prefect's temporary server, the flow and task
runs, DVC's API called once per stage, and the log forwarding. The stages here are small, so the same absolute
overhead is what `make run` pays on the built-in data.

    .venv/bin/python benchmarks/pipeline_overhead.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import init_dvc_project, write_tiny_project  # noqa: E402

ARMS = {"dvc repro": ["dvc", "repro"], "r2n2 pipeline all": ["r2n2", "pipeline", "all"]}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # a temporary server, as in `make run`
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="alternating pairs (default 2)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="r2n2-overhead-"))
    template = work / "template"
    template.mkdir()
    write_tiny_project(template)
    init_dvc_project(template)
    full: dict[str, list[float]] = {a: [] for a in ARMS}
    again: dict[str, list[float]] = {a: [] for a in ARMS}
    try:
        for rep in range(args.repeats):
            order = list(ARMS) if rep % 2 == 0 else list(reversed(ARMS))
            for arm in order:
                copy = work / f"{arm.split()[0]}-{rep}"
                shutil.copytree(template, copy, symlinks=True)
                full[arm].append(_timed(ARMS[arm], copy))
                again[arm].append(_timed(ARMS[arm], copy))
                print(f"pair {rep + 1}, {arm}: build {full[arm][-1]:.1f} s, up-to-date rerun {again[arm][-1]:.1f} s",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = "dvc repro", "r2n2 pipeline all"
    print(f"\n{'':<28}{a:>14}{b:>20}{'difference':>12}{'ratio':>8}")
    for label, runs in (("build, 28 stages (median)", full), ("up-to-date rerun (median)", again)):
        ma, mb = statistics.median(runs[a]), statistics.median(runs[b])
        print(f"{label:<28}{ma:>12.1f} s{mb:>18.1f} s{mb - ma:>10.1f} s{mb / ma:>8.2f}")
    pairs = [fb - fa for fa, fb in zip(full[a], full[b])]
    print(f"per-pair build difference (pipeline - dvc repro): {', '.join(f'{d:.1f} s' for d in pairs)}")


if __name__ == "__main__":
    main()
