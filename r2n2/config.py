"""Configuration: the shared params sections as dataclasses, and the strict loader.

params.yaml holds one block per use case (each case's module declares its own sections: see
``r2n2/cases``; the cases are handed in by ``r2n2.registry``, never imported here), plus the top-level ``serve`` and ``tune`` blocks read by the orchestration layer. Unknown or
mistyped keys are an error that names the full dotted key; a case's block lists only that case's keys.
"""

from __future__ import annotations

import copy
import datetime
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import ConfigError
from .models.config import RENAMED as MODEL_RENAMED, ModelConfig

__all__ = ["TrainConfig", "FinetuneConfig", "MonitorConfig", "ServeConfig", "TuneConfig", "PromotionConfig", "Params", "load_params", "with_values",
           "apply_overrides", "parse_params", "build_section"]


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
    seed: int = 0                        # the first seed; evaluate.seeds adds seed + 1, seed + 2, ...
    device: str = "auto"                 # auto | cpu | cuda
    max_batches_per_epoch: int = 0       # 0 = all; small values make smoke runs fast
    label_smoothing: float = 0.0         # classification: cross-entropy label smoothing in [0, 1)
    ema_decay: float = 0.0               # > 0: validate and keep an exponential moving average of the
    #                                      weights (updated every step), e.g. 0.999; 0 = off
    threads: int = 2                     # torch CPU threads while training (torch.set_num_threads); float sums
    #                                      split by thread, so other counts give other bytes. 2: what torch chose on
    #                                      the 2-core machine that made the committed dvc.lock, now fixed on any
    #                                      machine. 0 = torch's default (the core count). OMP_NUM_THREADS, when set,
    #                                      wins (the tests set 1), and the train log says so


@dataclass
class FinetuneConfig:
    epochs: int = 10
    lr: float = 1e-3
    freeze_encoder: bool = True          # train only the new head at first
    unfreeze_after: int = 0              # unfreeze the encoder after N epochs (0 = never) ...
    unfreeze_lr_factor: float = 0.1      # ... with lr * this factor
    train_fraction: float = 1.0          # share of the target's training split to use (small-data transfer)


@dataclass
class ServeConfig:
    retrain_cron: str = "0 22 * * 1-5"   # scheduled retraining: weekdays 22:00 (after the US close)
    monitor_cron: str = "30 21 * * 1-5"  # monitoring shortly before it
    timezone: str = "UTC"
    cases: list[str] | None = None       # what retrain / monitor cover, with every instance params define (null:
    #                                      every case and instance params define)


@dataclass
class TuneConfig:
    n_trials: int = 20                   # Optuna trials per study
    timeout: int = 1800                  # seconds for the whole study (0 = no limit)
    workers: int = 1                     # trials run concurrently (Prefect task runner workers)
    dask_address: str | None = None      # run trials on this Dask scheduler (prefect-dask) when set
    dask_workers: int = 0                # > 0: trials on a local Dask cluster of this many processes (0 = off)
    storage: str = "sqlite"              # the study: "sqlite" (data/tuning/<case>.db, one process), "journal"
    #                                      (data/tuning/<case>.journal, several processes on one machine) or a
    #                                      database URL (postgresql://user@host/db: several machines)
    epochs: int = 6                      # per trial; the median pruner stops bad trials earlier
    seed: int = 0


@dataclass
class MonitorConfig:
    window: int = 60                     # newest post-cut-off windows (stocks: days) or texts x 30 per check
    family_rate: float = 0.05            # chance of a false alarm per check, all signals together: each signal
    #                                      alarms above its null quantile 1 - family_rate / signals (Bonferroni),
    #                                      the null drawn from the model's own training history
    min_samples: int = 20                # never alarm on fewer post-cut-off samples than this
    retrain_on_alarm: bool = True        # `monitor` triggers a retrain of this case when it alarms
    events: dict[str, str] = field(default_factory=dict)  # known breaks of this case's calendar (name -> ISO
    #                                      date): a price series' replay report states its first alarm after each
    #                                      and counts false alarms on the years without one (calm years)


@dataclass
class PromotionConfig:
    alpha: float = 0.05                  # one-sided test level of each leg of the gate
    tolerance: float = 0.0               # relative margin by which a challenger may be worse than the champion
    benchmark_tolerance: float = 0.0     # ... and than the naive benchmark (random walk, majority class, zero)
    #                                      0: a challenger shown worse than the free benchmark is never deployed


@dataclass
class Params:
    cases: dict[str, Any]                # case or instance name -> its config dataclass
    serve: ServeConfig
    tune: TuneConfig
    instances: dict[str, str] = field(default_factory=dict)  # instance name -> the built-in case it is one of
    given: dict[str, dict] = field(default_factory=dict)     # case or instance name -> its own block in params

    def param_keys(self, name: str, keys: tuple[str, ...]) -> list[str]:
        """The params.yaml keys (``<name>.<section>``) that ``keys`` of case or instance ``name`` come from: a
        case's own; for an instance, those it gives and those of its case's block it inherits (DVC tracks both)."""
        if name not in self.instances:
            return [f"{name}.{k}" for k in keys]
        kind = self.instances[name]
        out = [f"{name}.case"]
        for key in keys:
            for owner in (kind, name):
                node = self.given.get(owner, {})
                for part in key.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                if node is not None:
                    out.append(f"{owner}.{key}")
        return out

    def case(self, name: str) -> Any:
        if name not in self.cases:
            raise ConfigError(f"unknown case {str(name)[:80]!r}: params define {', '.join(self.cases)}.")
        return self.cases[name]


def _hint_name(hint: Any) -> str:
    return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in typing.get_args(hint)) \
        or getattr(hint, "__name__", str(hint))


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
        raise ConfigError(f"{key} must be {_hint_name(hint)}, got {str(value)[:80]!r}.")
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
        if isinstance(value, datetime.date):  # YAML reads 2016-01-04 as a date
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}.")
        return value
    return value


def _build(cls, data: Any, prefix: str, base: Any = None):
    """``data`` over ``base`` (default: the class defaults); nested sections start from their field's default
    factory, so a case's own defaults (e.g. its model section) hold for the keys params leave out."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix} must be a mapping, got {str(data)[:80]!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            close = [n for n in names if n.replace("_", "") == str(key).replace("_", "")]
            renamed = MODEL_RENAMED.get(key) if cls is ModelConfig else None
            hint = (f" (renamed: {prefix}.{renamed})" if renamed else
                    f" (did you mean {prefix}.{close[0]}?)" if close else "")
            raise ConfigError(f"unknown key {prefix}.{str(key)[:80]}{hint}; allowed: {', '.join(names)}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            f = names[name]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            kwargs[name] = _build(hint, value, f"{prefix}.{name}", default)
        else:
            kwargs[name] = _check_type(f"{prefix}.{name}", value, hint)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ValueError as exc:  # ModelConfig's own validation
        msg = str(exc)
        if msg.startswith("model."):
            raise ConfigError(msg.replace("model.", f"{prefix}.", 1)) from None
        if msg.split(" ", 1)[0] in names:  # "<field> must be ..." from the section's own checks
            raise ConfigError(f"{prefix}.{msg}") from None
        raise ConfigError(f"{prefix}: {msg}") from None


def _check_shared(name: str, case: Any) -> None:
    choice = {"train.scheduler": (case.train.scheduler, ("plateau", "cosine", "none")),
              "train.device": (case.train.device, ("auto", "cpu", "cuda"))}
    for key, (value, allowed) in choice.items():
        if value not in allowed:
            raise ConfigError(f"{name}.{key} must be one of {', '.join(allowed)}, got {value!r}.")
    for key, value in (("train.epochs", case.train.epochs), ("train.batch_size", case.train.batch_size),
                       ("evaluate.seeds", getattr(case.evaluate, "seeds", 1)),
                       ("monitor.window", case.monitor.window), ("monitor.min_samples", case.monitor.min_samples)):
        if value < 1:
            raise ConfigError(f"{name}.{key} must be >= 1, got {value}.")
    if case.train.threads < 0:
        raise ConfigError(f"{name}.train.threads must be >= 0 (0 = torch's default), got {case.train.threads}.")
    for key, value in (("train.label_smoothing", case.train.label_smoothing),
                       ("train.ema_decay", case.train.ema_decay)):
        if not 0 <= value < 1:
            raise ConfigError(f"{name}.{key} must be in [0, 1), got {value}.")
    for event, day in case.monitor.events.items():
        try:
            datetime.date.fromisoformat(str(day))
        except ValueError:
            raise ConfigError(f"{name}.monitor.events: {str(event)[:80]!r} must map to an ISO date such as "
                              f"2008-09-15, got {str(day)[:80]!r}.") from None
    if not 0 < case.monitor.family_rate < 0.5:
        raise ConfigError(f"{name}.monitor.family_rate must be in (0, 0.5), got {case.monitor.family_rate}.")
    p = case.promotion
    if not 0 < p.alpha < 0.5 or p.tolerance < 0 or p.benchmark_tolerance < 0:
        raise ConfigError(f"{name}.promotion: alpha must be in (0, 0.5) and the tolerances >= 0, got alpha "
                          f"{p.alpha}, tolerance {p.tolerance}, benchmark_tolerance {p.benchmark_tolerance}.")
    if not 0 < case.finetune.train_fraction <= 1:
        raise ConfigError(f"{name}.finetune.train_fraction must be in (0, 1], got {case.finetune.train_fraction}.")


def build_section(cls, data: Any, prefix: str):
    """A params mapping -> dataclass ``cls``, strictly (unknown keys and wrong types name the dotted key)."""
    return _build(cls, data, prefix)


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """A case config with ``{"section.key": value}`` replaced (what ``--set <case>.section.key=value`` gives for
    a value of the key's type; the caller states the same values as ``--set`` overrides to reproduce it)."""
    sections: dict[str, dict] = {}
    for key, value in values.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **kv) for s, kv in sections.items()})


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


# YAML 1.1 (PyYAML) reads "1e-3" as a string; YAML 1.2 and every user read it as a number.
_YAML12_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml12_number(text: str) -> float:
    return float(text.strip())


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
            value = _yaml12_number(text) if _YAML12_FLOAT.fullmatch(text.strip()) else \
                (yaml.safe_load(text) if text.strip() else "")
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc.problem}).") from None
        _set_dotted(raw, key, value)
    return raw


def parse_params(raw: dict, cases: Mapping[str, Any]) -> Params:
    """Validate a params tree against ``cases`` (name -> use case object; ``r2n2.registry`` passes them all)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params must be a mapping with one block per case ({', '.join(cases)}).")
    configs, instances = {}, {}
    for key, value in raw.items():
        if key in cases:
            kind, block = key, value
        elif isinstance(value, dict) and "case" in value:
            kind, block = _instance_block(raw, str(key), value, cases)
            instances[str(key)] = kind
        elif key in ("serve", "tune"):
            continue
        else:
            raise ConfigError(f"unknown top-level key {str(key)[:80]!r} in params; allowed: {', '.join(cases)}, "
                              "serve, tune, or an instance of a case (a block with `case: <one of those>`).")
        case = cases[kind]
        cfg = _build(case.config_cls, block, str(key))
        _check_shared(str(key), cfg)
        case.check_config(cfg, str(key))
        configs[str(key)] = cfg
    serve = _build(ServeConfig, raw.get("serve"), "serve")
    if serve.cases is None:
        serve.cases = list(configs)
    serve.cases = [*serve.cases, *(i for i in instances if i not in serve.cases)]  # and every instance
    allowed = [*cases, *instances]
    bad = [c for c in serve.cases if c not in allowed]
    if bad:
        raise ConfigError(f"serve.cases has unknown case(s) {', '.join(bad)}; allowed: {', '.join(allowed)}.")
    tune = _build(TuneConfig, raw.get("tune"), "tune")
    if tune.n_trials < 1 or tune.workers < 1 or tune.epochs < 1:
        raise ConfigError("tune.n_trials, tune.workers and tune.epochs must be >= 1.")
    _check_tune(tune)
    given = {k: v for k, v in raw.items() if k in configs and isinstance(v, dict)}
    return Params(cases=configs, serve=serve, tune=tune, instances=instances, given=given)


def _instance_block(raw: dict, name: str, value: dict, cases: Mapping[str, Any]) -> tuple[str, dict]:
    """An instance of a built-in case (``brent: {case: stocks, data: {...}}``): its kind, and its params: every
    section key it gives over the same key of the case's own block (params.yaml's ``stocks:``), the rest from
    there (or the case's defaults where params have no such block)."""
    kind = value["case"]
    if kind not in cases:
        raise ConfigError(f"{name}.case must name a built-in case ({', '.join(cases)}), got {str(kind)[:80]!r}.")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or name in ("all", "serve", "tune", "ops"):
        raise ConfigError(f"instance name {name[:80]!r} must be lower-case letters, digits and - (starting with a "
                          "letter; Prefect artifact keys allow no _), and not all, serve, tune or ops: it names "
                          "folders, stages, Prefect runs and artifacts.")
    base = raw.get(kind) or {}
    block: dict = {section: dict(keys) if isinstance(keys, dict) else keys for section, keys in base.items()}
    for section, keys in value.items():
        if section == "case":
            continue
        if isinstance(keys, dict) and isinstance(block.get(section), dict):
            block[section] = {**block[section], **keys}
        else:
            block[section] = keys
    return kind, block


def _check_tune(tune: TuneConfig) -> None:
    if tune.dask_workers < 0:
        raise ConfigError(f"tune.dask_workers must be >= 0 (0 = no local Dask cluster), got {tune.dask_workers}.")
    if tune.dask_workers and tune.dask_address:
        raise ConfigError("tune.dask_workers and tune.dask_address are both set: set dask_workers for a local Dask "
                          "cluster or dask_address for a running scheduler, not both.")
    if tune.storage not in ("sqlite", "journal") and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", tune.storage):
        raise ConfigError(f"tune.storage must be sqlite, journal or a database URL such as "
                          f"postgresql://user@host:5432/db, got {str(tune.storage)[:80]!r}.")
    if tune.storage.split(":", 1)[0].split("+", 1)[0] == "sqlite" and (tune.dask_workers or tune.dask_address):
        raise ConfigError("tune.storage is SQLite, which cannot hold a study run on Dask: trials in several processes "
                          "would write one SQLite file at once. Set tune.storage to journal (a file that the "
                          "processes of one machine can share) or to a PostgreSQL URL (several machines).")


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None, *,
                cases: Mapping[str, Any]) -> Params:
    """Read params.yaml, apply `--set` overrides, and validate every key and value against ``cases``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist (run from the project folder or pass --params).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    return parse_params(apply_overrides(raw, overrides), cases)
