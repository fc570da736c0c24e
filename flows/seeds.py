"""`r2n2 seeds <case>`: the case's train, baselines, finetune and evaluate stages with ``evaluate.seeds`` seeds
(default 5) on the pipeline's own windows, in a scratch folder, so the committed single-seed outputs stay as they
are. Its report lands in data/seeds/<case>/ (``metrics.json``, ``report.md``): the across-seed rows of README and
docs/results.md come from these files. Opt-in, like the Optuna search: `r2n2 dvc-yaml --seeds <case>` adds the
stage ``seeds@<case>`` to data/seeds/dvc.yaml, `dvc repro data/seeds/dvc.yaml:seeds@<case>` runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from r2n2.config import with_values
from r2n2.errors import DataError
from r2n2.io import write_bytes_atomic
from r2n2.paths import CasePaths
from r2n2.registry import get_case
from r2n2.stages import run_stage

SEEDS_DIR = Path("data") / "seeds"
STAGES = ("train", "baselines", "finetune", "evaluate")


def run_seeds(case_name: str, cfg, root: str | Path = ".", *, n: int = 5, log=None) -> str:
    """Run the model stages with ``n`` seeds on ``root``'s windows of the case; write data/seeds/<case>/."""
    root = Path(root)
    paths = CasePaths(case_name, root)
    if not paths.windows.is_dir():
        raise DataError(f"no {case_name} windows in {paths.rel(paths.windows)}; run `r2n2 window {case_name}` "
                        "(or `make run`) first.")
    out = root / SEEDS_DIR / case_name
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(paths.windows, CasePaths(case_name, work).windows)
    cfg = with_values(cfg, {"evaluate.seeds": int(n)})
    case = get_case(case_name)
    for name in STAGES:
        run_stage(name, case, cfg, work, log=log)
    reports = CasePaths(case_name, work).reports
    for name in ("metrics.json", "headline.json", "report.md"):  # complete files, renamed into place; the scratch folder goes
        write_bytes_atomic((reports / name).read_bytes(), out / name)
    shutil.rmtree(work)
    return f"{case_name}: {n} seeds evaluated -> {paths.rel(out)}/metrics.json, headline.json, report.md"
