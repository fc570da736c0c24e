"""Champion / challenger on fresh data. The challenger (the model a retrain just trained) and the deployed
champion are both scored on one window that neither trained on: the part of the challenger's validation
period that lies after the champion's cut-off. The final test split is never used to select. The decision
(``r2n2.ops.promotion.decide_promotion``: Diebold–Mariano for forecasts, a paired bootstrap of macro-F1 for
classifiers) goes to the operations workspace, ``data/ops/<case>/reports/<case>/promotion.json``; a promoted
challenger becomes a version of the champion in ``data/ops/<case>/champion/``. The challenger is read from the
workspace that trained it (a rolling retrain: ``data/ops/<case>/models/<case>/``; `retrain --cuts fixed`:
the research ``data/models/<case>/``); nothing here writes a research output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ..cases.base import UseCase, WindowMeta, window_meta_of
from ..checkpoint import load_checkpoint
from ..errors import DataError
from ..io import atomic_path, write_json_atomic
from ..paths import CasePaths
from .promotion import decide_promotion, gate_power
from .workspace import trained

__all__ = ["fresh_window", "promote_if_not_worse", "train_end", "history", "record_version", "rollback", "slice_power",
           "sync_champion"]

_meta = window_meta_of


def _iso(t: pd.Timestamp) -> str:
    """A calendar day as its date; a time of day (texts) in full, so a window never floors into a day's earlier
    texts."""
    return str(t.date()) if t == t.normalize() else t.isoformat()


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
        return {"start": _iso(start), "end": _iso(end)} if challenger.time == "date" else \
            {"start": int(start), "end": int(end)}
    end = conv(challenger.cuts["test_start"])  # exclusive
    if start >= end:
        return None
    if challenger.time == "date":
        last = end - (pd.Timedelta(days=1) if end == end.normalize() else pd.Timedelta(microseconds=1))
        return {"start": _iso(start), "end": _iso(last)}
    return {"start": int(start), "end": int(end) - 1}


def train_end(meta: WindowMeta):
    """The last time a model trained or early-stopped on (the day before its ``test_start``)."""
    if meta.time == "date":
        t = pd.Timestamp(meta.cuts["test_start"])
        return _iso(t - (pd.Timedelta(days=1) if t == t.normalize() else pd.Timedelta(microseconds=1)))
    return int(meta.cuts["test_start"]) - 1


def promote_if_not_worse(case: UseCase, cfg, root: str | Path = ".", *, source: CasePaths | None = None) -> dict:
    """Decide champion vs challenger on fresh data (and the challenger vs the naive benchmark), with the
    case's ``promotion`` section; write promotion.json; copy a promoted challenger. ``source``: the workspace
    whose trained model is the challenger and whose windows it is scored on (default: ``workspace.trained``,
    the operations workspace once a rolling retrain wrote there, else the research outputs). Writes only in the
    operations workspace."""
    case_name = case.name
    p = cfg.promotion
    paths = CasePaths(case_name, Path(root)).operations()
    source = source or trained(case_name, root)
    sync_champion(paths)  # finish a promotion a kill interrupted
    chal_path = source.model_dir / "model.pt"
    chal, chal_ck = load_checkpoint(chal_path)
    chal_meta = _meta(chal_ck)
    champ_path = paths.champion_dir / "model.pt"
    champ, champ_ck = load_checkpoint(champ_path) if champ_path.is_file() else (None, None)
    champ_meta = _meta(champ_ck) if champ_ck else None
    window = fresh_window(chal_meta, champ_meta)
    data = case.load(cfg, source.windows)
    same = champ is not None and _sha256(chal_path) == _sha256(champ_path)
    if champ is not None and chal_meta.cut_rule == "rolling" and (same or chal_meta.cuts["end"] <= champ_meta.cuts["end"]):
        decision = {"window": None, "champion": {"cutoff": champ_meta.cuts["test_start"]},
                    "challenger": {"cutoff": chal_meta.cuts["test_start"]}, "test": {"name": None, "p_value": None},
                    "promoted": False,
                    "reason": (f"no new rows since the champion's data (through {champ_meta.cuts['end']}): the "
                               "challenger " + ("is the champion itself" if same else
                                                f"saw data only through {chal_meta.cuts['end']}") +
                               "; kept the champion.")}
    elif champ is not None and window is None:
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
        if s_champ is not None:
            decision["power"] = slice_power(s_chal, s_champ["pred"], p, seed=cfg.train.seed)
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
    if decision["promoted"]:  # the champion's history first: promotion.json then names the version it promoted
        decision["version"] = record_version(paths, chal_path, chal_meta, decision,
                                             data_sha256=_sha256(source.validated) if source.validated.is_file()
                                             else None)
    write_json_atomic(decision, paths.reports / "promotion.json")
    return decision


def slice_power(scores: dict, champion_pred, p, *, seed: int = 0) -> dict | None:
    """What this decision could have seen: the gate's refusal rates on this very slice for challengers planted from
    the champion's predictions (``r2n2.ops.promotion.gate_power``: 5, 10, 20 % worse, and an equal twin), with the
    sentence the promotion artifact states. Forecasts: 200 draws; classifiers: 50 draws of a 300-resample
    bootstrap (each draw runs the gate four times). None on fewer than 10 rows."""
    n = len(scores["actual"])
    if n < 10:
        return None
    classifier = scores["kind"] == "classifier"
    out = gate_power(scores["actual"], champion_pred, scores.get("benchmark"), kind=scores["kind"], slice_len=n,
                     n_sim=50 if classifier else 200, n_resamples=300, alpha=p.alpha, tolerance=p.tolerance,
                     benchmark_tolerance=p.benchmark_tolerance, seed=seed, n_classes=scores["n_classes"])
    return {"sentence": out["sentence"], "n_sim": out["n_sim"], "worse": out["worse"], "equal": out["equal"],
            "required_slice_len": out["required_slice_len"]}


# -- the champion's versions ----------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def history(paths: CasePaths) -> list[dict]:
    """Every version the case's champion has had, oldest first (``data/ops/<case>/champion/history.json``, committed
    to git: which model served from when, on which data, with which promotion evidence)."""
    import json

    f = paths.champion_dir / "history.json"
    if not f.is_file():
        old = paths.root / "data" / "champion" / paths.case  # where it lived before the operations workspace
        if (old / "history.json").is_file():
            raise DataError(f"the {paths.case} champion registry moved to {paths.champion_dir}; move yours there "
                            f"(versions included) with `mkdir -p {paths.ops_dir} && git mv {old} "
                            f"{paths.champion_dir}`, then commit.")
        return []
    try:
        rows = json.loads(f.read_text())
        assert isinstance(rows, list) and all(isinstance(r, dict) and "version" in r for r in rows)
    except (ValueError, AssertionError):
        raise DataError(f"{f} is not a champion history written by r2n2 (a JSON list of versions); restore it from "
                        "git (`git checkout -- " + str(f) + "`) before promoting or rolling back.") from None
    return rows


def sync_champion(paths: CasePaths) -> str | None:
    """Make ``model.pt`` and ``champion.json`` the version the history names last (the history is the commit
    point of a promotion or rollback: a kill after it and before the copies is finished here). Returns it."""
    rows = history(paths)
    if not rows:
        return None
    entry = rows[-1]
    version, model = entry["version"], paths.champion_dir / "model.pt"
    stored = paths.champion_dir / "versions" / f"{version}.pt"
    if not (model.is_file() and _sha256(model)[:12] == version):
        if not stored.is_file():
            raise DataError(f"the {paths.case} champion's history names version {version}, but {stored} is missing; "
                            "restore it (e.g. `dvc pull`) or roll back to another version.")
        with atomic_path(model) as tmp:
            shutil.copyfile(stored, tmp)
    info = {"version": version, "cutoff": (entry.get("cuts") or {}).get("test_start"), "cuts": entry.get("cuts"),
            "promotion": (entry.get("evidence") or {}).get("window")}
    target = paths.champion_dir / "champion.json"
    import json

    if not target.is_file() or json.loads(target.read_text() or "{}").get("version") != version:
        write_json_atomic(info, target)
    return version


def record_version(paths: CasePaths, model_path: Path, meta: WindowMeta, decision: dict | None, *,
                   action: str = "promote", data_sha256: str | None = None) -> str:
    """Make ``model_path`` the champion: its bytes under ``versions/<sha256[:12]>.pt`` (content-addressed), then
    one entry appended to ``history.json`` (the commit point), then ``model.pt`` and ``champion.json`` from it
    (``sync_champion``). Every write is atomic, so a kill at any point leaves the previous champion with its
    history, or the new entry, which the next reader (retrain, monitor, predict, rollback) completes."""
    import datetime as dt

    rows = history(paths)  # a corrupt history fails here, before anything changes
    version = _sha256(model_path)[:12]
    stored = paths.champion_dir / "versions" / f"{version}.pt"
    if not stored.is_file():
        with atomic_path(stored) as tmp:
            shutil.copyfile(model_path, tmp)
    data = paths.validated
    entry = {"version": version, "action": action,
             "served_from": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "cut_rule": meta.cut_rule, "data_through": meta.cuts["end"], "train_end": train_end(meta),
             "cuts": meta.cuts, "data_sha256": data_sha256 or (_sha256(data) if data.is_file() else None),
             "evidence": None if decision is None else {k: decision.get(k) for k in ("window", "reason")}
             | {"p_value": (decision.get("test") or {}).get("p_value")}}
    write_json_atomic([*rows, entry], paths.champion_dir / "history.json")
    sync_champion(paths)
    return version


def rollback(paths: CasePaths, version: str) -> dict:
    """Serve an earlier version again: its stored bytes become ``model.pt``; the history records the rollback."""
    versions = {e["version"]: e for e in history(paths)}
    match = [v for v in versions if v.startswith(str(version))] if version else []
    if len(match) != 1:
        known = ", ".join(versions) or "none"
        raise DataError(f"{paths.case} has {'no' if not match else 'more than one'} champion version "
                        f"{str(version)[:40]!r}; its versions: {known} (`r2n2 champion history {paths.case}`).")
    stored = paths.champion_dir / "versions" / f"{match[0]}.pt"
    if not stored.is_file():
        raise DataError(f"version {match[0]} of the {paths.case} champion is in its history but its file {stored} "
                        "is missing; restore it (e.g. `dvc pull`) before rolling back.")
    _, ck = load_checkpoint(stored)
    record_version(paths, stored, _meta(ck), None, action=f"rollback to {match[0]}",
                   data_sha256=versions[match[0]].get("data_sha256"))  # the data that version saw
    return history(paths)[-1]
