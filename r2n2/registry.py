"""THE only module that names use cases: ``REGISTRY`` maps each name to its case object.

Everything above the cases (the CLI, the Prefect flows, benchmarks) asks here; the drivers below
(``r2n2.stages``, ``r2n2.ops``, ``r2n2.tune``) are handed case objects and never import a case, and
``r2n2.config`` receives the cases from here instead of importing them. A new use case is one module under
``r2n2/cases/`` plus one line below.
"""

from __future__ import annotations

from pathlib import Path

from .cases.base import UseCase
from .cases.panel import PanelCase
from .cases.sentiment import SentimentCase
from .cases.stocks import StocksCase
from .cases.volatility import VolatilityCase
from .config import Params, load_params as _load_params, parse_params as _parse_params
from .errors import ConfigError
from .stages import run_stage as _run

__all__ = ["REGISTRY", "get_case", "load_params", "parse_params", "run_stage"]

REGISTRY: dict[str, UseCase] = {c.name: c for c in (StocksCase(), SentimentCase(), PanelCase(), VolatilityCase())}
# Instances of the cases that the params read in this process define (``brent: {case: stocks, ...}``): the case
# object under the instance's name, so its paths, stages, runs and artifacts are its own.
INSTANCES: dict[str, UseCase] = {}


def get_case(name: str) -> UseCase:
    if name in REGISTRY:
        return REGISTRY[name]
    if name in INSTANCES:
        return INSTANCES[name]
    raise ConfigError(f"unknown use case {str(name)[:80]!r}; known: {', '.join([*REGISTRY, *INSTANCES])} (an "
                      "instance is a block of params.yaml with `case: <a built-in case>`).")


def _register(params: Params) -> Params:
    for name, kind in params.instances.items():
        INSTANCES[name] = REGISTRY[kind].instance(name)
    return params


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml, apply `--set` overrides, and validate every key against the registered cases; the
    instances it defines become known to ``get_case``."""
    return _register(_load_params(path, overrides, cases=REGISTRY))


def parse_params(raw: dict) -> Params:
    return _register(_parse_params(raw, REGISTRY))


def run_stage(name: str, case_name: str, cfg, root: str | Path = ".", *, log=None) -> str:
    """Run one stage of the case named ``case_name`` (``r2n2.stages.run_stage`` with the case object)."""
    return _run(name, get_case(case_name), cfg, root, log=log)
