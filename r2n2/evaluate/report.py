"""Report helpers shared by every case: number formatting, Markdown tables, learning-curve histories.

Each case writes its own report section (``r2n2/cases/*``); evaluation loads checkpoints and never trains.
"""

from __future__ import annotations

import json
import math

__all__ = ["fmt", "md_table", "history"]


def fmt(v, digits: int = 4) -> str:
    """A number as a reader wants it: 4 significant digits, "n/a" for missing."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def md_table(rows: dict[str, dict], cols: list[str], *, first: str = "") -> str:
    lines = [f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def history(checkpoint_meta: dict) -> list[dict]:
    return json.loads(checkpoint_meta.get("history", "[]"))
