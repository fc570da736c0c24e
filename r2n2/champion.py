"""Champion / challenger: a retrained model replaces the champion only if its test metric is not worse."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .data.validate import write_json_atomic
from .paths import CasePaths

__all__ = ["PRIMARY_METRIC", "decide_promotion", "promote", "read_champion_metrics"]

# case -> (metric in metrics.json["model"], True if higher is better)
PRIMARY_METRIC = {"stocks": ("rmse", False), "sentiment": ("macro_f1", True)}


def champion_dir(paths: CasePaths) -> Path:
    return paths.model_dir / "champion"


def read_champion_metrics(paths: CasePaths) -> dict | None:
    f = champion_dir(paths) / "metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None


def decide_promotion(case: str, challenger: dict, champion: dict | None) -> tuple[bool, str]:
    """(promote?, reason). Compares the primary test metric of ``metrics.json['model']``; ties promote."""
    name, higher = PRIMARY_METRIC[case]
    new = challenger.get("model", {}).get(name)
    if new is None:
        return False, f"the challenger has no test {name}; keeping the champion."
    if champion is None:
        return True, f"no champion yet: promoting the challenger ({name} {new:.5g})."
    old = champion.get("model", {}).get(name)
    if old is None:
        return True, f"the champion has no recorded {name}: promoting the challenger ({name} {new:.5g})."
    better_or_equal = new >= old if higher else new <= old
    if better_or_equal:
        return True, f"challenger {name} {new:.5g} is not worse than champion {old:.5g}: promoted."
    return False, (f"challenger {name} {new:.5g} is worse than champion {old:.5g} "
                   f"({'lower' if higher else 'higher'} is worse): kept the champion.")


def promote(paths: CasePaths, metrics: dict) -> Path:
    """Copy the current model and its metrics into champion/ (each file written via temp + rename)."""
    dest = champion_dir(paths)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / ".model.pt.tmp"
    shutil.copyfile(paths.model_dir / "model.pt", tmp)
    os.replace(tmp, dest / "model.pt")
    write_json_atomic(metrics, dest / "metrics.json")
    return dest
