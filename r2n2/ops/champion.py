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

__all__ = ["fresh_window", "promote_if_not_worse", "train_end"]

_meta = window_meta_of


def fresh_window(challenger: WindowMeta, champion: WindowMeta | None) -> dict | None:
    """[start, end] that neither model trained on or was early-stopped on. Rolling cuts (deployment): the
    challenger's holdout (``test_start`` .. ``end``) from the later of its start and the champion's cut-off.
    Fixed cuts (research): never the test period, so the challenger's validation period from the later of its
    start and the champion's cut-off (the challenger early-stopped on it: a weaker gate, said in the reason).
    None when that is empty."""
    conv = pd.Timestamp if challenger.time == "date" else int
    rolling = challenger.cut_rule == "rolling"
    start = conv(challenger.cuts["test_start" if rolling else "val_start"])
    if champion is not None:
        start = max(start, conv(champion.cuts["test_start"]))
    if rolling:
        end = conv(challenger.cuts["end"])  # inclusive
        if start > end:
            return None
        return {"start": str(start.date()), "end": str(end.date())} if challenger.time == "date" else \
            {"start": int(start), "end": int(end)}
    end = conv(challenger.cuts["test_start"])  # exclusive
    if start >= end:
        return None
    if challenger.time == "date":
        return {"start": str(start.date()), "end": str((end - pd.Timedelta(days=1)).date())}
    return {"start": int(start), "end": int(end) - 1}


def train_end(meta: WindowMeta):
    """The last time a model trained or early-stopped on (the day before its ``test_start``)."""
    if meta.time == "date":
        return str((pd.Timestamp(meta.cuts["test_start"]) - pd.Timedelta(days=1)).date())
    return int(meta.cuts["test_start"]) - 1


def promote_if_not_worse(case: UseCase, cfg, root: str | Path = ".") -> dict:
    """Decide champion vs challenger on fresh data (and the challenger vs the naive benchmark), with the
    case's ``promotion`` section; write promotion.json; copy a promoted challenger."""
    case_name = case.name
    p = cfg.promotion
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
                    "reason": ((f"no fresh data to compare on: the challenger's holdout ends ({chal_meta.cuts['end']}) "
                                f"before the champion's cut-off ({champ_meta.cuts['test_start']}); kept the champion. "
                                "Retrain after new rows arrive.") if chal_meta.cut_rule == "rolling" else
                               (f"no fresh data to compare on: the challenger's validation period ends "
                                f"({chal_meta.cuts['test_start']}) no later than the champion's cut-off "
                                f"({champ_meta.cuts['test_start']}); kept the champion. Move {case_name}.window's "
                                f"cut dates forward, or deploy with {case_name}.window.cuts=rolling, so retraining "
                                "sees the new rows."))}
    else:
        window = window or {"start": chal_meta.cuts["val_start"], "end": chal_meta.cuts["test_start"]}
        s_chal = case.promotion_scores(cfg, data, chal, chal_ck, window)
        s_champ = case.promotion_scores(cfg, data, champ, champ_ck, window) if champ is not None else None
        decision = decide_promotion(actual=s_chal["actual"], champion_pred=None if s_champ is None else s_champ["pred"],
                                    challenger_pred=s_chal["pred"], kind=s_chal["kind"], window=window,
                                    alpha=p.alpha, tolerance=p.tolerance, n_classes=s_chal["n_classes"],
                                    benchmark_pred=s_chal.get("benchmark"), benchmark_id=s_chal.get("benchmark_id"),
                                    benchmark_tolerance=p.benchmark_tolerance,
                                    horizon=s_chal["horizon"],
                                    champion_id=None if champ_meta is None else f"cut-off {champ_meta.cuts['test_start']}",
                                    challenger_id=f"cut-off {chal_meta.cuts['test_start']}")
    decision["case"] = case_name
    decision["cut_rule"] = chal_meta.cut_rule
    if chal_meta.cut_rule != "rolling" and decision.get("window"):
        decision["reason"] += (" (fixed cut dates: the window is the challenger's early-stopping period; "
                               f"{case_name}.window.cuts=rolling decides on a holdout neither model saw)")
    for who, meta in (("challenger", chal_meta), ("champion", champ_meta)):
        if meta is not None and isinstance(decision.get(who), dict):
            decision[who]["train_end"] = train_end(meta)  # the last day it trained or early-stopped on
    if chal_meta.cut_rule != "rolling":
        decision["test_split_start"] = chal_meta.cuts["test_start"]  # the window always ends before it
    write_json_atomic(decision, paths.reports / "promotion.json")
    if decision["promoted"]:
        with atomic_path(paths.champion_dir / "model.pt") as tmp:
            shutil.copyfile(paths.model_dir / "model.pt", tmp)
        write_json_atomic({"cutoff": chal_meta.cuts["test_start"], "cuts": chal_meta.cuts,
                           "promotion": decision["window"]}, paths.champion_dir / "champion.json")
    return decision
