"""The use-case protocol: everything case-specific lives behind ``UseCase``; the generic stages
(``r2n2.stages``) call only these methods, so a new use case is one module plus one registration line.

Window metadata is typed (``WindowMeta`` and its subclasses), stored as ``meta.json`` beside the windows.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from ..config import FinetuneConfig, MonitorConfig, PromotionConfig, TrainConfig
from ..data.sources import DataConfig, read_parquet
from ..errors import ConfigError, DataError
from ..io import write_json_atomic
from ..models.config import ModelConfig

__all__ = ["UseCase", "WindowMeta", "MonitorSignals", "window_meta_of", "Log", "read_meta", "ROLES", "SPLITS",
           "CALIBRATION_FILE", "write_predict_calibration", "read_predict_calibration"]

Log = Callable[[str], None]
ROLES = ("pretrain", "target")  # the main model's data, and the transfer target's
SPLITS = ("train", "val", "test")
CALIBRATION_FILE = "calibration.json"  # in data/reports/<case>/: what predict applies to the evaluated model


def predict_batches(model, batches, **kw) -> np.ndarray:
    """``r2n2.train.predict_batches`` (a model's outputs for every example of a batch source), torch loaded on
    first use: the case modules are imported by the data stages, which run without torch."""
    from ..train import predict_batches as predict  # the one place a case loads torch

    return predict(model, batches, **kw)



@dataclass
class CaseConfig:
    """The params sections every case has, in this order. A kind's config subclasses it and gives ``validate``,
    ``window`` and ``evaluate`` their types (and ``model`` / ``train`` their defaults); a case's config
    subclasses the kind's to change a section's defaults."""
    data: DataConfig = field(default_factory=DataConfig)
    validate: Any = None                 # the kind's data checks
    window: Any = None                   # the kind's windows and cut dates
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: Any = None                 # the kind's scoring
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

@dataclass
class WindowMeta:
    """What the window stage decided, shared by every later stage (and stored inside checkpoints)."""

    case: str
    time: str                                  # "date" (calendar dates, ISO) or "arrival" (arrival indices)
    cuts: dict[str, Any]                       # {"start", "val_start", "test_start", "end"}: one calendar for
    #                                            every entity; a split is [its start, the next split's start)
    splits: dict[str, dict[str, Any]]          # per entity / domain: per split {"n", "first", "last"}
    cut_rule: str = "fixed"                    # "fixed" (research: a test split) | "rolling" (deployment: the
    #                                            "test" split is the newest holdout, the promotion slice)

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


@dataclass(frozen=True)
class MonitorSignals:
    """What a case's monitor checks, as data (the kind fills it; ``r2n2.ops.monitoring`` checks it): the input
    columns, the time column, the kind of each signal, whether an error ratio to a benchmark is checked, which
    inputs take their reference from the validation period, whether the forecast's reference is the whole
    pre-cut-off history, and how many rows one unit of ``monitor.window`` counts (texts: 30)."""

    inputs: tuple[str, ...]
    time: str = "date"
    kinds: dict = field(default_factory=dict)              # signal -> "continuous" | "categorical"
    n_classes: dict = field(default_factory=dict)          # categorical signal -> number of classes
    bench: bool = True                                     # check the error as a ratio to the benchmark's
    val_inputs: tuple[str, ...] = ()                       # inputs judged against the validation period
    prediction_history: bool = False                       # forecast reference: the whole pre-cut-off history
    window_unit: int = 1                                   # rows per unit of monitor.window


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def window_meta_of(ck: dict) -> WindowMeta:
    """The typed window metadata a checkpoint carries (stored as JSON text in its metadata)."""
    try:
        return WindowMeta.from_dict(json.loads(ck["window_meta"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"the checkpoint carries no window metadata this version can read ({exc}); retrain it "
                        "with `r2n2 train`.") from None


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
    kind: ClassVar[str] = ""                   # "series" | "text" | "crosssection": what drivers dispatch on
    config_cls: ClassVar[type]                 # dataclass of this case's params sections
    metric: ClassVar[tuple[str, bool]]         # (validation metric of training, higher is better)
    plots: ClassVar[tuple[tuple, ...]] = ()    # `dvc plots`: (file under reports/<case>/plots, template, x, y)
    headline_metrics: ClassVar[tuple[str, ...]] = ()  # the test metrics the end of `make run` shows
    main_baseline: ClassVar[str | None] = None  # the baseline a reader judges the model by first (starred there)
    # the naive benchmark an ablation is judged against too (baseline name, metric, higher is better): a model that
    # beats an ablation worse than this benchmark shows the ablation's loss, not skill (r2n2.evaluate.engine)
    benchmark: ClassVar[tuple[str, str, bool] | None] = None
    probabilities: ClassVar[bool] = False      # predict writes class probabilities (calibrated at evaluate; --sets)
    predict_keys: ClassVar[tuple[str, ...]] = ()  # keys of the case's block predict reads (how --input is read);
    #                                            predict refuses every other --set key: it would be ignored

    @property
    def kind_name(self) -> str:
        """The built-in case this object is (``stocks`` also for an instance ``brent`` of it)."""
        return type(self).name

    def instance(self, name: str) -> "UseCase":
        """This case under another name: a user's dataset as a named instance (``brent: {case: stocks, ...}`` in
        params.yaml), with its own paths, stages, Prefect runs and artifacts, and this case's behaviour."""
        import copy

        other = copy.copy(self)
        other.name = name  # an attribute of the copy; the class keeps its own name
        return other

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
        """Predictions for the rows of a user's file, with the checkpoint's own window metadata ``meta``. A case
        with ``probabilities`` also takes ``calibration=`` (the evaluate stage's, or None: raw) and ``sets=`` (a
        coverage level of conformal label sets)."""
        raise NotImplementedError

    def predict_rule(self, meta: WindowMeta | None = None) -> str:
        """How many rows predict writes for the input's rows, in words: with the checkpoint's ``meta`` in its
        numbers, without it in its symbols (``--help``)."""
        raise NotImplementedError

    def monitor_frame(self, cfg: Any, data: "CaseData", model, ck: dict) -> tuple[pd.DataFrame, "MonitorSignals"]:
        """The deployed monitor's input: one row per time step of the windows' history with the signal columns
        (inputs, ``pred``, ``loss`` and, with a benchmark, ``bench_loss``) scored by ``model`` with its own
        checkpoint metadata ``ck``, and the signals to check (``r2n2.ops.monitoring`` does the checking)."""
        raise NotImplementedError

    def example(self, folder: Path, *, seed: int = 0) -> dict[str, Any]:
        """Write a small synthetic source of this kind's shape under ``folder``; return the config values
        (``{"section.key": value}``) that make every stage run on it in seconds (``r2n2.conformance``)."""
        raise NotImplementedError

    def replay_check(self, *, batch: int | None = None) -> None:
        """Refuse a replay this case cannot run, before anything slow starts (the CLI calls it first).
        Default: the case has no replay (``r2n2.ops.loop.make_replay`` covers the series, cross-section and text
        kinds)."""
        raise DataError(f"`r2n2 replay {self.name}` is not available: the {self.name} case ({self.kind or 'no'} "
                        f"kind) has no replay yet (replays cover series, cross-section and text cases). Use "
                        f"`r2n2 monitor {self.name}` and `r2n2 retrain {self.name}` for its operations.")

    def promotion_scores(self, cfg: Any, data: "CaseData", model, ck: dict, window: dict) -> dict:
        """``{"actual", "pred", "kind", "n_classes", "horizon"}`` of ``model`` (scaled / tokenised with its own
        checkpoint metadata ``ck``) on the rows whose time lies in ``window`` ({"start", "end"}, inclusive)."""
        raise NotImplementedError


class CaseData:
    """The windows of one case, as the trainer and the evaluation see them: ``batches(role, split)``,
    ``rows(role, split)`` and the model config with the data-dependent sizes filled in."""

    table_file: ClassVar[str] = ""             # the windows table in the windows folder

    def __init__(self, case: UseCase, cfg: Any, windows_dir: str | Path):
        self.case, self.cfg, self.dir = case, cfg, Path(windows_dir)
        self.meta = read_meta(self.dir, case.name)

    @classmethod
    def in_memory(cls, case: UseCase, cfg: Any, meta: WindowMeta, table: pd.DataFrame) -> "CaseData":
        """Windows held in memory, not read from a windows folder (the replay trains on what is known at each
        step): ``table`` is what ``table_file`` holds, with its ``split`` column."""
        data = cls.__new__(cls)
        data.case, data.cfg, data.dir, data.meta, data._table = case, cfg, None, meta, table
        return data

    @property
    def table(self) -> pd.DataFrame:
        if not hasattr(self, "_table"):
            self._table = read_parquet(self.dir / self.table_file, f"{self.case.name} windows")
        return self._table

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



# -- what predict applies to a model: the evaluate stage's record, read back by predict ---------------------------
def _sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_predict_calibration(paths, block: dict | None) -> Path:
    """``<reports>/calibration.json``: what predict applies to the model the evaluate stage scored, the train
    stage's ``model.pt`` of ``paths`` (``r2n2.paths.CasePaths``), identified by its sha256 (evaluate never
    rewrites that file: it is the train stage's output). ``block``: a classifier's temperature and conformal
    thresholds (``r2n2.evaluate.calibration.predict_calibration``), or None for point forecasts, which predict
    writes as the model gives them."""
    model = paths.model_dir / "model.pt"
    return write_json_atomic({"model": paths.rel(model), "model_sha256": _sha256(model), "calibration": block},
                             paths.reports / CALIBRATION_FILE)


def read_predict_calibration(path: str | Path, model_path: str | Path) -> tuple[dict | None, str]:
    """The calibration ``path`` (a calibration.json) records for the checkpoint ``model_path``, and where it
    came from; or (None, why not): the file is missing or unreadable, holds none, or was fitted for other bytes."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} does not exist (the evaluate stage writes it)"
    try:
        rec = json.loads(path.read_text())
        sha, block = str(rec["model_sha256"]), rec["calibration"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{path} is not a calibration file this version reads (rerun the evaluate stage)"
    if block is None:
        return None, f"{path} holds no calibration"
    mine = _sha256(model_path)
    if sha != mine:
        return None, (f"{path} was fitted for {rec.get('model', 'another model')} (sha256 {sha[:12]}), not for "
                      f"this model (sha256 {mine[:12]})")
    return block, f"temperature {block['temperature']:.4g}, fitted at evaluate: {path}"
