"""Where operations (retrain, monitor, serve, replay, champion) read and write.

They write only in the case's operations workspace, ``data/ops/<case>/`` (``CasePaths.operations()``): a rolling
retrain's raw / validated / windows / models, ``reports/<case>/monitor.json`` and ``promotion.json``, the replay
(``replay/``: its scratch projects; its report under ``reports/<case>/replay/``) and the champion registry
(``champion/``). They read the research outputs (``data/raw|validated|windows|models/<case>``) but never write
them, so `dvc status` is the same before and after any of them. ``retrain --cuts fixed`` is the one exception,
by design: it runs `dvc repro` of the case's stages, and DVC records what that changes.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import CasePaths

__all__ = ["has_model", "has_windows", "ops_paths", "replay_dir", "trained"]


def ops_paths(case_name: str, root: str | Path = ".") -> CasePaths:
    """The case's operations workspace, ``<root>/data/ops/<case>/``."""
    return CasePaths(case_name, Path(root)).operations()


def replay_dir(case_name: str, root: str | Path = ".") -> Path:
    """The replay's scratch projects (its first model, its retrains): ``data/ops/<case>/replay/``."""
    return ops_paths(case_name, root).ops_dir / "replay"


def trained(case_name: str, root: str | Path = ".") -> CasePaths:
    """The workspace whose windows and trained model operations read: the operations workspace once a rolling
    retrain wrote both there (the newest data), else the research outputs (read only)."""
    ops = ops_paths(case_name, root)
    if (ops.model_dir / "model.pt").is_file() and (ops.windows / "meta.json").is_file():
        return ops
    return CasePaths(case_name, Path(root))


def has_model(case_name: str, root: str | Path = ".") -> bool:
    """A model to monitor: a champion (its history names one), else a trained model in either workspace."""
    ops = ops_paths(case_name, root)
    return ((ops.champion_dir / "model.pt").is_file() or (ops.champion_dir / "history.json").is_file()
            or (trained(case_name, root).model_dir / "model.pt").is_file())


def has_windows(case_name: str, root: str | Path = ".") -> bool:
    """The case's data was windowed here, by the research pipeline or a retrain."""
    return any((p.windows / "meta.json").is_file()
               for p in (CasePaths(case_name, Path(root)), ops_paths(case_name, root)))
