"""`r2n2 verify`: did a run reproduce the committed report? Each headline number of a case's ``metrics.json`` in the
working tree beside the committed one (``git show HEAD:<path>``), with its difference and tolerance.

The tolerance of a number is 3 × its sd over seeds where the committed report holds one (``metrics.json["seeds"]``,
n ≥ 2: ``evaluate.seeds`` > 1): two runs that differ by float rounding drift apart like two seeds at worst, and the
difference of two seeds' draws has sd √2 · sd, so 3 sd passes such a difference about 97 % of the time. Without a
seed spread (the default one-seed run) it is ``DEFAULT_RTOL`` of the committed value (at least ``DEFAULT_ATOL``):
anything beyond float rounding in the evaluation is reported, because the same lock file, thread count and CPU give
identical bytes. The headline numbers are the ones ``r2n2 headline`` shows: the model and every baseline on the
case's headline metrics.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

__all__ = ["DEFAULT_RTOL", "DEFAULT_ATOL", "SEED_SDS", "REPRODUCED", "MOVED", "Row", "read_pair", "compare", "render"]

DEFAULT_RTOL = 1e-6      # relative tolerance without a seed spread: float rounding, not a retrained model
DEFAULT_ATOL = 1e-12     # ... and its floor, for numbers that are exactly 0
SEED_SDS = 3.0           # with a seed spread: this many sds over seeds
REPRODUCED, MOVED = "reproduced within tolerance", "MOVED"


@dataclass(frozen=True)
class Row:
    row: str                     # "model" or a baseline's name
    metric: str
    committed: float | None
    now: float | None
    tolerance: float
    source: str                  # which tolerance: "3 sd of 5 seeds" or "default rel 1e-06"

    @property
    def diff(self) -> float | None:
        return None if self.committed is None or self.now is None else self.now - self.committed

    @property
    def moved(self) -> bool:
        d = self.diff
        return d is None or math.isnan(d) or abs(d) > self.tolerance


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def read_pair(path: Path, case: str, rev: str = "HEAD") -> tuple[dict, dict, bool]:
    """(committed metrics at ``rev``, metrics in the working tree, whether the two files are byte-identical).
    ``path`` is relative to the working directory (``git show rev:./path``)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist in the working tree: run `make run` (or `dvc repro evaluate-{case}`) "
                        "first, then `r2n2 verify` compares its numbers with the committed ones.")
    try:
        proc = subprocess.run(["git", "show", f"{rev}:./{path.as_posix()}"], capture_output=True)
    except FileNotFoundError:
        raise DataError(f"r2n2 verify compares {path} with its committed version, but git is not installed; install "
                        "git and run it in the project's clone.") from None
    if proc.returncode != 0:
        err = " ".join(proc.stderr.decode(errors="replace").split())[:200]
        if "not a git repository" in err:
            raise DataError(f"{Path.cwd()} is not inside a git repository, so there is no committed {path} to compare "
                            f"with; run `r2n2 verify` in the project's clone (git said: {err}).")
        raise DataError(f"{path} is not in git at {rev}, so there is nothing to compare the run with: commit a run's "
                        f"reports first (`git add dvc.lock data/reports`), or name a commit that has them with --rev "
                        f"(git said: {err}).")
    now = path.read_bytes()
    return (_parse(proc.stdout.decode(errors="replace"), f"{path} at {rev}"),
            _parse(now.decode(errors="replace"), str(path)), proc.stdout == now)


def _parse(text: str, what: str) -> dict:
    try:
        metrics = json.loads(text)
    except ValueError:
        metrics = None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("model"), dict):
        raise DataError(f"{what} is not a metrics file written by `r2n2 evaluate` (no \"model\" mapping).")
    return metrics


def _headline_keys(metrics: dict, keys: tuple[str, ...]) -> list[str]:
    """The same choice as ``r2n2.evaluate.report.headline``: the case's headline metrics the model has, else its
    first four numbers."""
    model = metrics.get("model", {})
    return [k for k in keys if k in model] or [k for k, v in model.items() if _number(v) is not None][:4]


def _tolerance(committed: dict, row: str, metric: str, value: float | None, rtol: float) -> tuple[float, str]:
    spread = ((committed.get("seeds") or {}).get(row) or {}).get(metric) or {}
    sd, n = _number(spread.get("sd")), spread.get("n")
    if sd is not None and isinstance(n, int) and n >= 2:
        return SEED_SDS * sd, f"{SEED_SDS:g} sd of {n} seeds"
    return max(rtol * abs(value or 0.0), DEFAULT_ATOL), f"default rel {rtol:g}"


def compare(committed: dict, now: dict, keys: tuple[str, ...], *, rtol: float = DEFAULT_RTOL) -> list[Row]:
    """Every headline number (the model and each baseline on the headline metrics of the committed report)."""
    metrics = _headline_keys(committed, keys)
    names = ["model", *[b for b, v in (committed.get("baselines") or {}).items() if isinstance(v, dict)]]
    names += [b for b, v in (now.get("baselines") or {}).items() if isinstance(v, dict) and b not in names]
    rows = []
    for name in names:
        c_row = committed["model"] if name == "model" else (committed.get("baselines") or {}).get(name) or {}
        n_row = now["model"] if name == "model" else (now.get("baselines") or {}).get(name) or {}
        for m in metrics:
            c, n = _number(c_row.get(m)), _number(n_row.get(m))
            if c is None and n is None:  # "-" in the headline table on both sides
                continue
            tol, source = _tolerance(committed, name, m, c, rtol)
            rows.append(Row(name, m, c, n, tol, source))
    return rows


def _g(v: float | None, spec: str) -> str:
    return "missing" if v is None else format(v, spec)


def render(case: str, path: Path, rev: str, rows: list[Row], *, identical: bool) -> str:
    """The case's table and a last line: "<case>: reproduced within tolerance (...)" or "<case>: MOVED: ..."."""
    lines = [f"{case}: {path} vs {rev}: " + ("byte-identical" if identical else "differs; headline numbers:"),
             f"  {'row':<18} {'metric':<20} {'committed':>11} {'now':>11} {'diff':>10} {'tolerance':>9}  "
             f"{'tolerance from':<17}  verdict"]
    for r in rows:
        diff = "n/a" if r.diff is None else format(r.diff, "+.2e")
        lines.append(f"  {r.row[:18]:<18} {r.metric[:20]:<20} {_g(r.committed, '.6g'):>11} {_g(r.now, '.6g'):>11} "
                     f"{diff:>10} {r.tolerance:>9.2e}  {r.source:<17}  {MOVED if r.moved else REPRODUCED}")
    moved = [r for r in rows if r.moved]
    if not moved:
        lines.append(f"{case}: {REPRODUCED} ({len(rows)} headline numbers)")
    else:
        what = "; ".join(f"{r.row} {r.metric} " + ("missing" if r.diff is None else f"by {r.diff:+.3g}") +
                         f" (tolerance {r.tolerance:.2g}, {r.source})" for r in moved)
        lines.append(f"{case}: {MOVED}: {len(moved)} of {len(rows)} headline numbers: {what}")
    return "\n".join(lines)
