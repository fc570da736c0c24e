"""Use cases as plug-ins: one module per case, registered here. ``get_case(name)`` is the only lookup."""

from __future__ import annotations

from ..errors import ConfigError
from .base import CaseData, UseCase, WindowMeta

__all__ = ["REGISTRY", "register", "get_case", "UseCase", "CaseData", "WindowMeta"]

REGISTRY: dict[str, UseCase] = {}


def register(case: UseCase) -> UseCase:
    REGISTRY[case.name] = case
    return case


def get_case(name: str) -> UseCase:
    if name not in REGISTRY:
        raise ConfigError(f"unknown use case {str(name)[:80]!r}; known: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


from .stocks import StocksCase  # noqa: E402
from .sentiment import SentimentCase  # noqa: E402
from .panel import PanelCase  # noqa: E402

register(StocksCase())
register(SentimentCase())
register(PanelCase())
