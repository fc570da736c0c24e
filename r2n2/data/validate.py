"""Validate: one Great Expectations (GX Core 1.x) batch gates a whole table before anything trains on it.

A :class:`Suite` turns a table kind's config (:class:`PriceChecks` for long-form prices, :class:`TextChecks`
for labelled texts) into GX expectations. Per-entity rules (dates increase within an entity, no long gap,
enough rows, prices that move) are expectations on derived columns that ``Suite.prepare`` computes once,
vectorised, so the whole frame is ONE batch however many entities it holds: 500 entities x 5,000 days
validate in seconds where a per-entity loop took ~1.5 s per entity (issue 14).

Outputs in ``report_dir`` are pure functions of the data and the checks (issue 13): ``validation.json`` (the
summary DVC hashes) and ``validation.html`` (a self-contained page, failed expectations first, that opens
offline; GX's Data Docs load bootstrap-table from CDNs and embed run times, so they are written only on
request, to a folder outside the hashed outputs). Quoted data values are cut to ~80 characters everywhere.
On failure ``ValidationFailed`` carries the summary and the previous validated output is left untouched.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, ValidationFailed
from ..io import atomic_path, write_text_atomic
from ..io import write_json_atomic as write_json_sorted
from .sources import read_parquet

__all__ = ["PriceChecks", "TextChecks", "Check", "Suite", "PriceSuite", "TextSuite", "price_suite", "text_suite",
           "run_suite", "validate", "render_html"]

CUT = 80          # quoted values longer than this are cut (a 5 MB text must never be echoed)
EXAMPLES = 10     # failing rows kept per expectation in validation.json / .html
MESSAGE_PARTS = 3  # failed expectations named in the exception message (one paragraph, ~600 characters)


# ---------------------------------------------------------------------------------------------- config
@dataclass
class PriceChecks:
    """The ``validate`` section of a long-form price table (``entity, date, open, high, low, close, volume``)."""

    min_rows: int = 500                  # rows per entity; fewer cannot make train/val/test windows
    max_gap_days: int = 7                # calendar days between consecutive dates of one entity (daily data:
    #                                      the longest market closure 1990-2022 is 7 days, after 9/11)
    max_zero_return_share: float = 0.25  # share of an entity's days whose close equals the previous close;
    #                                      S&P 500 / NASDAQ 1999-2018: < 0.001, skfolio's 20 stocks: <= 0.13
    max_abs_log_return: float = 2.0      # |log(close / previous close)| above this is a data error (a missed
    #                                      10:1 split is 2.3, cents vs dollars 4.6); observed max 1.10 (skfolio)

    def __post_init__(self) -> None:
        if self.min_rows < 1 or self.max_gap_days < 1:
            raise ValueError(f"validate.min_rows and validate.max_gap_days must be >= 1, got {self.min_rows} "
                             f"and {self.max_gap_days}.")
        if not 0 <= self.max_zero_return_share < 1:
            raise ValueError(f"validate.max_zero_return_share must be in [0, 1), got {self.max_zero_return_share}.")
        if not self.max_abs_log_return > 0:
            raise ValueError(f"validate.max_abs_log_return must be > 0, got {self.max_abs_log_return}.")


@dataclass
class TextChecks:
    """The ``validate`` section of a labelled text table (``text, label[, confidence]``)."""

    min_rows: int = 100                  # texts in the whole table
    min_text_length: int = 1             # characters, after normalisation
    max_text_length: int = 1000          # characters; longer texts are refused (not echoed)
    max_duplicate_share: float = 0.05    # share of texts that repeat an earlier one (built-in corpus: 0.024)
    min_classes: int = 2                 # distinct labels; one class cannot train a classifier
    min_class_share: float = 0.05        # each present label's minimum share (built-in corpus: smallest 0.18)

    def __post_init__(self) -> None:
        if self.min_rows < 1 or self.min_text_length < 0 or self.max_text_length < max(1, self.min_text_length):
            raise ValueError(f"validate.min_rows must be >= 1 and 0 <= min_text_length <= max_text_length, got "
                             f"{self.min_rows}, {self.min_text_length} and {self.max_text_length}.")
        if self.min_classes < 1:
            raise ValueError(f"validate.min_classes must be >= 1, got {self.min_classes}.")
        for key in ("max_duplicate_share", "min_class_share"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"validate.{key} must be in [0, 1], got {getattr(self, key)}.")


# ---------------------------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class Check:
    """One GX expectation plus the words a user reads when it fails.

    ``example`` is a ``str.format`` template for one failing row, with the suite's key columns, ``row`` (its
    position in the table), ``value`` (the checked column's value) and ``p`` (the suite's checks, for the
    threshold); a table-level check gets ``observed`` and ``p``.
    """

    expectation: Any                     # a great_expectations.expectations.Expectation with its params
    says: str                            # what this check requires, in words
    example: str = "row {row}: {value}"  # one failing row (or the table's observed value) in words
    unit: str = "rows"                   # what "N more" counts in the message


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # lazy: ~3 s import

    return gx


class Suite:
    """A table kind's expectations: ``prepare`` adds derived columns once, ``checks`` builds the GX expectations
    for the columns the prepared frame has, ``facts`` summarises the table for the report."""

    kind: str = "table"
    key_columns: dict[str, str] = {}     # template field -> column naming a failing row (e.g. entity, date)

    def __init__(self, checks: Any):
        self.params = checks

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """Return ``df`` (RangeIndex) with derived columns added; never mutates the caller's frame."""
        return df.reset_index(drop=True)

    def checks(self, columns: Sequence[str]) -> list[Check]:
        raise NotImplementedError

    def facts(self, df: pd.DataFrame) -> dict:
        return {}


def _between(column: str, lo=None, hi=None, *, strict_lo=False, strict_hi=False):
    E = _gx().expectations
    return E.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi, strict_min=strict_lo,
                                           strict_max=strict_hi)


class PriceSuite(Suite):
    """Long-form daily prices: one row per entity and date, in date order within each entity."""

    kind = "prices"
    key_columns = {"entity": "entity", "date": "date", "prev_date": "_prev_date"}

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.reset_index(drop=True)
        if "entity" not in df or "date" not in df:
            return df  # the column-exists expectations report it
        if not pd.api.types.is_datetime64_any_dtype(df["date"]):
            raise DataError(f"column date has type {df['date'].dtype}, not a timestamp; run ingest first.")
        g = df.groupby("entity", sort=False)  # in file order: a series must already be in date order
        prev_date = g["date"].shift()
        first = (g.cumcount() == 0).to_numpy()
        n_rows = g["date"].transform("size").to_numpy(float)
        out = {"_prev_date": prev_date,
               "_days_since_prev": (df["date"] - prev_date) / pd.Timedelta(days=1),  # NaN on an entity's 1st row
               "_entity_rows": np.where(first, n_rows, np.nan)}  # entity-level values sit on its first row only
        if "close" in df:
            close = df["close"].to_numpy(float)
            prev = g["close"].shift().to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ok = (close > 0) & (prev > 0)  # non-positive prices are reported by their own expectation
                log_ret = np.where(ok, np.log(np.where(ok, close / prev, 1.0)), np.nan)
            zero = pd.Series(np.where(np.isnan(prev), np.nan, (close == prev).astype(float)))
            share = zero.groupby(df["entity"], sort=False).transform("mean").to_numpy()
            out |= {"_log_return": log_ret, "_zero_return_share": np.where(first, share, np.nan)}
        # GX filters the whole frame once per metric: integer category codes are far cheaper to take than
        # strings (~15% of the run at 2.5M rows). Copy-on-write: the other raw columns are shared, not copied.
        return df.assign(**out, entity=df["entity"].astype("category"))

    def checks(self, columns: Sequence[str]) -> list[Check]:
        E, p = _gx().expectations, self.params
        prices = [c for c in ("open", "high", "low", "close") if c in columns]
        out = [Check(E.ExpectColumnToExist(column=c), f"column {c} present", f"no column {c}")
               for c in ("entity", "date", "close")]
        out += [Check(E.ExpectColumnValuesToNotBeNull(column=c), f"{c} never missing",
                      "[{entity}] " + c + " missing at row {row}")
                for c in ("entity", "date", *prices, *(["volume"] if "volume" in columns else [])) if c in columns]
        out += [Check(_between(c, 0, strict_lo=True), f"{c} positive", "[{entity}] " + c + " {value} at {date}")
                for c in prices]
        if "volume" in columns:
            out.append(Check(_between("volume", 0), "volume not negative", "[{entity}] volume {value} at {date}"))
        pairs = [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low"), ("high", "low")]
        out += [Check(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True),
                      f"{a} >= {b}", "[{entity}] " + f"{a} below {b}" + " at {date}")
                for a, b in pairs if a in columns and b in columns]
        if "_days_since_prev" in columns:
            out += [Check(_between("_days_since_prev", 0, strict_lo=True), "dates increasing within each entity",
                          "[{entity}] dates not increasing at {date} (after {prev_date})"),
                    Check(_between("_days_since_prev", hi=p.max_gap_days),
                          f"at most {p.max_gap_days} days between consecutive dates of an entity",
                          "[{entity}] {value:.0f}-day gap from {prev_date} to {date} (max {p.max_gap_days})"),
                    Check(_between("_entity_rows", p.min_rows), f"at least {p.min_rows} rows per entity",
                          "[{entity}] has only {value:.0f} rows (min {p.min_rows})", "entities")]
        if "_log_return" in columns:
            out += [Check(_between("_zero_return_share", hi=1, strict_hi=True), "returns not all zero",
                          "[{entity}] close never changes (all returns zero)", "entities"),
                    Check(_between("_zero_return_share", hi=p.max_zero_return_share),
                          f"at most {p.max_zero_return_share:.0%} of an entity's days with a zero return",
                          "[{entity}] {value:.0%} of days have a zero return (max {p.max_zero_return_share:.0%})",
                          "entities"),
                    Check(_between("_log_return", -p.max_abs_log_return, p.max_abs_log_return),
                          f"|daily log return| at most {p.max_abs_log_return:g}",
                          "[{entity}] log return {value:.3g} from {prev_date} to {date} "
                          "(max {p.max_abs_log_return:g})")]
        return out

    def facts(self, df: pd.DataFrame) -> dict:
        if "entity" not in df or "date" not in df:
            return {}
        return {"entities": int(df["entity"].nunique()), "first_date": _fmt(df["date"].min()),
                "last_date": _fmt(df["date"].max())}


class TextSuite(Suite):
    """Labelled texts: one text and one label per row."""

    kind = "texts"
    key_columns = {"label": "label"}

    def __init__(self, checks: TextChecks, *, labels: Sequence[str] | None):
        super().__init__(checks)
        self.labels = list(labels) if labels is not None else None

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.reset_index(drop=True)
        out = {}
        if "text" in df:
            out["_text_length"] = df["text"].str.len()  # checked instead of the text: a 5 MB value is never echoed
        if "label" in df:
            share = df["label"].map(df["label"].value_counts(normalize=True)).to_numpy(float)
            out["_label_share"] = np.where(~df["label"].duplicated().to_numpy(), share, np.nan)  # once per label
        return df.assign(**out)

    def checks(self, columns: Sequence[str]) -> list[Check]:
        E, p = _gx().expectations, self.params
        out = [Check(E.ExpectColumnToExist(column=c), f"column {c} present", f"no column {c}")
               for c in ("text", "label")]
        out += [Check(E.ExpectColumnValuesToNotBeNull(column=c), f"{c} never missing", c + " missing at row {row}")
                for c in ("text", "label") if c in columns]
        out.append(Check(E.ExpectTableRowCountToBeBetween(min_value=p.min_rows), f"at least {p.min_rows} rows",
                         "only {observed} rows (min {p.min_rows})"))
        if "_text_length" in columns:
            out += [Check(_between("_text_length", p.min_text_length),
                          f"texts of at least {p.min_text_length} characters",
                          "text at row {row} has {value:.0f} characters (min {p.min_text_length})"),
                    Check(_between("_text_length", hi=p.max_text_length),
                          f"texts of at most {p.max_text_length} characters",
                          "text at row {row} has {value:.0f} characters (max {p.max_text_length})"),
                    Check(E.ExpectColumnProportionOfUniqueValuesToBeBetween(
                              column="text", min_value=1 - p.max_duplicate_share),
                          f"at most {p.max_duplicate_share:.0%} duplicated texts",
                          "only {observed:.1%} of texts are distinct (max {p.max_duplicate_share:.0%} duplicated)")]
        if "label" in columns:
            if self.labels is not None:
                out.append(Check(E.ExpectColumnValuesToBeInSet(column="label", value_set=self.labels),
                                 f"labels in {', '.join(self.labels)}", "unknown label {label!r} at row {row}"))
            out += [Check(E.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=p.min_classes),
                          f"at least {p.min_classes} label classes",
                          "only {observed} label class(es) (min {p.min_classes})"),
                    Check(_between("_label_share", p.min_class_share), f"each label at least "
                          f"{p.min_class_share:.0%} of rows",
                          "label {label!r} is only {value:.1%} of rows (min {p.min_class_share:.0%})", "labels")]
        return out

    def facts(self, df: pd.DataFrame) -> dict:
        if "label" not in df:
            return {}
        counts = df["label"].astype("str").map(_cut).value_counts()
        return {"labels": {str(k): int(v) for k, v in sorted(counts.items())}}


def price_suite(checks: PriceChecks) -> PriceSuite:
    """The suite for a long-form price table."""
    return PriceSuite(checks)


def text_suite(checks: TextChecks, *, labels: Sequence[str] | None) -> TextSuite:
    """The suite for a labelled text table; ``labels`` is the allowed label set (None: any)."""
    return TextSuite(checks, labels=labels)


# ---------------------------------------------------------------------------------------------- running
def _cut(value: Any, n: int = CUT) -> str:
    text = str(value)
    return text if len(text) <= n else f"{text[:n - 3]}..."


def _fmt(value: Any) -> Any:
    """A data value for a message: dates as ISO days, numbers as numbers, anything else cut to ~80 chars."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "none"
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return _cut(value)


def _plain(value: Any) -> Any:
    """GX result values -> plain, cut JSON values (observed values may be numpy or long strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value[:EXAMPLES]]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else str(value)
    return _cut(value)


def _say(template: str, values: dict) -> str:
    """Fill an example template; a value that does not fit its format (``{value:.0f}`` on "none") is shown plain."""
    try:
        text = template.format(**values)
    except (ValueError, TypeError, KeyError, AttributeError):
        def plain(m: re.Match) -> str:
            value = values.get(m.group(1), "?")
            return str(getattr(value, m.group(2)[1:], "?") if m.group(2) else value)

        text = re.sub(r"\{(\w+)(\.\w+)?(![rsa])?(:[^}]*)?\}", plain, template)
    return _cut(text, 2 * CUT)


def run_suite(df: pd.DataFrame, suite: Suite, *, name: str, docs_dir: str | Path | None = None) -> dict:
    """Run ``suite`` on ``df`` as ONE GX batch and return the deterministic summary (no I/O but Data Docs).

    ``docs_dir``: also build GX Data Docs there (they embed run times: keep them out of hashed outputs).
    """
    gx = _gx()
    prepared = suite.prepare(df)
    checks = suite.checks(list(prepared.columns))
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    asset = ctx.data_sources.add_pandas("r2n2").add_dataframe_asset(name)
    gx_suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for i, check in enumerate(checks):
        check.expectation.meta = {"check": i, "says": check.says}  # results map back by this, not by order
        gx_suite.add_expectation(check.expectation)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(
        data=asset.add_batch_definition_whole_dataframe("whole"), suite=gx_suite, name=f"{name}_validation"))
    actions = []
    if docs_dir is not None:
        ctx.add_data_docs_site(site_name="r2n2", site_config={
            "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(Path(docs_dir).resolve())}})
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs"))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=f"{name}_checkpoint", validation_definitions=[vd], actions=actions,
        # Row positions only: naming index columns here makes GX build the full unexpected-row list
        # (78 s for 500k failing rows); the positions are looked up in the prepared frame instead.
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES,
                       "return_unexpected_index_query": False}))
    run = checkpoint.run(batch_parameters={"dataframe": prepared})

    rows: list[dict | None] = [None] * len(checks)
    for vr in run.run_results.values():
        for r in vr.results:
            i = int(r.expectation_config.meta["check"])
            rows[i] = _result_row(r, checks[i], prepared, suite)
    results = [r for r in rows if r is not None]
    failed = [r for r in results if not r["success"]]
    return {"name": name, "kind": suite.kind, "success": not failed, "rows": int(len(df)),
            "columns": [str(c) for c in df.columns], "facts": suite.facts(prepared),
            "params": dataclasses.asdict(suite.params), "expectations": len(results), "failed": len(failed),
            "results": results}


def _result_row(r, check: Check, df: pd.DataFrame, suite: Suite) -> dict:
    cfg = r.expectation_config
    info = r.exception_info if isinstance(r.exception_info, dict) else {}
    raised = [v for v in [info, *info.values()] if isinstance(v, dict) and v.get("raised_exception")]
    res = r.result or {}
    kwargs = {k: _plain(v) for k, v in sorted(cfg.kwargs.items()) if k not in ("batch_id", "result_format")}
    success = bool(r.success) and not raised
    examples: list[str] = []
    column = cfg.kwargs.get("column")
    for pos in (res.get("partial_unexpected_index_list") or [])[:EXAMPLES]:
        if not isinstance(pos, (int, np.integer)) or not 0 <= pos < len(df):
            continue
        values = {k: _fmt(df[c].iat[pos]) for k, c in suite.key_columns.items() if c in df}
        values |= {"row": int(pos), "value": _fmt(df[column].iat[pos]) if column in df else "none",
                   "p": suite.params}
        examples.append(_say(check.example, values))
    if not success and not examples and not raised:  # a table-level check: its observed value in words
        examples.append(_say(check.example, {"observed": _plain(res.get("observed_value")), "p": suite.params}))
    columns = [str(cfg.kwargs[k]) for k in ("column", "column_A", "column_B") if k in cfg.kwargs]
    return {"expectation": cfg.type, "column": "/".join(columns) or None, "kwargs": kwargs, "says": check.says,
            "success": success,
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": _plain(res.get("unexpected_percent")),
            "observed_value": _plain(res.get("observed_value")), "unit": check.unit, "examples": examples,
            "exception": _cut(raised[0].get("exception_message") or "error") if raised else None}


def _message(summary: dict, report: Path) -> str:
    failed = [r for r in summary["results"] if not r["success"]]
    parts = []
    for f in failed[:MESSAGE_PARTS]:
        first = f["examples"][0] if f["examples"] else (f["exception"] or f"not met: {f['says']}")
        more = (f["unexpected_count"] or 0) - 1
        parts.append(first + (f" (+{more} more {f['unit']})" if more > 0 else ""))
    rest = f"; and {len(failed) - MESSAGE_PARTS} more" if len(failed) > MESSAGE_PARTS else ""
    return (f"validation of {summary['name']} data failed {len(failed)} of {summary['expectations']} expectations: "
            f"{'; '.join(parts)}{rest}. Details (opens offline): {report}. The previous validated data (if any) "
            f"was left untouched.")


def validate(name: str, suite: Suite, raw_path: str | Path, out_path: str | Path, report_dir: str | Path, *,
             docs_dir: str | Path | None = None) -> dict:
    """Validate ``raw_path`` with ``suite`` in one GX batch; write ``validation.json`` and ``validation.html``
    to ``report_dir``; promote the file to ``out_path`` only if every expectation passed, else raise
    ``ValidationFailed`` (carrying the summary) and leave ``out_path`` as it was."""
    df = read_parquet(raw_path, f"raw {name} data")
    summary = run_suite(df, suite, name=name, docs_dir=docs_dir)
    report_dir = Path(report_dir)
    write_json_sorted(summary, report_dir / "validation.json")  # sorted keys: equal content, equal bytes
    write_text_atomic(render_html(summary), report_dir / "validation.html")
    if not summary["success"]:
        raise ValidationFailed(_message(summary, report_dir / "validation.html"), summary)
    with atomic_path(out_path) as tmp:
        shutil.copyfile(raw_path, tmp)
    return summary


# ---------------------------------------------------------------------------------------------- report
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Validation of {{ s.name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em }
h1 { font-size: 1.4em } .fail { color: #b00020 } .pass { color: #1b7f3b }
table { border-collapse: collapse; width: 100% } th { background: #f3f3f3 }
th, td { border: 1px solid #ccc; padding: .35em .5em; text-align: left; vertical-align: top }
tr.failed td { background: #fff1f1 } code { font-size: .9em; word-break: break-all }
ul { margin: 0; padding-left: 1.2em }
</style></head><body>
<h1>Validation of {{ s.name }} ({{ s.kind }}):
{% if s.success %}<span class="pass">passed</span>{% else %}<span class="fail">FAILED {{ s.failed }} of
{{ s.expectations }} expectations</span>{% endif %}</h1>
<table>
<tr><th>rows</th><td>{{ s.rows }}</td></tr>
{% for k, v in s.facts.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}<tr><th>columns</th><td>{{ s.columns | join(", ") }}</td></tr>
<tr><th>checks</th><td>{% for k, v in s.params.items() %}{{ k }}={{ v }}{{ ", " if not loop.last }}
{%- endfor %}</td></tr>
</table>
<h2>Expectations</h2>
<table>
<tr><th></th><th>check</th><th>Great Expectations expectation</th><th>unexpected</th><th>examples</th></tr>
{% for r in results %}<tr class="{{ 'passed' if r.success else 'failed' }}">
{%- if r.success %}<td class="pass">pass</td>{% else %}<td class="fail">FAIL</td>{% endif %}<td>{{ r.says }}</td>
<td><code>{{ r.expectation }}({% for k, v in r.kwargs.items() %}{{ k }}={{ v }}{{ ", " if not loop.last }}
{%- endfor %})</code></td>
<td>{% if r.unexpected_count is not none %}{{ r.unexpected_count }} {{ r.unit }} ({{ r.unexpected_percent }}%)
{%- endif %}</td>
<td><ul>{% for x in r.examples %}<li>{{ x }}</li>{% endfor %}
{%- if r.exception %}<li>error: {{ r.exception }}</li>{% endif %}
{%- if not r.examples and r.observed_value is not none %}<li>observed: {{ r.observed_value }}</li>{% endif %}
</ul></td></tr>
{% endfor %}</table>
</body></html>
"""


def render_html(summary: dict) -> str:
    """A self-contained page of ``summary`` (inline CSS, no scripts, no links, no times): failed expectations
    first, so it opens offline and is as deterministic as validation.json."""
    import jinja2  # a Great Expectations dependency

    page = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_PAGE)
    results = sorted(summary["results"], key=lambda r: r["success"])  # stable: failed first, suite order kept
    return page.render(s=summary, results=results)
