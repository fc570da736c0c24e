"""The use-case protocol: everything case-specific lives behind ``UseCase``; the generic stages
(``r2n2.stages``) call only these methods, so a new use case is one module plus one registration line.

Window metadata is typed (``WindowMeta`` and its subclasses), stored as ``meta.json`` beside the windows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..io import write_json_atomic
from ..models.config import ModelConfig

__all__ = ["UseCase", "WindowMeta", "Log", "read_meta", "ROLES", "SPLITS"]

Log = Callable[[str], None]
ROLES = ("pretrain", "target")  # the main model's data, and the transfer target's
SPLITS = ("train", "val", "test")


@dataclass
class WindowMeta:
    """What the window stage decided, shared by every later stage (and stored inside checkpoints)."""

    case: str
    time: str                                  # "date" (calendar dates, ISO) or "arrival" (arrival indices)
    cuts: dict[str, Any]                       # {"start", "val_start", "test_start", "end"}: one calendar for
    #                                            every entity; a split is [its start, the next split's start)
    splits: dict[str, dict[str, Any]]          # per entity / domain: per split {"n", "first", "last"}

    kind: ClassVar[str] = "base"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(self.to_dict(), path)

    @classmethod
    def from_dict(cls, d: dict) -> "WindowMeta":
        kinds = {c.kind: c for c in _subclasses(WindowMeta)}
        d = dict(d)
        sub = kinds.get(d.pop("kind", cls.kind), cls)
        names = {f.name for f in dataclasses.fields(sub)}
        return sub(**{k: v for k, v in d.items() if k in names})

    def split_sizes(self, key: str) -> dict[str, int]:
        return {s: int(self.splits.get(key, {}).get(s, {}).get("n", 0)) for s in SPLITS}


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def read_meta(windows_dir: str | Path, case: str) -> WindowMeta:
    path = Path(windows_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `r2n2 window {case}` first.")
    try:
        return WindowMeta.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path} is not window metadata written by this version ({exc}); rerun "
                        f"`r2n2 window {case}`.") from None


class UseCase:
    """One use case. Subclasses set the class attributes and implement the methods that raise here.

    Stage methods receive ``cfg`` (an instance of ``config_cls``), ``paths`` (``r2n2.paths.CasePaths``) and
    ``log``; they read and write only the data contract of ``paths``.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type]                 # dataclass of this case's params sections
    raw_kind: ClassVar[str]                    # "prices" | "texts": the canonical raw table
    metric: ClassVar[tuple[str, bool]]         # (validation metric of training, higher is better)
    code: ClassVar[tuple[str, ...]] = ()       # extra source files its stages run (DVC deps)
    plots: ClassVar[tuple[tuple, ...]] = ()    # `dvc plots`: (file under reports/<case>/plots, template, x, y)

    # -- config ----------------------------------------------------------------------------------
    def check_config(self, cfg: Any, prefix: str) -> None:
        """Value checks beyond types (choices, ranges); raise ConfigError naming the dotted key."""

    # -- ingest / validate ---------------------------------------------------------------------------
    def read_source(self, cfg: Any) -> pd.DataFrame:
        raise NotImplementedError

    def raw_schema(self, df: pd.DataFrame):
        raise NotImplementedError

    def time_column(self) -> str:
        """Event-time column of the raw table (increments append rows newer than the held ones)."""
        raise NotImplementedError

    def group_column(self) -> str | None:
        return None

    def key_columns(self, df: pd.DataFrame) -> list[str]:
        raise NotImplementedError

    def suite(self, cfg: Any):
        raise NotImplementedError

    # -- windows ---------------------------------------------------------------------------------
    def build_windows(self, cfg: Any, df: pd.DataFrame, out_dir: Path, log: Log) -> WindowMeta:
        raise NotImplementedError

    def load(self, cfg: Any, windows_dir: Path) -> "CaseData":
        raise NotImplementedError

    # -- models ----------------------------------------------------------------------------------
    def neural_baselines(self, cfg: Any) -> dict[str, ModelConfig]:
        """name -> model section of each neural baseline (trained by the baselines stage on the main model's
        data and budget)."""
        return {"no_relational": dataclasses.replace(cfg.model, relational=False)}

    # -- evaluate / serve ------------------------------------------------------------------------
    def evaluate(self, cfg: Any, data: "CaseData", models: dict, paths, log: Log) -> dict:
        raise NotImplementedError

    def predict(self, model, meta: WindowMeta, checkpoint_meta: dict, input_path: str, cfg: Any) -> pd.DataFrame:
        raise NotImplementedError

    def monitor(self, cfg: Any, data: "CaseData", model, model_meta: dict, paths, log: Log) -> dict:
        raise NotImplementedError

    def replay_check(self, *, batch: int | None = None) -> None:
        """Refuse a replay this case cannot run, before anything slow starts (the CLI calls it first).
        Default: the case has no replay."""
        from . import REGISTRY

        have = [n for n, c in REGISTRY.items() if type(c).replay is not UseCase.replay]
        raise DataError(f"`r2n2 replay {self.name}` is not available: the {self.name} case has no replay yet "
                        f"(cases with one: {', '.join(have) or 'none'}). Use `r2n2 monitor {self.name}` and "
                        f"`r2n2 retrain {self.name}` for its operations.")

    def replay(self, cfg: Any, root: Path, *, start: str, end: str, retrain_every: int, monitor_every: int,
               warm_start: bool = False, batch: int | None = None, log: Log = print):
        """The case's simulated calendar over its real history (``r2n2 replay``): an object with
        ``period_ends() -> list[str]``, ``run_until(until: str) -> dict`` (one Prefect sub-run each) and
        ``write_report(out_dir, *, seconds) -> dict`` (the summary, with a one-line ``headline``). ``start``,
        ``end``: in the units of the case's time axis; ``retrain_every``, ``monitor_every``: steps; ``batch``:
        texts per step, for cases whose steps are arrival batches (None: the case's default)."""
        self.replay_check(batch=batch)
        raise NotImplementedError(f"{type(self).__name__}.replay_check passes but replay is not implemented")

    def promotion_scores(self, cfg: Any, data: "CaseData", model, ck: dict, window: dict) -> dict:
        """``{"actual", "pred", "kind", "n_classes", "horizon"}`` of ``model`` (scaled / tokenised with its own
        checkpoint metadata ``ck``) on the rows whose time lies in ``window`` ({"start", "end"}, inclusive)."""
        raise NotImplementedError


class CaseData:
    """The windows of one case, as the trainer and the evaluation see them: ``batches(role, split)``,
    ``rows(role, split)`` and the model config with the data-dependent sizes filled in."""

    def __init__(self, case: UseCase, cfg: Any, windows_dir: str | Path):
        self.case, self.cfg, self.dir = case, cfg, Path(windows_dir)
        self.meta = read_meta(self.dir, case.name)

    def key(self, role: str) -> str | None:
        raise NotImplementedError

    def has_target(self) -> bool:
        key = self.key("target")
        return key is not None and all(n > 0 for n in self.meta.split_sizes(key).values())

    def batches(self, role: str, split: str, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                fraction: float = 1.0):
        raise NotImplementedError

    def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
        raise NotImplementedError

    def checkpoint_metadata(self) -> dict:
        return {"case": self.case.name, "window_meta": json.dumps(self.meta.to_dict(), sort_keys=True)}


def check_choice(prefix: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{prefix}.{key} must be one of {', '.join(map(str, allowed))}, got {value!r}.")


def check_range(prefix: str, key: str, value: float, lo: float, hi: float, *, lo_open=False, hi_open=True) -> None:
    bad = (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi)
    if bad:
        raise ConfigError(f"{prefix}.{key} must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, "
                          f"got {value}.")


def iso(d) -> str:
    return str(pd.Timestamp(d).date())


def fraction_cuts(dates: np.ndarray, val_fraction: float, test_fraction: float) -> tuple:
    """Calendar cut dates at fractions of the sorted unique dates: (val_start, test_start)."""
    u = np.unique(dates)
    n = len(u)
    return u[int(n * (1 - val_fraction - test_fraction))], u[int(n * (1 - test_fraction))]

