"""(interim) run names and 4-significant-digit tables."""
from __future__ import annotations

import datetime


def run_name(flow: str, case: str, when=None) -> str:
    day = when or datetime.date.today().isoformat()
    return f"{flow}-{case}-{day}"


def fmt4(value):
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: fmt4(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fmt4(v) for v in value]
    return value
