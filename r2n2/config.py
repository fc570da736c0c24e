"""Configuration: one dataclass per params.yaml section, loaded with `--set` overrides and strict keys.

params.yaml holds one block per use case (``stocks``, ``sentiment``), each with the sections below, plus
optional top-level ``serve`` and ``monitor`` blocks read by the orchestration layer. Unknown or mistyped
keys are an error that names the full dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .models.config import ModelConfig

__all__ = ["DataConfig", "ValidateConfig", "WindowConfig", "TrainConfig", "FinetuneConfig", "EvaluateConfig",
           "MonitorConfig", "ServeConfig", "TuneConfig", "CaseConfig", "Params", "load_params", "apply_overrides", "CASES"]

CASES = ("stocks", "sentiment")


from .data.sources import DataConfig  # noqa: E402  (the data section lives beside the code that reads it)


@dataclass
class ValidateConfig:
    min_rows: int = 100                  # fewer rows (per entity) fail validation
    min_text_length: int = 1             # sentiment: characters, after normalisation
    max_text_length: int = 1000          # sentiment: characters
    max_duplicate_share: float = 0.05    # sentiment: share of duplicated texts allowed


@dataclass
class WindowConfig:
    lookback: int = 30                   # stocks: steps per window (slide 8)
    horizon: int = 1                     # stocks: predict this many days ahead
    target: str = "return"               # stocks: return | close | volatility
    val_fraction: float = 0.15           # chronological (stocks) / stratified (sentiment) validation share
    test_fraction: float = 0.15          # held-out test share
    vocab_size: int = 8000               # sentiment: tokenizer vocabulary
    max_tokens: int = 64                 # sentiment: longer texts are truncated
    pretrain_entity: str = "sp500"       # stocks transfer: pretrain on this entity ...
    finetune_entity: str = "nasdaq"      # ... and fine-tune on this one
    finetune_pattern: str = r"\bapple|aapl|iphone|ipad|\bmac(?:book)?\b|itunes|\bios\b"  # sentiment transfer target ("ios", not "curious")
    seed: int = 0                        # split seed (sentiment)


@dataclass
class TrainConfig:
    epochs: int = 20                     # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    lr: float = 1e-3                     # AdamW learning rate
    weight_decay: float = 1e-4
    grad_clip: float = 1.0               # max gradient norm
    patience: int = 4                    # epochs without validation improvement before stopping
    scheduler: str = "plateau"           # plateau | cosine | none
    class_weights: bool = True           # classification: weight classes by inverse frequency
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda
    max_batches_per_epoch: int = 0       # 0 = all; small values make smoke runs fast
    label_smoothing: float = 0.0         # classification: cross-entropy label smoothing in [0, 1)
    ema_decay: float = 0.0               # > 0: validate and keep an exponential moving average of the
    #                                      weights (updated every step), e.g. 0.999; 0 = off


@dataclass
class FinetuneConfig:
    epochs: int = 10
    lr: float = 1e-3
    freeze_encoder: bool = True          # train only the new head at first
    unfreeze_after: int = 0              # unfreeze the encoder after N epochs (0 = never) ...
    unfreeze_lr_factor: float = 0.1      # ... with lr * this factor
    train_fraction: float = 1.0          # share of the target's training split to use (small-data transfer)


@dataclass
class EvaluateConfig:
    ablation: bool = True                # train a GRU without the relational module on the same budget
    plots: bool = True


@dataclass
class MonitorConfig:
    recent_days: int = 60                # the newest windows (stocks) or 30x as many texts scored by `monitor`
    psi_threshold: float = 0.2           # population-stability index above which drift is flagged
    error_ratio_threshold: float = 1.1   # stocks: model RMSE / random-walk RMSE that triggers retraining


@dataclass
class ServeConfig:
    retrain_cron: str = "0 22 * * 1-5"   # scheduled retraining: weekdays 22:00 (after the US close)
    monitor_cron: str = "30 21 * * 1-5"  # monitoring shortly before it
    timezone: str = "UTC"
    cases: list[str] = field(default_factory=lambda: ["stocks", "sentiment"])  # what retrain / monitor cover


@dataclass
class TuneConfig:
    n_trials: int = 20                   # Optuna trials per study
    timeout: int = 1800                  # seconds for the whole study (0 = no limit)
    workers: int = 1                     # trials run concurrently (Prefect task runner workers)
    dask_address: str | None = None      # run trials on this Dask scheduler (prefect-dask) when set
    epochs: int = 6                      # per trial; the median pruner stops bad trials earlier
    seed: int = 0


@dataclass
class CaseConfig:
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass
class Params:
    cases: dict[str, CaseConfig]
    serve: ServeConfig
    tune: TuneConfig
    raw: dict[str, Any]                  # the merged mapping, for hashing and reports

    def case(self, name: str) -> CaseConfig:
        if name not in self.cases:
            raise ConfigError(f"unknown case {name!r}: params define {', '.join(sorted(self.cases))}.")
        return self.cases[name]


def _check_type(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(key, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be {hint}, got {value!r}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}.")
        return {str(k): _check_type(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}.")
        return [_check_type(f"{key}[]", v, args[0]) for v in value]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}.")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}.")
        return value
    return value


def _build(cls, data: Any, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix} must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            close = [n for n in names if n.replace("_", "") == str(key).replace("_", "")]
            hint = f" (did you mean {prefix}.{close[0]}?)" if close else ""
            raise ConfigError(f"unknown key {prefix}.{key}{hint}; allowed: {', '.join(names)}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}.{name}")
        else:
            kwargs[name] = _check_type(f"{prefix}.{name}", value, hint)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # ModelConfig's own validation
        msg = str(exc)
        raise ConfigError(msg.replace("model.", f"{prefix}.", 1) if msg.startswith("model.") else
                          f"{prefix}: {msg}") from None


def _check_case(name: str, case: CaseConfig) -> None:
    choice = {"data.missing": (case.data.missing, ("fail", "drop", "ffill")),
              "window.target": (case.window.target, ("return", "close", "volatility")),
              "train.scheduler": (case.train.scheduler, ("plateau", "cosine", "none")),
              "train.device": (case.train.device, ("auto", "cpu", "cuda"))}
    for key, (value, allowed) in choice.items():
        if value not in allowed:
            raise ConfigError(f"{name}.{key} must be one of {', '.join(allowed)}, got {value!r}.")
    for key, value in (("window.lookback", case.window.lookback), ("window.horizon", case.window.horizon),
                       ("train.epochs", case.train.epochs), ("train.batch_size", case.train.batch_size),
                       ("validate.min_rows", case.validate.min_rows)):
        if value < 1:
            raise ConfigError(f"{name}.{key} must be >= 1, got {value}.")
    w = case.window
    if not (0 < w.val_fraction < 1 and 0 < w.test_fraction < 1 and w.val_fraction + w.test_fraction < 0.9):
        raise ConfigError(f"{name}.window.val_fraction and test_fraction must be in (0, 1) and sum below 0.9, "
                          f"got {w.val_fraction} and {w.test_fraction}.")
    for key, value in (("train.label_smoothing", case.train.label_smoothing),
                       ("train.ema_decay", case.train.ema_decay)):
        if not 0 <= value < 1:
            raise ConfigError(f"{name}.{key} must be in [0, 1), got {value}.")
    if not 0 < case.finetune.train_fraction <= 1:
        raise ConfigError(f"{name}.finetune.train_fraction must be in (0, 1], got {case.finetune.train_fraction}.")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.path=value`` strings; values are parsed as YAML (``2``, ``[".", "NA"]``, ``null``)."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. stocks.train.epochs=2.")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key part.")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc.problem}).") from None
        _set_dotted(raw, key, value)
    return raw


def parse_params(raw: dict) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError("params must be a mapping with one block per case (stocks, sentiment).")
    cases = {}
    for key, value in raw.items():
        if key in CASES:
            case = _build(CaseConfig, value, key)
            _check_case(key, case)
            cases[key] = case
        elif key not in ("serve", "tune"):
            raise ConfigError(f"unknown top-level key {key!r} in params; allowed: {', '.join(CASES)}, serve, tune.")
    serve = _build(ServeConfig, raw.get("serve"), "serve")
    bad = [c for c in serve.cases if c not in CASES]
    if bad:
        raise ConfigError(f"serve.cases has unknown case(s) {', '.join(bad)}; allowed: {', '.join(CASES)}.")
    tune = _build(TuneConfig, raw.get("tune"), "tune")
    if tune.n_trials < 1 or tune.workers < 1 or tune.epochs < 1:
        raise ConfigError("tune.n_trials, tune.workers and tune.epochs must be >= 1.")
    return Params(cases=cases, serve=serve, tune=tune, raw=raw)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml, apply `--set` overrides, and validate every key and value."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist (run from the project folder or pass --params).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    return parse_params(apply_overrides(raw, overrides))
