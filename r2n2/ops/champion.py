"""Champion / challenger on fresh data. The challenger (the model `dvc repro` just trained) and the deployed
champion are both scored on one window that neither trained on: the part of the challenger's validation
period that lies after the champion's cut-off. The final test split is never used to select. The decision
(``r2n2.ops.promotion.decide_promotion``: Diebold–Mariano for forecasts, a paired bootstrap of macro-F1 for
classifiers) goes to ``data/reports/<case>/promotion.json``; a promoted challenger is copied to
``data/champion/<case>/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ..cases.base import UseCase, WindowMeta, window_meta_of
from ..checkpoint import load_checkpoint
from ..io import atomic_path, write_json_atomic
from ..paths import CasePaths
from .promotion import decide_promotion

__all__ = ["fresh_window", "promote_if_not_worse"]

_meta = window_meta_of


def fresh_window(challenger: WindowMeta, champion: WindowMeta | None) -> dict | None:
    """[start, end] that neither model trained on and that is not the challenger's test period: the
    challenger's validation period from the later of its start and the champion's cut-off (``test_start``).
    None when that is empty."""
    conv = pd.Timestamp if challenger.time == "date" else int
    start = conv(challenger.cuts["val_start"])
    if champion is not None:
        start = max(start, conv(champion.cuts["test_start"]))
    end = conv(challenger.cuts["test_start"])  # exclusive
    if start >= end:
        return None
    if challenger.time == "date":
        return {"start": str(start.date()), "end": str((end - pd.Timedelta(days=1)).date())}
    return {"start": int(start), "end": int(end) - 1}


def promote_if_not_worse(case: UseCase, cfg, root: str | Path = ".", *, alpha: float = 0.05,
                         tolerance: float = 0.0) -> dict:
    """Decide champion vs challenger on fresh data; write promotion.json; copy a promoted challenger."""
    case_name = case.name
    paths = CasePaths(case_name, Path(root))
    chal, chal_ck = load_checkpoint(paths.model_dir / "model.pt")
    chal_meta = _meta(chal_ck)
    champ_path = paths.champion_dir / "model.pt"
    champ, champ_ck = load_checkpoint(champ_path) if champ_path.is_file() else (None, None)
    champ_meta = _meta(champ_ck) if champ_ck else None
    window = fresh_window(chal_meta, champ_meta)
    data = case.load(cfg, paths.windows)
    if champ is not None and window is None:
        decision = {"window": None, "champion": {"cutoff": champ_meta.cuts["test_start"]},
                    "challenger": {"cutoff": chal_meta.cuts["test_start"]}, "test": {"name": None, "p_value": None},
                    "promoted": False,
                    "reason": (f"no fresh data to compare on: the challenger's validation period ends "
                               f"({chal_meta.cuts['test_start']}) no later than the champion's cut-off "
                               f"({champ_meta.cuts['test_start']}); kept the champion. Move {case_name}.window's "
                               "cut dates forward (or use fractions) so retraining sees the new rows.")}
    else:
        window = window or {"start": chal_meta.cuts["val_start"], "end": chal_meta.cuts["test_start"]}
        s_chal = case.promotion_scores(cfg, data, chal, chal_ck, window)
        s_champ = case.promotion_scores(cfg, data, champ, champ_ck, window) if champ is not None else None
        decision = decide_promotion(actual=s_chal["actual"], champion_pred=None if s_champ is None else s_champ["pred"],
                                    challenger_pred=s_chal["pred"], kind=s_chal["kind"], window=window,
                                    alpha=alpha, tolerance=tolerance, n_classes=s_chal["n_classes"],
                                    horizon=s_chal["horizon"],
                                    champion_id=None if champ_meta is None else f"cut-off {champ_meta.cuts['test_start']}",
                                    challenger_id=f"cut-off {chal_meta.cuts['test_start']}")
    decision["case"] = case_name
    decision["test_split_start"] = chal_meta.cuts["test_start"]  # the window always ends before it
    write_json_atomic(decision, paths.reports / "promotion.json")
    if decision["promoted"]:
        with atomic_path(paths.champion_dir / "model.pt") as tmp:
            shutil.copyfile(paths.model_dir / "model.pt", tmp)
        write_json_atomic({"cutoff": chal_meta.cuts["test_start"], "cuts": chal_meta.cuts,
                           "promotion": decision["window"]}, paths.champion_dir / "champion.json")
    return decision
