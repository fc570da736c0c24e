"""Report helpers shared by every case: number formatting, Markdown tables, learning-curve histories.

Each case writes its own report section (``r2n2/cases/*``); evaluation loads checkpoints and never trains.
"""

from __future__ import annotations

import json
import math

__all__ = ["fmt", "md_table", "history", "headline", "period_text", "interval_text", "verdict_text", "MDE_NOTE"]

MDE_NOTE = ("MDE: the smallest |diff| each test detects with 80 % power at α = 0.05 on these rows (in the units of "
            "diff; from the test's own standard error, or the bootstrap's). A **tie** reads: no difference was "
            "found, and differences under the MDE could not have been seen. One-sided rows (Clark–West) only ask "
            "whether a beats b: their interval is an upper bound, their verdict better or tie.")


def fmt(v, digits: int = 4) -> str:
    """A number as a reader wants it: 4 significant digits, "n/a" for missing."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def interval_text(c: dict, digits: int = 4) -> str:
    """A comparison's interval: ``[lo, hi]``, or a one-sided ``(−∞, hi]`` / ``[lo, ∞)``."""
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if c.get("sided") == "one-sided" and (lo is None) != (hi is None):
        return f"(−∞, {fmt(hi, digits)}]" if lo is None else f"[{fmt(lo, digits)}, ∞)"
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def verdict_text(c: dict | None, digits: int = 3) -> str:
    """A comparison's verdict for prose: "better" / "worse", or "tie, and differences under MDE could not have
    been seen"."""
    if not c:
        return "n/a"
    v = c.get("verdict", "tie")
    if v == "tie" and c.get("mde") is not None:
        return f"tie, and differences under {fmt(c['mde'], digits)} could not have been seen"
    return v


def md_table(rows: dict[str, dict], cols: list[str], *, first: str = "") -> str:
    lines = [f"| {first} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def period_text(period: dict | None) -> str:
    """A test period as a reader wants it: dates and the number of days, or, for texts without a time column,
    their positions in arrival order (the built-in tweets carry no dates)."""
    if not period:
        return "test period unknown"
    start, end, n = period.get("start", "?"), period.get("end", "?"), period.get("n")
    if isinstance(start, int) and isinstance(end, int):
        return (f"test: texts {start:,} .. {end:,} in arrival order ({n:,} texts; the data has no dates)"
                if n else f"test: texts {start:,} .. {end:,} in arrival order (the data has no dates)")
    return f"test period {start} .. {end}" + (f" ({n:,} days)" if n else "")


def _model_vs(metrics: dict, baseline: str) -> dict | None:
    """The first comparison of the model against ``baseline`` (the report lists the headline test first)."""
    return next((c for c in metrics.get("comparisons", []) if c.get("a") == "model" and c.get("b") == baseline), None)


def headline(name: str, metrics: dict, keys: tuple[str, ...], *, main: str | None = None) -> str:
    """A plain-text table of the model beside every baseline on the case's headline metrics, from its
    ``metrics.json`` (what the end of ``make run`` shows): whole column names, and a last column with the verdict
    of the model against that row (its first test in the report, with its p-value: adjusted within the headline
    family by Holm where the report adjusts, the raw p beside it); ``*`` marks the case's main baseline."""
    keys = [k for k in keys if k in metrics.get("model", {})] or \
        [k for k, v in metrics.get("model", {}).items() if isinstance(v, (int, float))][:4]
    rows = {"model": metrics["model"], **{b: v for b, v in metrics.get("baselines", {}).items() if isinstance(v, dict)}}
    verdicts = {}
    for r in rows:
        c = _model_vs(metrics, r) if r != "model" else None
        if c:
            p, raw = c.get("p_adjusted", c.get("p_value")), c.get("p_value")
            shown = f"p {fmt(p, 2)}" + (f" Holm, raw {fmt(raw, 2)}" if c.get("p_adjusted") is not None else "")
            verdicts[r] = f"{c.get('verdict', 'tie')}" + (f" ({shown}, {c.get('test', '')})" if p is not None else "")
    label = max(len(r) + (2 if r == main else 0) for r in rows) + 2
    widths = [max(len(k), 10) + 2 for k in keys]
    head = "".ljust(label) + "".join(k.rjust(w) for k, w in zip(keys, widths))
    lines = [f"{name}: {period_text(metrics.get('test_period'))}"]
    if verdicts:
        head += "   model vs this row"
    lines.append(head)
    for r, v in rows.items():
        shown = f"{r} *" if r == main else r
        line = shown.ljust(label) + "".join((fmt(v.get(k)) if v.get(k) is not None else "-").rjust(w)
                                            for k, w in zip(keys, widths))
        if verdicts:
            line += "   " + verdicts.get(r, "")
        lines.append(line.rstrip())
    if main in rows:
        lines.append(f"* {main}: the case's main baseline")
    return "\n".join(lines)


def history(checkpoint_meta: dict) -> list[dict]:
    return json.loads(checkpoint_meta.get("history", "[]"))
