"""What the UI shows: run names `<flow>-<case>-<YYYY-MM-DD>` and table values rounded to 4 significant digits."""

from __future__ import annotations

import datetime as dt
import math
import numbers
from typing import Any, Callable

__all__ = ["case_run_name", "fmt4", "run_name"]


def run_name(flow: str, case: str | list[str] | tuple[str, ...], when: dt.date | str | None = None) -> str:
    """`<flow>-<case>-<YYYY-MM-DD>`: several cases join with '+', `when` defaults to today (local date).

    `when` may be a date, a datetime (its date is used) or an ISO string ('2018-02-05' or '2018-02-05T16:00').
    """
    cases = "+".join(case) if isinstance(case, (list, tuple)) else str(case)
    if when is None:
        day = dt.date.today()
    elif isinstance(when, dt.datetime):
        day = when.date()
    elif isinstance(when, dt.date):
        day = when
    else:
        day = dt.datetime.fromisoformat(str(when)).date()
    return f"{flow}-{cases}-{day.isoformat()}"


def case_run_name(flow: str | None = None, *, case_param: str = "case", date_param: str | None = None,
                  default_case: str = "all", flow_param: str | None = None) -> Callable[[], str]:
    """A `flow_run_name` callable: names each run from its own parameters via `prefect.runtime`.

    `flow` defaults to the value of the `flow_param` parameter when given (a stage flow: `evaluate-stocks-...`),
    else the flow's name; the case comes from the `case_param` parameter (a string or a list of
    cases); the date from `date_param` when given (a replay step's simulated date), else today.
    Use: ``@flow(name="monitor", flow_run_name=case_run_name())``.
    """
    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        case = params.get(case_param) or default_case
        when = params.get(date_param) if date_param else None
        return run_name(flow or (params.get(flow_param) if flow_param else None) or flow_run.flow_name, case, when)

    return name


def fmt4(value: Any) -> Any:
    """Round every float to 4 significant digits, recursively through dicts, lists and tuples (for table artifacts).

    Integers, booleans, strings, NaN and infinities are returned unchanged; tuples come back as lists.
    """
    if isinstance(value, dict):
        return {k: fmt4(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fmt4(v) for v in value]
    if isinstance(value, numbers.Integral):  # bool and numpy integers too
        return value
    if isinstance(value, numbers.Real):  # float, numpy floats
        x = float(value)
        return x if not math.isfinite(x) else float(f"{x:.4g}")
    return value
